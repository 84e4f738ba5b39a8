"""Evaluate: run a prompt suite through generate-then-detect, or open an earlier run."""

import json
import re
from pathlib import Path

import streamlit as st
from PIL import Image

import gendet_env
from detection.draw import draw_detections
from evaluation.judge import JudgeRules, describe_rules, merge_detections
from evaluation.report import report_archive
from evaluation.run import find_judge_validation, model_info
from evaluation.runner import read_rows, run_suite
from evaluation.suite import builtin_suites, load_suite, suite_from_prompts
from evaluation.summary import describe_agreement
from generation.pipeline import DEFAULTS
from generation.sampling_options import clean_prompt, describe_settings
from ui import resources

PAGE = 120  # images shown at once: 20 rows of 6


def unreadable(run) -> str | None:
    """What keeps a run folder from being shown, or None: it may be damaged, or come from elsewhere
    (rows naming files outside it are refused by read_rows)."""
    try:
        summary = json.loads((run / "summary.json").read_text())
    except (OSError, ValueError) as e:  # json's message gives a line and column, not the file
        return f"summary.json: {e}"
    try:
        read_rows(run / "results.jsonl")
    except (OSError, ValueError) as e:  # read_rows names the file and line
        return str(e)
    if not (isinstance(summary, dict) and isinstance(summary.get("overall"), dict)
            and isinstance(summary.get("categories"), dict)):
        return "summary.json has no 'overall' and 'categories'"
    return None


def in_repository(text: str) -> Path | None:
    """A typed folder: `~` expanded, a relative one in the repository (an absolute one as it is)."""
    return gendet_env.ROOT / resources.user_path(text.strip()) if text.strip() else None


def what_is_wrong(run: Path) -> str | None:
    """Why `run` is not a finished run folder to open, or None (never raises: a name too long to
    look up, a folder this user may not enter)."""
    try:
        if not run.exists():
            return "does not exist"
        if not run.is_dir():
            return "is a file, not a run folder"
        if not (run / "summary.json").is_file():
            return "holds no summary.json: not a finished evaluation run"
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    return None


def code(text) -> str:
    """`text` as inline code in Markdown, whatever backticks it holds (a folder's name is the user's)."""
    text = str(text)
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def ending(message: str) -> str:
    """A message as a sentence: its full stop."""
    return message if message.endswith((".", "!", "?")) else message + "."


resources.sidebar()
st.title("Evaluate")
run_tab, open_tab = st.tabs(["Run a suite", "Open a run"])

with run_tab:
    pipe = resources.generator()
    # the model's own sampling defaults (pipeline.json, over DEFAULTS), as `evaluation.run` uses them
    model_defaults = pipe.defaults if pipe is not None else DEFAULTS
    c1, c2, c3 = st.columns(3)
    suite_name = c1.selectbox("Suite", builtin_suites(), key=resources.start("ev_suite", "smoke"))
    per_prompt = c2.number_input("Images per prompt", 1, 16, key=resources.start("ev_n", 2))
    most_steps, default_steps = resources.steps_range(pipe)
    resources.start("ev_steps", default_steps)
    st.session_state["ev_steps"] = min(st.session_state["ev_steps"], most_steps)  # kept from a model with more
    steps = c3.slider("Steps", 1, most_steps, key="ev_steps")
    own = st.text_area("Or your own prompts, one a line (they replace the suite)", key=resources.start("ev_prompts", ""),
                       placeholder="two black cats\na dog to the left of a face")
    out_text = st.text_input("Output folder (relative: in the repository)",
                             key=resources.start("ev_out", str(gendet_env.ROOT / "runs" / "app_eval")))
    out_dir = in_repository(out_text)
    if st.button("Run", type="primary", key="ev_run"):
        if pipe is None or resources.judge_eyes() is None:
            st.error("The evaluation needs a generator and at least one detector (see the sidebar).")
        elif out_dir is None:
            st.error("Choose an output folder for the run.")
        elif problem := (gendet_env.unwritable_reason(out_dir)  # said now, not after waiting for the device
                         or gendet_env.busy_reason(out_dir, "evaluation")):
            st.error(f"Cannot write the run to {code(out_dir)}: {problem}.")
        else:  # the run goes on with these values if the page reruns before it ends
            resources.start_job("evaluate", {
                "prompts": [p for p in map(clean_prompt, own.splitlines()) if p], "suite": suite_name,
                "per_prompt": int(per_prompt), "out_dir": out_dir, "generator": resources.paths()["generator"],
                "settings": {**{k: model_defaults[k] for k in DEFAULTS}, "steps": steps}})  # recorded in run.json
    started, again = resources.job("evaluate")
    if started is not None:
        resources.remember_widgets()  # the fields as set for this run, should the user leave before it ends
        eyes = resources.judge_eyes()
        going_on = st.empty()
        if again:
            going_on.info(f"Going on with the run in {code(started['out_dir'])}: the page reran before it ended (a "
                          "widget was used). The prompts already done are kept.")
        with resources.running("evaluate"), resources.device_lock():
            bar = st.progress(0.0, text="starting")  # once the device is ours: not an empty bar above the wait
            try:
                if pipe is None or eyes is None:  # changed in the sidebar since the click
                    raise ValueError("The evaluation needs a generator and at least one detector (see the sidebar).")
                if resources.paths()["generator"] != started["generator"]:  # the page reran with another one
                    raise ValueError(f"The sidebar's generator changed to {code(resources.paths()['generator'])} "
                                     f"while the run drew with {code(started['generator'])}: click Run to go on "
                                     "with the new one (in another output folder)")
                # recorded in run.json as evaluation.run records them: a resume with another model is refused
                models = {"generator": model_info(Path(started["generator"]).expanduser()), "detectors": eyes.info()}
                before = len(read_rows(started["out_dir"] / "results.jsonl")) \
                    if (started["out_dir"] / "results.jsonl").is_file() else 0
                lines, settings = started["prompts"], started["settings"]
                suite = suite_from_prompts(lines) if lines else load_suite(started["suite"])
                done, steps_each = [0], settings["steps"]

                def on_prompt(d, n):
                    done[0] = d
                    bar.progress(d / n, text=f"prompt {d} of {n}")

                def on_step(i, t, x0):  # each step a point where Streamlit can stop this run for a newer one
                    n = len(suite.prompts)
                    bar.progress(min(1.0, (done[0] + (i + 1) / steps_each) / n),
                                 text=f"prompt {done[0] + 1} of {n}, step {i + 1} of {steps_each}")

                summary = run_suite(suite, lambda p, seeds: pipe.generate_for_judge(p, seeds, **settings,
                                                                                callback=on_step),
                                    eyes, started["out_dir"], images_per_prompt=started["per_prompt"],
                                    settings=settings, progress=False, on_prompt=on_prompt, models=models,
                                    judge_validation=find_judge_validation(eyes))
            except gendet_env.RunFolderError as e:  # not writable, or another run is writing there
                st.error(f"Cannot write the run to {code(started['out_dir'])}: {e.reason}.")
            except ValueError as e:
                st.error(ending(str(e)))
            except OSError as e:  # a folder that cannot be made or written
                st.error(f"Cannot write the run to {code(started['out_dir'])}: {e.strerror or e}.")
            else:
                resources.keep("ev_open", str(started["out_dir"]))
                if before and before == summary["overall"]["n"] + summary.get("not_judged", 0):
                    st.info(f"The run in {code(started['out_dir'])} was already complete: nothing new was drawn.")
        going_on.empty()
        bar.empty()

with open_tab:
    resources.kept_text_input("Run folder (holds summary.json)", "ev_open")

folder = resources.kept("ev_open").strip()
if folder:
    path = in_repository(folder)
    if st.session_state.get("ev_shown") != str(path):  # another run: its own categories, all shown, page 1
        for key in ("ev_cats", "ev_only", "ev_page"):
            st.session_state.pop(key, None)
        resources.keep("ev_page", 1)
        st.session_state["ev_shown"] = str(path)
    if problem := what_is_wrong(path):
        st.warning(f"{code(folder)} {problem}.")
    elif problem := unreadable(path):
        st.error(f"{code(folder)} holds a run gendet cannot read: {problem}")
    else:
        summary = json.loads((path / "summary.json").read_text())
        rows = read_rows(path / "results.jsonl")
        what = "Your prompts" if summary.get("suite") == "prompts" else f"Suite {summary.get('suite')}"
        st.subheader(f"{what}: {summary['overall']['accuracy']:.1%} pass ({summary['overall']['n']} image{'s' * (summary['overall']['n'] != 1)})")
        st.caption(f"The run in {code(path)}, sampled at {describe_settings(summary.get('settings') or {})}")
        table = [{"category": c, "accuracy": round(b["accuracy"], 3), "95% CI low": round(b["ci95"][0], 3),
                  "95% CI high": round(b["ci95"][1], 3), "images": b["n"]}
                 for c, b in [*summary["categories"].items(), ("overall", summary["overall"])]]
        st.dataframe(table, hide_index=True)
        import altair as alt  # ships with streamlit

        base = alt.Chart(alt.Data(values=table)).encode(y=alt.Y("category:N", sort=None, title=None))
        bars = base.mark_bar().encode(x=alt.X("accuracy:Q", scale=alt.Scale(domain=[0, 1]),
                                              title="accuracy (the line: its 95% interval)"))
        ci = base.mark_rule(color="black").encode(x="95% CI low:Q", x2="95% CI high:Q")
        st.altair_chart(bars + ci, width="stretch")  # accuracy with its bootstrap 95% interval
        if summary.get("judge_validation"):  # as the run quoted it (evaluation.run finds it beside the detectors)
            on = summary.get("judge_validation_on")
            st.caption(f"Judge agreement with ground truth: {describe_agreement(summary['judge_validation'])}"
                       + (f" (on {on})" if on else ""))
        st.caption(f"Judge rules: {describe_rules(summary.get('judge', {}))}")
        cats = sorted({r["category"] for r in rows})
        pick = st.multiselect("Categories", cats, default=cats, key="ev_cats")
        c1, c2 = st.columns([3, 1])
        only = c1.radio("Show", ["all", "pass", "fail"], horizontal=True, key="ev_only")
        boxes = c2.checkbox("Show boxes", True, key="ev_boxes", help="The boxes the judge counted")
        shown = [r for r in rows if r["category"] in pick and (only == "all" or r["passed"] == (only == "pass"))]
        judged_by = summary.get("judge") or {}  # the run's rules, as it recorded them
        rules = JudgeRules.from_dict(judged_by)
        pages = max(1, -(-len(shown) // PAGE))
        resources.start("ev_page", 1)
        st.session_state["ev_page"] = min(st.session_state["ev_page"], pages)  # kept from a longer selection
        first = 0
        if pages > 1:
            number = st.number_input(f"Page (of {pages})", 1, pages, key="ev_page")
            first = (number - 1) * PAGE
            st.caption(f"Images {first + 1}-{min(first + PAGE, len(shown))} of {len(shown)}")
        page = shown[first:first + PAGE]
        for k, r in enumerate(page):
            if k % 6 == 0:  # a row of its own: a long caption does not push the next row's images down
                cols = st.columns(6)
            with cols[k % 6]:
                try:
                    with Image.open(path / r["image"]) as im:
                        picture = (draw_detections(im, merge_detections(r["detections"], rules))
                                   if boxes and r.get("detections") else im.convert("RGB"))
                    st.image(picture, caption=f"{r['prompt']} #{r['seed']}", width="stretch")
                except Exception as e:  # noqa: BLE001 - missing or not an image: said in its cell (PIL raises many
                    # types, and ultralytics' patched Image.open a ModuleNotFoundError for a HEIF plugin)
                    st.warning(f"#{r['seed']}: {'missing' if isinstance(e, FileNotFoundError) else 'not an image'}")
                st.caption(("✓ " if r["passed"] else "✗ ") + r["reason"])
        if (path / "report.html").is_file():
            st.download_button("Download the report (zip: report.html and its images)",
                               lambda: report_archive(path), f"{path.name}_report.zip", "application/zip",
                               key="ev_zip", on_click="ignore")
            st.caption(f"The report in the run folder: {path / 'report.html'}")
resources.remember_widgets()
