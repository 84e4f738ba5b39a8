"""Generate: prompt -> images with live previews, boxes and the detectors' verdict on each; or
redraw an uploaded image (editing) or the white part of a mask over it (inpainting)."""

import random
import re
import warnings

import streamlit as st

from detection.draw import draw_detections
from evaluation.judge import judge, merge_detections
from evaluation.prompts import ParseError, parse_prompt
from evaluation.spec import PromptSpec
from gendet_env import GendetWarning
from generation.pipeline import DEFAULTS
from generation.png_info import png_bytes, read_settings
from generation.sampling_options import describe_settings
from ui import resources
from ui.restore import GUIDANCE, STRENGTH, TRUNCATION, form_values
from ui.uploads import IMAGE_TYPES, mask_mismatch, open_image

BATCH = 8  # images drawn at once: a candidate budget of 64 is 8 batches, with the same images
SHOWN = 10  # generations kept in the history, the newest first


def as_text(prompt: str, limit: int = 200) -> str:
    """A prompt for st.markdown, shown as typed: markdown and LaTeX characters escaped, long ones cut."""
    prompt = " ".join(prompt.split())
    prompt = prompt if len(prompt) <= limit else prompt[:limit] + "…"
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|$<>~])", r"\\\1", prompt)


def plain(note: str) -> str:
    """A one-line note for st.warning, the characters that would start markdown or LaTeX escaped
    (a note quotes the prompt: "**bold** $x^2$" showed bold and typeset)."""
    return re.sub(r"([\\`*_\[\]$<>~|#])", r"\\\1", note)


QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")  # a Python repr of a string


def short_quotes(note: str, limit: int = 80) -> str:
    """A note with each quoted text over `limit` characters cut: a ParseError quotes the whole prompt,
    twice ("a cat " * 200 made a warning of 2,500 characters)."""
    return QUOTED.sub(lambda m: m[0] if len(m[0]) <= limit + 2 else m[0][:limit + 1] + "…" + m[0][0], note)


resources.sidebar()
st.title("Generate")

# the form widgets a PNG's settings restore
RESTORABLE = ("prompt", "seed", "random_seed", "steps", "guidance", "truncation", "purity", "strength", "blend")


def wkey(name: str) -> str:
    """A form widget's key. Restoring gives the restorable widgets new keys: a Streamlit form sends
    what was typed in it and not yet sent over values set from the server (the restored prompt was
    shown, and the typed one drawn); new widgets have nothing pending."""
    version = st.session_state.get("form_version", 0)
    return f"{name}@{version}" if version and name in RESTORABLE else name


# settings restored from a PNG (or the seed a random draw used) are applied before the widgets exist
# (Streamlit's rule)
if "restore" in st.session_state:
    for key, value in st.session_state.pop("restore").items():
        st.session_state[key] = value

pipe = resources.generator()
# the form starts at the loaded model's own sampling defaults (pipeline.json, over DEFAULTS), as the CLIs do
model_defaults = pipe.defaults if pipe is not None else DEFAULTS
most_steps, default_steps = resources.steps_range(pipe)
resources.start(wkey("steps"), default_steps)
st.session_state[wkey("steps")] = min(st.session_state[wkey("steps")], most_steps)  # a kept value, from a model with more
with st.expander("Load settings from a PNG made by gendet"):
    upload = st.file_uploader("PNG", type=["png"], key="settings_png")
    if upload is not None and st.button("Restore these settings"):
        try:
            s = read_settings(upload)  # an UploadedFile: file-like, with the upload's name for messages
            restored, moved = form_values(s, model_defaults, default_steps, most_steps)
        except (TypeError, ValueError, OverflowError) as e:  # not gendet's, or a value of the wrong kind
            st.error(f"{upload.name}: {e}" if upload.name not in str(e) else str(e))
        else:
            before = {n: st.session_state[wkey(n)] for n in RESTORABLE if wkey(n) in st.session_state}
            st.session_state["form_version"] = st.session_state.get("form_version", 0) + 1
            st.session_state["restore"] = {wkey(n): v for n, v in (before | restored).items()}
            st.session_state["restore_moved"] = [f"Restored the settings of {upload.name}"] + moved
            if "init_image" in s:
                st.session_state["restored_edit"] = f"{s['init_image']}" + (f" under the mask {s['mask']}"
                                                                             if "mask" in s else "")
            st.rerun()
if "restore_moved" in st.session_state:  # said after the rerun, with what the form could not take as it was
    done, *moved = st.session_state.pop("restore_moved")
    (st.warning if moved else st.success)(done + (", but " + "; ".join(moved) if moved else "") + ".")
if "restored_edit" in st.session_state:
    st.info(f"The restored image was drawn from {st.session_state.pop('restored_edit')}: upload it again below "
            "(Start from an image) to draw it again.")

# outside the form: the candidate budget below shows only when this is on (a form cannot react to
# its own widgets; a widget outside it reruns the page and keeps what was typed in the form)
c1, c2 = st.columns(2)
only_pass = c1.checkbox("Keep only images that pass", key=resources.start("only_pass", False),
                        help="Draw up to a candidate budget of images and show up to Images of those the "
                             "check passes")
# outside the form too: it redraws the images already shown, without drawing new ones
boxes = c2.checkbox("Show boxes", key=resources.start("boxes", True),
                    help="The boxes the judge counts: at its presence confidence, and of two boxes of "
                         "different classes that overlap, the more confident")
with st.form("generate"):
    prompt = st.text_input("Prompt", key=resources.start(wkey("prompt"), ""),
                           placeholder="e.g. a black cat to the left of a dog")
    c1, c2, c3 = st.columns(3)
    n = c1.number_input("Images", 1, 16, key=resources.start("n", 4))
    seed = c2.number_input("Seed", 0, 2**31 - 1, key=resources.start(wkey("seed"), 0))
    random_seed = c3.checkbox("Random seed", key=resources.start(wkey("random_seed"), False))
    c1, c2, c3, c4 = st.columns(4)
    steps = c1.slider("Steps", 1, most_steps, step=1, key=wkey("steps"),  # started above
                      help="Denoiser calls: more is slower and usually better, up to the model's diffusion steps")
    guidance = c2.slider("Guidance scale", *GUIDANCE, step=0.5,
                         key=resources.start(wkey("guidance"), float(model_defaults["guidance_scale"])),
                         help="How strongly the image follows the prompt (classifier-free guidance); 1 = off")
    truncation = c3.slider("Truncation", *TRUNCATION, step=0.01,
                           key=resources.start(wkey("truncation"), float(model_defaults["truncation"])),
                           help="Each token is drawn from the most likely codes holding this share of the "
                                "probability: lower is safer and plainer; 1 = off")
    purity = c4.checkbox("Purity sampling", key=resources.start(wkey("purity"), bool(model_defaults["purity"])),
                         help="Reveal first the tokens the model is surest of (Improved VQ-Diffusion)")
    avoid = st.multiselect("Must not contain (optional)", ["cat", "dog", "face"], key=resources.start("avoid", []),
                           help="Also checked on prompts the judge cannot read otherwise")
    with st.expander("Start from an image: edit or inpaint (optional)"):
        c1, c2 = st.columns(2)
        init_file = c1.file_uploader("Image (cut to a centre square)", type=IMAGE_TYPES, key="init_file")
        mask_file = c2.file_uploader("Mask: white = redraw (optional)", type=IMAGE_TYPES, key="mask_file")
        strength = st.slider("Redraw strength (filter ratio: how far the image's tokens are noised)", *STRENGTH,
                             step=0.01, key=resources.start(wkey("strength"), 0.5),
                             help="How far the image's tokens are noised before the model redraws them: low "
                                  "stays close to the image, 1 redraws it entirely")
        # inpainting keeps what is outside the mask, as `generation.sample --mask` does; blending is a choice
        blend = st.checkbox("With a mask: also redraw outside it, at this strength", key=resources.start(wkey("blend"), False),
                            help="Off: the mask's white part is drawn from scratch and the rest kept as it is")
    budget = st.number_input("Candidate budget", 1, 64, key=resources.start("budget", 8),
                             help="How many images to draw at most; up to Images of those that pass are "
                                  "shown") if only_pass else None
    go = st.form_submit_button("Generate", type="primary", disabled=pipe is None)
if go:  # a second click mid-run starts it anew, with the form as it is now
    resources.start_job("generate")

def draw_and_judge() -> int | None:
    """Sample, detect, judge, and put the result on top of the history; returns the first seed when
    Random seed drew it. A bad input returns with a message: the history below is still drawn
    (st.stop would hide it)."""
    if not prompt.strip():
        st.error("Write a prompt first: describe the image you want.")
        return
    notes = []
    try:
        spec = parse_prompt(prompt)
    except ParseError as e:
        spec = None
        hint = (" To keep a class out, choose it under Must not contain." if
                prompt.strip().lower().startswith(("no ", "without ")) else "")
        notes.append(f"{'Only Must not contain is checked' if avoid else 'Not judged'}: {short_quotes(str(e))}. "
                     f"Prompts the judge reads: 'a cat', 'two black dogs', 'a dog to the left of a face'.{hint}")
    if avoid:
        if spec and any(spec.expect.get(c, {}).get("count", 1) > 0 for c in avoid):
            notes.append("The prompt asks for a class you also excluded; the exclusion wins.")
        spec = PromptSpec.absent(prompt, avoid) if spec is None else spec.excluding(avoid)
    edit = {}
    if init_file is not None:
        from generation.data import edit_inputs

        # a mask's transparent parts are not painted: read on black, not redrawn
        opened = [open_image(f.getvalue(), f.name, background) for f, background in
                  ((init_file, "white"), (mask_file, "black")) if f is not None]
        for image, note in opened:
            if image is None:
                st.error(note)
                return
            if note:  # transparency, a downscale: said with the result
                notes.append(note)
        mismatch = mask_mismatch(opened[0][0], opened[1][0], init_file.name, mask_file.name) if mask_file else None
        if mismatch:  # said in the sizes uploaded, before edit_inputs compares the downscaled ones
            st.error(mismatch)
            return
        try:
            edit = edit_inputs(pipe.image_size, opened[0][0], opened[1][0] if mask_file is not None else None)
        except ValueError as e:
            st.error(str(e))
            return
        if mask_file is None or blend:
            edit["filter_ratio"] = strength
    elif mask_file is not None:
        st.warning("A mask needs the image it covers: upload one too (the mask was not used).")
    first = random.randrange(2**31 - 1) if random_seed else int(seed)
    count = int(budget) if only_pass and spec is not None else int(n)
    every = max(1, steps // 5)
    seeds = list(range(first, first + count))
    batches = [seeds[i:i + BATCH] for i in range(0, count, BATCH)]  # image k depends on its seed alone
    done = []  # the steps taken, over all batches

    def on_step(i, t, x0):
        done.append(i)
        which = f", batch {-(-len(done) // steps)} of {len(batches)}" if len(batches) > 1 else ""
        bar.progress(min(1.0, len(done) / (steps * len(batches))), text=f"step {i + 1} of {steps}{which}")
        if (i + 1) % every == 0 or i + 1 == steps:
            grid = pipe.decode_tokens(x0[: min(4, len(x0))])
            frames = list(grid.permute(0, 2, 3, 1).cpu().numpy())
            preview.image(frames, width=96, caption=[f"preview, step {i + 1}"] * len(frames))

    with resources.device_lock(), warnings.catch_warnings(record=True) as caught:
        # drawn once the device is ours: a waiting tab showed an empty bar above its waiting note
        bar = st.progress(0.0, text="sampling")
        preview = st.empty()
        warnings.simplefilter("always")  # e.g. a prompt longer than the text encoder reads: said on the page
        eyes = resources.judge_eyes()
        unseen = sorted(c for c in spec.expect if c not in eyes.classes) if spec and eyes else []
        # asked for and not looked at: a pass then says only that the rest of the prompt holds
        unchecked = [c for c in unseen if next(iter(spec.expect[c].values())) > 0]
        if unseen:  # no detector for a class: a verdict on it would be a guess ("found 0 cats" without eyes for cats)
            spec = spec.seen_by(eyes.classes)
            absent = [c for c in unseen if c not in unchecked]  # the prompt's implied "no dog"
            what = " and ".join(filter(None, [", ".join(unchecked), absent and "that there is no " + " or ".join(absent)]))
            notes.append(f"Not checked: {what} (no detector for {'it' if len(unseen) == 1 else 'them'}"
                         " is loaded; see the sidebar).")
            spec = spec if spec.expect else None
        keep_passing = only_pass and spec is not None and eyes is not None
        rows, passed = [], 0
        for b in batches:
            try:
                out = pipe(prompt, seeds=b, steps=steps, guidance_scale=guidance, truncation=truncation,
                           purity=purity, callback=on_step, **edit)
            except ValueError as e:  # e.g. a redraw strength below this model's one step (1/T)
                bar.empty()
                preview.empty()
                st.error(str(e))
                return
            settings = out.settings
            found = eyes.detect(out.images) if eyes else [[] for _ in b]
            for image, s, dets in zip(out.pil(), b, found):
                verdict = judge(spec, dets, image.size, eyes.rules, image=image) if spec and eyes else None
                counted = merge_detections(dets, eyes.rules) if eyes else dets  # the boxes the verdict is about
                rows.append({"image": image, "seed": s, "detections": counted, "verdict": verdict})
                passed += bool(verdict and verdict.passed)
            if keep_passing and passed >= int(n):  # enough: the rest of the budget is not drawn
                break
    preview.empty()
    bar.empty()
    notes = sorted({str(w.message) for w in caught if issubclass(w.category, GendetWarning)}) + notes
    if eyes is None:
        notes = [n for n in notes if not n.startswith("Not judged")] + ["Not judged: no detector is loaded "
                                                                         "(see the sidebar)."]
    tally = None  # how many candidates passed, when only passing ones are kept
    if keep_passing:
        drawn = len(rows)
        tally = (f"{passed} of {drawn} candidate{'s' * (drawn != 1)} drawn pass{'es' * (drawn == 1)} the check"
                 + (f" (enough: the other {count - drawn} of the budget were not drawn)" if drawn < count else "")
                 + (f" (the candidate budget, {count}, is below Images, {int(n)})" if count < int(n) else ""))
        rows = [r for r in rows if r["verdict"].passed][: int(n)]
    if init_file is not None:  # the PNGs and the history say what was redrawn
        settings.update({"init_image": init_file.name} | ({"mask": mask_file.name} if mask_file else {}))
    history = st.session_state.setdefault("history", [])
    history.insert(0, {"prompt": prompt, "settings": settings, "rows": rows, "unchecked": unchecked,
                       "judged": spec is not None and eyes is not None, "notes": notes, "tally": tally})
    del history[SHOWN:]  # the images of entries no longer shown are not kept in memory
    return first if random_seed else None

started, again = resources.job("generate")
if started is not None:
    resources.remember_widgets()  # the form as sent, should the user leave before the drawing ends
    restarted = st.empty()
    if again:
        restarted.info("Drawing again from the start: the page reran before the drawing in progress ended "
                       "(a widget was used).")
    with resources.running("generate"):  # the generator may be gone since the click (the page says why)
        first_seed = draw_and_judge() if pipe is not None else None
    restarted.empty()
    if first_seed is not None:  # the Seed field shows the draw's first seed: Random seed off then draws it again
        st.session_state["restore"] = {wkey("seed"): first_seed}
        st.rerun()

for k, entry in enumerate(st.session_state.get("history", [])):
    if k == 1:
        st.subheader("Earlier in this session")
    st.markdown(f"**{as_text(entry['prompt'])}** - {describe_settings(entry['settings'])}")
    for note in entry["notes"]:
        st.warning(plain(note))  # notes quote the prompt: shown as typed, not as markdown
    if entry["tally"]:
        st.caption(entry["tally"])
    if not entry["rows"]:
        st.warning("No image passed the check; raise the candidate budget or change the prompt.")
    for j, row in enumerate(entry["rows"]):
        if j % 4 == 0:  # a row of its own, so a long verdict does not push the next row's images down
            cols = st.columns(4)
        with cols[j % 4]:
            shown = draw_detections(row["image"], row["detections"]) if boxes else row["image"]
            st.image(shown, caption=f"seed {row['seed']}", width="stretch")
            # the button above the verdict: verdicts differ in length, so buttons under them did not line
            # up; and each stays with its image where narrow screens stack the columns
            settings = {"prompt": entry["prompt"], "seed": row["seed"], **entry["settings"]}
            st.download_button("Download PNG", png_bytes(row["image"], settings), f"gendet_{row['seed']}.png",
                               "image/png", key=f"dl_{k}_{j}")
            v = row["verdict"]
            if v is not None and v.passed and entry.get("unchecked"):  # green would claim the whole prompt
                st.info(f"✓ {v.reason} ({', '.join(entry['unchecked'])} not checked)")
            elif v is not None:
                (st.success if v.passed else st.error)(("✓ " if v.passed else "✗ ") + v.reason)
            elif not entry["judged"]:
                st.caption("not judged")
resources.remember_widgets()
