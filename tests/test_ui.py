"""Every page of the app in-process (AppTest) with tiny models built by the tests."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

UI = Path(__file__).resolve().parents[1] / "ui"


@pytest.fixture(scope="module")
def tiny_models(tiny_detector, tmp_path_factory):
    from test_pipeline import tiny_pipeline

    gen = tmp_path_factory.mktemp("gen") / "generator"
    tiny_pipeline().save_pretrained(gen)
    return gen, tiny_detector[1] / "best.pt"


@pytest.fixture
def env(tiny_models, monkeypatch, tmp_path):
    gen, det = tiny_models
    monkeypatch.setenv("GENDET_GENERATOR", str(gen))
    monkeypatch.setenv("GENDET_CATDOG", str(det))
    monkeypatch.setenv("GENDET_FACE", str(tmp_path / "no_face.pt"))
    return gen, det


def page(name):
    return AppTest.from_file(str(UI / name), default_timeout=120)


def test_router_and_home_start_without_exception():
    at = AppTest.from_file(str(UI / "streamlit_app.py"), default_timeout=60).run()
    assert not at.exception and at.title[0].value == "gendet"


def test_generate_shows_images_verdicts_and_downloads(env):
    at = page("generate.py").run()
    assert not at.exception
    at.text_input(key="prompt").set_value("a cat")
    # the tiny model has 10 diffusion steps (and defaults to 25): the slider offers what it can take
    assert at.slider(key="steps").max == at.slider(key="steps").value == 10
    at.slider(key="steps").set_value(3)
    at.number_input(key="n").set_value(2)
    at.button(key="FormSubmitter:generate-Generate").click().run()
    assert not at.exception
    assert len(at.get("imgs")) >= 1 or len(at.get("image")) >= 1
    verdicts = [e.value for e in at.success] + [e.value for e in at.error]
    assert len(verdicts) == 2 and all(v.startswith(("✓", "✗")) for v in verdicts)
    assert any("expected" in v or v.startswith("✓ ok: 1 cat") for v in verdicts)
    # this env has no face detector: "no face" is not checked, and the page says so
    assert all("face" not in v for v in verdicts)
    assert [w.value for w in at.warning] == ["Not checked: that there is no face (no detector for it is loaded; "
                                             "see the sidebar)."]
    assert len(at.get("download_button")) == 2
    # each image's button sits between it and its verdict: the buttons line up whatever the length of
    # the verdicts, and each stays with its image where narrow screens stack the columns
    shown = [c for c in at.columns if c.get("download_button")]
    assert len(shown) == 2
    for column in shown:
        kinds = [child.type for child in column.children.values()]
        assert kinds[:2] == ["image", "download_button"] and kinds[2] in ("success", "error"), kinds


def test_generate_keeps_the_passing_candidates_of_a_budget_drawn_in_batches(env):
    """"Keep only images that pass" over a budget of 10, drawn as batches of 8 and 2: the same
    verdicts as generate_checked on one batch of the same seeds; at most the asked-for images shown."""
    from evaluation.checked import generate_checked
    from evaluation.detectors import JudgeDetectors
    from generation.pipeline import TextToImage

    gen, det = env
    want = generate_checked(TextToImage.from_pretrained(gen), JudgeDetectors.load(f"catdog={det}"),
                            "a photo of nothing", n_candidates=10, seed=0, keep_failed=True, steps=2)
    passing = [c for c in want if c.verdict.passed]
    at = page("generate.py").run()
    assert "budget" not in [w.key for w in at.number_input]  # shown only with "Keep only images that pass"
    at.checkbox(key="only_pass").check().run()  # outside the form: the page reruns (chromium test: text kept)
    at.text_input(key="prompt").set_value("a photo of nothing")
    at.slider(key="steps").set_value(2)
    at.number_input(key="n").set_value(3)
    at.number_input(key="budget").set_value(10)
    at.button(key="FormSubmitter:generate-Generate").click().run()
    assert not at.exception
    # the second batch is drawn only when the first gives fewer than 3 passing images
    first = sum(c.verdict.passed for c in want if c.seed < 8)
    tally = (f"{first} of 8 candidates drawn pass the check (enough: the other 2 of the budget were not drawn)"
             if first >= 3 else f"{len(passing)} of 10 candidates drawn pass the check")
    assert tally in [c.value for c in at.caption]
    assert len(at.get("download_button")) == min(3, first if first >= 3 else len(passing))


def test_a_random_seed_is_shown_in_the_seed_field_to_draw_again(env):
    """Random seed: the images' seeds start at the drawn one, the Seed field then holds it, and with
    Random seed off the same seeds are drawn again."""
    at = page("generate.py").run()
    at.text_input(key="prompt").set_value("a cat")
    at.slider(key="steps").set_value(2)
    at.number_input(key="n").set_value(2)
    at.checkbox(key="random_seed").check()
    at.button(key="FormSubmitter:generate-Generate").click().run()
    assert not at.exception
    first = at.number_input(key="seed").value
    assert first != 0 and [c for i in at.get("image") for c in i.captions] == [f"seed {first}", f"seed {first + 1}"]
    at.checkbox(key="random_seed").uncheck()
    at.button(key="FormSubmitter:generate-Generate").click().run()
    assert not at.exception and at.number_input(key="seed").value == first
    assert [c for i in at.get("image") for c in i.captions][:2] == [f"seed {first}", f"seed {first + 1}"]


def test_generate_form_starts_at_the_models_sampling_defaults(tiny_models, monkeypatch, tmp_path):
    import shutil

    gen = tmp_path / "generator"
    shutil.copytree(tiny_models[0], gen)
    meta = json.loads((gen / "pipeline.json").read_text())
    meta["defaults"] = {"steps": 7, "guidance_scale": 4.5, "truncation": 0.9, "purity": True}
    (gen / "pipeline.json").write_text(json.dumps(meta))
    monkeypatch.setenv("GENDET_GENERATOR", str(gen))
    at = page("generate.py").run()
    assert not at.exception
    assert (at.slider(key="steps").value, at.slider(key="guidance").value, at.slider(key="truncation").value,
            at.checkbox(key="purity").value) == (7, 4.5, 0.9, True)


def test_generate_rejects_an_empty_prompt_and_says_when_it_cannot_judge(env):
    at = page("generate.py").run()
    at.button(key="FormSubmitter:generate-Generate").click().run()
    assert not at.exception and "Write a prompt first" in at.error[0].value
    at.text_input(key="prompt").set_value("a purple giraffe")
    at.slider(key="steps").set_value(2)
    at.number_input(key="n").set_value(1)
    at.button(key="FormSubmitter:generate-Generate").click().run()
    # one message, with the reason and what the judge reads; and the text encoder's cut, said on the page
    assert not at.exception and not at.info and [w.value for w in at.warning] == [
        "prompt 'a purple giraffe' has 16 tokens; truncated to the model's 12",
        "Not judged: cannot judge 'a purple giraffe': 'giraffe' is not one of cat, dog, face. Prompts the judge reads: "
        "'a cat', 'two black dogs', 'a dog to the left of a face'."]
    # a bad input afterwards: its message, and the image drawn before stays on the page
    at.text_input(key="prompt").set_value("   ")
    at.button(key="FormSubmitter:generate-Generate").click().run()
    assert not at.exception and "Write a prompt first" in at.error[0].value
    assert [m.value for m in at.markdown if m.value.startswith("**a purple giraffe**")]
    assert len(at.get("download_button")) == 1


def test_a_long_prompt_the_judge_cannot_read_gets_a_short_note(env):
    """"a cat " * 200: the note quoted the whole prompt twice, and called 'cat a cat ... a' a colour."""
    at = page("generate.py").run()
    at.text_input(key="prompt").set_value("a cat " * 200)
    at.slider(key="steps").set_value(1)
    at.number_input(key="n").set_value(1)
    at.button(key="FormSubmitter:generate-Generate").click().run()
    cut = ("a cat " * 200)[:80] + "…"
    assert not at.exception and [w.value for w in at.warning if w.value.startswith("Not judged")] == [
        f"Not judged: cannot judge '{cut}': '{cut}' names more than one object; objects are joined by 'and', e.g. "
        "'a cat and a dog'. Prompts the judge reads: 'a cat', 'two black dogs', 'a dog to the left of a face'."]


def test_generate_shows_the_prompt_as_typed_and_points_no_x_to_must_not_contain(env):
    at = page("generate.py").run()
    at.text_input(key="prompt").set_value("no *black* dogs $x$ ")
    at.slider(key="steps").set_value(2)
    at.number_input(key="n").set_value(1)
    at.multiselect(key="avoid").set_value(["dog"])
    at.button(key="FormSubmitter:generate-Generate").click().run()
    assert not at.exception
    assert [m.value for m in at.markdown if m.value.startswith("**")][0].startswith(r"**no \*black\* dogs \$x\$** - ")
    said = [w.value for w in at.warning if "Must not contain" in w.value]
    assert len(said) == 1 and said[0].startswith("Only Must not contain is checked: cannot judge")
    assert said[0].endswith("To keep a class out, choose it under Must not contain.")
    assert r"'no \*black\* dogs \$x\$'" in said[0]  # the quoted prompt as typed, not bold or typeset


def test_the_sidebar_says_what_is_wrong_with_a_model_path(tiny_models, tmp_path):
    from ui.resources import path_status

    gen, det = tiny_models
    assert path_status("generator", str(gen)) == f"found at `{gen}`"
    assert path_status("generator", str(gen.parent)) == (f"not a generator folder (no pipeline.json); "
                                                         f"did you mean `{gen}`?")
    assert path_status("generator", str(tmp_path / "x")) == f"missing: `{tmp_path / 'x'}`"
    # what exists, said as what it is, not "missing"
    (tmp_path / "afile").write_text("x")
    assert path_status("generator", str(tmp_path / "afile")) == f"a file, not a generator folder: `{tmp_path / 'afile'}`"
    (tmp_path / "empty").mkdir()
    assert path_status("generator", str(tmp_path / "empty")) == (f"a folder without pipeline.json (not a saved "
                                                                 f"generator): `{tmp_path / 'empty'}`")
    assert path_status("catdog", "") == "no path given"
    assert path_status("catdog", str(det)) == f"found at `{det}`"
    (tmp_path / "README.md").write_text("# a card")
    assert path_status("catdog", str(tmp_path / "README.md")) == f"not a detector: `{tmp_path / 'README.md'}` is not a .pt file"


def test_a_path_that_cannot_be_checked_is_said_not_raised(monkeypatch, tmp_path):
    """A name over 255 bytes: Path.exists raises OSError (ENAMETOOLONG), which put a traceback on every
    page for as long as the sidebar kept the value."""
    from ui.resources import look, path_status

    long = tmp_path / ("x" * 300)
    assert look(long) == look(long / "pipeline.json") == "file name too long"
    assert path_status("generator", str(long)) == f"cannot check `{long}`: file name too long"
    assert path_status("face", str(long / "a.pt")) == f"cannot check `{long / 'a.pt'}`: file name too long"
    monkeypatch.setenv("GENDET_GENERATOR", str(long))
    monkeypatch.setenv("GENDET_CATDOG", str(long / "a.pt"))
    at = page("generate.py").run()
    assert not at.exception and at.warning[0].value.startswith(f"No generator at `{long}` (file name too long).")
    assert f"cannot check `{long / 'a.pt'}`: file name too long" in [c.value for c in at.sidebar.caption]


def test_the_sidebar_expands_a_home_folder(tiny_models, monkeypatch, tmp_path):
    """"~/gen" was looked up literally (and said "missing: ~/gen")."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "gen").symlink_to(tiny_models[0])
    monkeypatch.setenv("GENDET_GENERATOR", "~/gen")
    monkeypatch.setenv("GENDET_CATDOG", "~/nothing.pt")
    at = page("home.py").run()
    captions = [c.value for c in at.sidebar.caption]
    assert not at.exception and f"found at `{tmp_path / 'gen'}`" in captions
    assert f"missing: `{tmp_path / 'nothing.pt'}`" in captions


def test_a_detector_that_fails_to_load_is_named_once(env, monkeypatch, tmp_path):
    fake = tmp_path / "fake.pt"
    Image.new("RGB", (4, 4)).save(fake, format="PNG")
    monkeypatch.setenv("GENDET_CATDOG", str(fake))
    at = page("detect.py").run()
    assert not at.exception and at.error[0].value == (f"Could not load the catdog detector: {fake}: not a "
                                                      "PyTorch checkpoint (neither a zip archive nor a pickle, as "
                                                      "torch.save writes)")


def test_generate_without_a_generator_explains(monkeypatch, tmp_path):
    monkeypatch.setenv("GENDET_GENERATOR", str(tmp_path / "nothing"))
    at = page("generate.py").run()
    assert not at.exception and "No generator at" in at.warning[0].value
    monkeypatch.setenv("GENDET_GENERATOR", "")  # an emptied path: said so, not "No generator at ``"
    at = page("generate.py").run()
    assert at.warning[0].value.startswith("No generator folder given (the sidebar's Generator folder is empty).")


def test_detect_page_and_upload_handling(env):
    at = page("detect.py").run()
    assert not at.exception and at.multiselect(key="det_chosen").value == ["catdog"]
    at.multiselect(key="det_chosen").set_value([]).run()
    assert not at.exception and at.info[0].value == "Choose at least one detector above."
    import io

    from ui.uploads import IMAGE_TYPES, open_image

    image, note = open_image(b"not an image", "junk.png")
    assert image is None and note == "junk.png: not a readable image (PNG, JPEG, WebP, BMP, TIFF or GIF)"
    # every format the uploaders take opens to the same pixels (GIF: through its palette)
    assert at.get("file_uploader")[0].proto.type == [f".{t}" for t in IMAGE_TYPES]
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    for kind in ("BMP", "TIFF", "GIF", "WEBP"):
        buf = io.BytesIO()
        original = Image.fromarray(pixels).quantize(64) if kind == "GIF" else Image.fromarray(pixels)
        original.save(buf, format=kind, **({"lossless": True} if kind == "WEBP" else {}))
        image, note = open_image(buf.getvalue(), f"x.{kind.lower()}")
        assert note is None and np.array_equal(np.asarray(image), np.asarray(original.convert("RGB"))), kind
    buf = io.BytesIO()
    Image.fromarray(np.zeros((3000, 1000, 3), np.uint8)).save(buf, format="PNG")
    image, note = open_image(buf.getvalue(), "tall.png")
    assert image.size == (683, 2048) and "downscaled from 1000x3000" in note
    assert image.info["original_size"] == (1000, 3000)
    from types import SimpleNamespace

    from ui.uploads import box_table

    seen = SimpleNamespace(label="dog", confidence=0.8766, box=(10.0, 20.0, 100.4, 683.0))
    assert box_table([seen], image) == [{"label": "dog", "confidence": 0.877,
                                         "box x1, y1, x2, y2": "15, 29, 147, 1000"}]
    # transparency on white, not on whatever colour the transparent pixels hold
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red everywhere, opaque only in the top row
    rgba[0, :, 3] = 255
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    image, note = open_image(buf.getvalue(), "rgba.png")
    assert note == "rgba.png: transparent parts shown on white"
    assert np.asarray(image)[0].tolist() == [[255, 0, 0]] * 4 and np.asarray(image)[1:].min() == 255


def test_evaluate_runs_the_smoke_suite_and_shows_the_report(env, tmp_path, monkeypatch):

    defaults = json.loads((env[0] / "pipeline.json").read_text())["defaults"]
    at = page("evaluate.py").run()
    assert not at.exception
    T = json.loads((env[0] / "diffusion.json").read_text())["num_timesteps"]
    # the model's own default, as the CLI's; at most its T (the tiny model defaults to 25 of its 10)
    assert at.slider(key="ev_steps").value == min(defaults["steps"], T) == 10
    assert at.slider(key="ev_steps").max == T
    at.number_input(key="ev_n").set_value(1)
    at.slider(key="ev_steps").set_value(2)
    at.text_input(key="ev_out").set_value(str(tmp_path / "run"))
    at.button(key="ev_run").click().run()
    assert not at.exception
    assert (tmp_path / "run" / "summary.json").is_file()
    # the run records every setting it sampled with: the model's defaults and the chosen steps; and its
    # models, as evaluation.run does (none were recorded: a resume with another generator mixed two models)
    from evaluation.run import model_info

    recorded = json.loads((tmp_path / "run" / "run.json").read_text())
    assert recorded["settings"] == {**defaults, "steps": 2}
    assert recorded["models"]["generator"] == model_info(env[0])
    assert recorded["models"]["detectors"]["catdog"]["path"] == str(env[1])
    at.button(key="ev_run").click().run()  # again: the run is complete, and the page says so
    assert at.info[-1].value == f"The run in `{tmp_path / 'run'}` was already complete: nothing new was drawn."
    assert at.subheader[0].value.startswith("Suite smoke:")
    assert f"The run in `{tmp_path / 'run'}`, sampled at 2 steps, guidance" in [c.value for c in at.caption][0]
    assert len(at.dataframe) == 1 and len(at.get("imgs")) + len(at.get("image")) >= 1
    assert len(at.get("vega_lite_chart")) == 1  # accuracy bars with their intervals
    # prompts of one's own replace the suite; one the judge cannot read is named
    own = page("evaluate.py").run()
    own.number_input(key="ev_n").set_value(1)
    own.slider(key="ev_steps").set_value(2)
    own.text_input(key="ev_out").set_value(str(tmp_path / "own"))
    own.text_area(key="ev_prompts").set_value("two black cats\n\na photo of nothing\n")
    own.button(key="ev_run").click().run()
    assert not own.exception and own.subheader[0].value.startswith("Your prompts:")
    rows = [json.loads(line) for line in (tmp_path / "own" / "results.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["two black cats", "a photo of nothing"]
    own.text_area(key="ev_prompts").set_value("a cat\na purple giraffe")
    own.text_input(key="ev_out").set_value(str(tmp_path / "own2"))
    own.button(key="ev_run").click().run()
    assert "prompt 2: cannot judge 'a purple giraffe'" in own.error[0].value
    # the first run's folder again, at other steps: the page says what differs, the run stays as it was
    own.text_area(key="ev_prompts").set_value("")
    own.slider(key="ev_steps").set_value(3)
    own.text_input(key="ev_out").set_value(str(tmp_path / "run"))
    own.button(key="ev_run").click().run()
    assert not own.exception and "holds a run with other settings (settings.steps: 2 there, 3 now" in \
        own.error[0].value and "start a new run in another folder" in own.error[0].value
    bad = page("evaluate.py").run()
    bad.text_input(key="ev_open").set_value(f"  {tmp_path}  ").run()  # spaces around a pasted path: ignored
    assert bad.warning[0].value == f"`{tmp_path}` holds no summary.json: not a finished evaluation run."
    # output folders that cannot hold a run: said in a line, nothing written (an empty field wrote to the cwd)
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    long = tmp_path / ("x" * 300)
    for out, said in (("", "Choose an output folder for the run."),
                      (str(tmp_path / "a_file"), f"Cannot write the run to `{tmp_path / 'a_file'}`: {tmp_path / 'a_file'} "
                                                 "is a file, not a folder."),
                      (str(tmp_path / "a_file" / "run"), f"Cannot write the run to `{tmp_path / 'a_file' / 'run'}`"),
                      (str(tmp_path / "dangling"), f"Cannot write the run to `{tmp_path / 'dangling'}`: "
                                                   f"{tmp_path / 'dangling'} is a link to {tmp_path / 'gone'}, which "
                                                   "does not exist."),
                      (str(long), f"Cannot write the run to `{long}`: cannot reach {long} (File name too long).")):
        bad.text_input(key="ev_out").set_value(out)
        bad.button(key="ev_run").click().run()
        assert not bad.exception and bad.error[0].value.startswith(said), bad.error[0].value
    # a folder to open: too long a name, a file, a backtick in its name (kept in the code span), `~`
    for folder, said in ((str(long), f"`{long}` cannot be read (File name too long)."),
                         (str(tmp_path / "a_file"), f"`{tmp_path / 'a_file'}` is a file, not a run folder."),
                         (str(tmp_path / "a`b"), f"``{tmp_path / 'a`b'}`` does not exist.")):
        bad.text_input(key="ev_open").set_value(folder).run()
        assert not bad.exception and bad.warning[0].value == said, bad.warning[0].value
    monkeypatch.setenv("HOME", str(tmp_path))
    bad.text_input(key="ev_open").set_value("~/run").run()
    assert not bad.exception and bad.subheader[0].value.startswith("Suite smoke:")
    bad.text_input(key="ev_open").set_value("~nosuchuser/run").run()  # no such user: a name like any other
    assert not bad.exception and bad.warning[0].value == "`~nosuchuser/run` does not exist."
    import gendet_env

    with gendet_env.held(tmp_path / "busy", "other"):  # another tab's run, or a CLI run, writes there now
        bad.text_input(key="ev_out").set_value(str(tmp_path / "busy"))
        bad.button(key="ev_run").click().run()
        assert bad.error[0].value.startswith(f"Cannot write the run to `{tmp_path / 'busy'}`: another run is "
                                             "writing there now (this evaluation run"), bad.error[0].value
    assert not any((tmp_path / "busy").iterdir())


def test_models_page_lists_what_is_loaded(env):
    # a card from anyone: its remote images are not fetched by the browser (shown as their alt text)
    (env[0].parent / "README.md").write_text("# Card\n![curves](http://203.0.113.9/x.png) ![b](//203.0.113.9/y.png)\n")
    at = page("models_page.py").run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "M parameters" in text and "catdog" in " ".join(s.value for s in at.subheader)
    gen, det = env  # parameters and file sizes, both said
    assert f"({sum(f.stat().st_size for f in gen.rglob('*.safetensors')) / 1e6:.1f} MB on disk) on cpu" in text
    assert f"({det.stat().st_size / 1e6:.1f} MB on disk)" in text
    assert "scratch text encoder (12 tokens, width 32)" in text  # the tiny pipeline's
    assert "classes cat, dog," in text  # words, not a Python list
    defaults = json.loads((env[0] / "pipeline.json").read_text())["defaults"]
    assert f"samples at {defaults['steps']} steps, guidance {defaults['guidance_scale']:g}" in text
    assert any(c.value.startswith("Measured on the ") and " val images of " in c.value for c in at.caption)
    card = next(m.value for m in at.markdown if m.value.startswith("# Card"))
    assert "[image: curves] [image: b]" in card and "203.0.113.9" not in card


def test_generate_does_not_judge_what_no_loaded_detector_sees(env):
    """This env loads the cat/dog detector only: "two faces" is judged on "no cat, no dog" alone, and
    a prompt that asks only about faces is not judged at all."""
    at = page("generate.py").run()
    at.text_input(key="prompt").set_value("two faces")
    at.slider(key="steps").set_value(2)
    at.number_input(key="n").set_value(1)
    at.button(key="FormSubmitter:generate-Generate").click().run()
    verdicts = [e.value for e in at.success] + [e.value for e in at.error] + [e.value for e in at.info]
    assert not at.exception and len(verdicts) == 1
    # a pass is not green: the faces the prompt asks for were not looked at
    assert (verdicts[0] == "✓ ok: no cat, no dog (face not checked)" and not at.success
            or verdicts[0].startswith("✗ expected no"))
    assert at.warning[0].value == "Not checked: face (no detector for it is loaded; see the sidebar)."
    at.text_input(key="prompt").set_value("a purple giraffe")
    at.multiselect(key="avoid").set_value(["face"])
    at.button(key="FormSubmitter:generate-Generate").click().run()
    assert not at.exception and len(at.success) + len(at.error) + len(at.info) == 1  # the new entry has no verdict
    assert "not judged" in [c.value for c in at.caption]


def test_show_boxes_redraws_the_history_and_the_history_keeps_ten(env):
    """"Show boxes" is outside the form: it redraws the images shown without drawing new ones. The
    history keeps the ten generations it shows and drops the images of older ones."""
    from types import SimpleNamespace

    box = SimpleNamespace(label="cat", confidence=0.9, box=(2.0, 2.0, 12.0, 12.0))
    old = [{"prompt": f"old {k}", "settings": {"steps": 2}, "unchecked": [], "judged": False, "notes": [],
            "tally": None, "rows": [{"image": Image.new("RGB", (16, 16)), "seed": k, "detections": [box],
                                     "verdict": None}]} for k in range(10)]
    at = page("generate.py")
    at.session_state["history"] = old
    at.run()
    urls = lambda: [i.proto.imgs[0].url for i in at.get("image")]  # noqa: E731 - a media URL per image shown
    with_boxes = urls()
    at.checkbox(key="boxes").uncheck().run()
    assert not at.exception and len(at.session_state["history"]) == 10  # nothing drawn
    plain = urls()
    assert len(plain) == len(with_boxes) == 10 and not set(plain) & set(with_boxes)
    at.checkbox(key="boxes").check().run()
    assert urls() == with_boxes
    at.text_input(key="prompt").set_value("a cat")
    at.slider(key="steps").set_value(1)
    at.number_input(key="n").set_value(1)
    at.button(key="FormSubmitter:generate-Generate").click().run()
    history = at.session_state["history"]
    assert not at.exception and [e["prompt"] for e in history] == ["a cat"] + [f"old {k}" for k in range(9)]


def test_generate_judges_negative_expectations_even_for_unreadable_prompts(env):
    at = page("generate.py").run()
    at.text_input(key="prompt").set_value("a purple giraffe")
    at.multiselect(key="avoid").set_value(["cat"])
    at.slider(key="steps").set_value(2)
    at.number_input(key="n").set_value(1)
    at.button(key="FormSubmitter:generate-Generate").click().run()
    assert not at.exception and not at.info  # judged: no "Not judged" message
    verdicts = [e.value for e in at.success] + [e.value for e in at.error]
    assert len(verdicts) == 1 and ("expected no cat" in verdicts[0] or verdicts[0] == "✓ ok: no cat")


def _finished_run(out: Path, n: int) -> None:
    """A finished run of n judged images, written as the runner writes one (no models needed)."""
    from types import SimpleNamespace

    from evaluation.judge import DEFAULT_RULES
    from evaluation.runner import finish

    (out / "images").mkdir(parents=True)
    rows = []
    for k in range(n):
        name = f"images/{k:04d}_0.png"
        Image.fromarray(np.full((8, 8, 3), k % 256, np.uint8)).save(out / name)
        passed = k % 3 == 0
        reason = "ok: 1 cat" if passed else "expected at least 1 cat, found 0"
        rows.append({"prompt": f"cat {k}", "prompt_index": k, "category": "single_object", "expect": "at least 1 cat",
                     "image_index": 0, "seed": k, "image": name, "size": [8, 8], "detections": [],
                     "verdict": {"passed": passed, "reason": reason}, "passed": passed, "reason": reason})
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    validation = {"overall": {"accuracy": 0.98687}, "categories": {"single_object": {"accuracy": 0.99}},
                  "data": "scenes", "split": "val", "images": 20, "suite": "default"}
    finish(out, SimpleNamespace(name="many"), {"images_per_prompt": 1, "seed": 0, "settings": {},
                                                "judge": DEFAULT_RULES.to_dict(), "models": {}}, 1, validation)


def test_evaluate_pages_through_a_long_run_and_downloads_its_report(env, tmp_path):
    import zipfile

    from evaluation.report import report_archive

    _finished_run(tmp_path / "many", 130)
    at = page("evaluate.py").run()
    at.text_input(key="ev_open").set_value(str(tmp_path / "many")).run()
    assert not at.exception
    assert at.number_input(key="ev_page").value == 1 and "Images 1-120 of 130" in [c.value for c in at.caption]
    assert ("Judge agreement with ground truth: 98.7% overall (single_object 99.0%) (on 20 val images of scenes, "
            "the default suite's prompts and their own captions)") in [c.value for c in at.caption]
    at.number_input(key="ev_page").set_value(2).run()
    assert "Images 121-130 of 130" in [c.value for c in at.caption]
    shown = [c.value for c in at.caption if c.value.startswith(("✓", "✗"))]
    # images 120-129 (the tree lists the six columns one after another)
    assert sorted(shown) == sorted("✓ ok: 1 cat" if k % 3 == 0 else "✗ expected at least 1 cat, found 0"
                                   for k in range(120, 130))
    # a filter that leaves one page: the page number goes, and so does the cut
    at.radio(key="ev_only").set_value("pass").run()
    assert not at.get("number_input") or all(n.key != "ev_page" for n in at.number_input)
    assert len([c for c in at.caption if c.value.startswith("✓")]) == 44  # k % 3 == 0 for k < 130
    assert len(at.get("download_button")) == 1
    # another run opened: its own categories, all images, page 1 (the filters carried over)
    _finished_run(tmp_path / "few", 10)
    at.text_input(key="ev_open").set_value(str(tmp_path / "few")).run()
    assert at.radio(key="ev_only").value == "all"
    assert len([c for c in at.caption if c.value.startswith(("✓", "✗"))]) == 10
    # rows of six, each a row of its own (six long columns let rows drift apart when captions differ)
    grid = [[c.value for c in col.caption] for col in at.columns if any(c.value[:1] in "✓✗" for c in col.caption)]
    assert [len(col) for col in grid] == [1] * 10 and grid[6][0].startswith("✓")  # image 6 (6 % 3 == 0) starts row 2
    at.text_input(key="ev_open").set_value(str(tmp_path / "nowhere")).run()
    assert at.warning[0].value == f"`{tmp_path / 'nowhere'}` does not exist."
    # the archive holds the report and every image it refers to, under the run's name
    with zipfile.ZipFile(io.BytesIO(report_archive(tmp_path / "many"))) as z:
        names = set(z.namelist())
        html = z.read("many/report.html").decode()
    import re

    sources = set(re.findall(r'<img src="([^"]+)"', html))
    assert len(sources) == 130 and {f"many/{s}" for s in sources} <= names
    assert {"many/summary.json", "many/results.jsonl", "many/summary.md"} <= names
    assert len(names) == 130 + 5  # with report.html, results.jsonl and summary.json/.csv/.md


def test_a_mask_of_another_size_is_said_in_the_sizes_uploaded():
    """It quoted the downscaled 2048x1536 of a 4000x3000 upload."""
    from ui.uploads import mask_mismatch, open_image

    def opened(w, h):
        buf = io.BytesIO()
        Image.new("RGB", (w, h)).save(buf, format="PNG")
        return open_image(buf.getvalue(), "x.png")[0]

    big = opened(4000, 3000)
    assert mask_mismatch(big, opened(1000, 750), "photo.png", "mask.png") == (
        "mask.png: 1000x750, but the image photo.png is 4000x3000; give a mask of the image's size")
    assert mask_mismatch(big, opened(4000, 3000), "photo.png", "mask.png") is None
    assert mask_mismatch(opened(30, 20), opened(20, 30), "a.png", "m.png").startswith("m.png: 20x30, but the image a.png is 30x20")


def test_an_uploaded_phone_photo_is_turned_upright_by_its_exif_orientation(tmp_path):
    from detection.predict import open_rgb
    from ui.uploads import boxes_caption, open_image

    stored = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = 6  # the camera was turned: show the stored pixels a quarter turn clockwise
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, format="PNG", exif=exif.tobytes())  # lossless, so the pixels compare
    image, note = open_image(buf.getvalue(), "phone.png")
    upright = np.rot90(stored, k=-1)
    assert note is None and np.array_equal(np.asarray(image), upright)
    assert image.info["original_size"] == (20, 30)  # as shown: 20 wide, 30 high
    # the table's caption says the boxes are in the pixels as shown, not the file's (stored 30x20)
    assert boxes_caption(image) == ("Boxes in the pixels of the image as shown upright (20x30); the file stores "
                                    "30x20, turned by its EXIF orientation.")
    plain = io.BytesIO()
    Image.fromarray(stored).save(plain, format="PNG")
    assert boxes_caption(open_image(plain.getvalue(), "plain.png")[0]) == "Boxes in the pixels of the 30x20 file."
    # detection.predict reads files the same way
    (tmp_path / "phone.png").write_bytes(buf.getvalue())
    assert np.array_equal(np.asarray(open_rgb(tmp_path / "phone.png")), upright)


def test_a_job_waiting_for_the_device_says_so(monkeypatch):
    """Two tabs at once: the second's job waits for the first and says why on its page."""
    import threading
    import time

    from ui import resources

    said = []

    class Placeholder:
        def info(self, text):
            said.append(text)

        def empty(self):
            said.append(None)

    monkeypatch.setattr(resources.st, "empty", Placeholder)
    with resources.device_lock():  # free: no word
        pass
    assert said == []
    other = threading.Thread(target=lambda: (resources._device().acquire(), time.sleep(0.5),
                                             resources._device().release()))
    other.start()
    time.sleep(0.1)
    started = time.perf_counter()
    with resources.device_lock():
        waited = time.perf_counter() - started
    other.join()
    assert waited > 0.2 and said[0].startswith("Waiting for the device: another tab") and said[1:] == [None]
    assert resources._device().acquire(blocking=False)  # released after the job
    resources._device().release()

    # behind this session's own older run (stopped by a widget, finishing its step): said so; and
    # stopped by Streamlit (a BaseException at an st call) once it has the device, it lets go
    class Stop(BaseException):
        pass

    class Stopping(Placeholder):
        def empty(self):
            raise Stop

    said.clear()
    monkeypatch.setattr(resources.st, "empty", Stopping)
    monkeypatch.setattr(resources, "_session", lambda: "this session")

    def older_run():
        with resources.device_lock():
            time.sleep(0.5)

    other = threading.Thread(target=older_run)
    other.start()
    time.sleep(0.1)
    with pytest.raises(Stop):
        with resources.device_lock():
            pass
    other.join()
    assert said == ["Waiting for the device: this page's earlier run is finishing its step."]
    assert resources._device().acquire(blocking=False)  # it used to stay held: every tab then waited for ever
    resources._device().release()


def test_restored_settings_fit_the_form_and_say_what_moved():
    """A PNG from the CLI may hold values the form's widgets cannot show (guidance 0.5, 200 steps):
    moved into range and said; a value of the wrong type is an error, not a stopped page."""
    from ui.restore import form_values

    defaults = {"guidance_scale": 3.0, "truncation": 0.86, "purity": False}
    values, moved = form_values({"prompt": "a cat", "seed": 3, "steps": 200, "guidance_scale": 0.5,
                                 "truncation": 0.9, "init_image": "a.png", "filter_ratio": 0.004}, defaults, 25, 100)
    assert (values["steps"], values["guidance"], values["truncation"], values["strength"]) == (100, 1.0, 0.9, 0.01)
    assert values["blend"] is False and values["seed"] == 3
    assert moved == ["steps 200 is outside this form's 1-100: set to 100",
                     "guidance 0.5 is outside this form's 1-10: set to 1", "strength 0.004 is outside this form's 0.01-1: set to 0.01"]
    assert form_values({}, defaults, 25, 100) == ({"prompt": "", "seed": 0, "random_seed": False, "steps": 25,
                                                   "guidance": 3.0, "truncation": 0.86, "purity": False}, [])
    with pytest.raises(ValueError):
        form_values({"seed": "abc"}, defaults, 25, 100)
    # integers whole: seed 2**40 was "1.09951e+12 ... set to 2.14748e+09"
    assert form_values({"seed": 2**40}, defaults, 25, 100)[1] == [
        "seed 1099511627776 is outside this form's 0-2147483647: set to 2147483647"]


def test_a_job_a_rerun_stopped_runs_again_and_leaving_its_page_drops_it(env, tmp_path):
    """A widget used mid-job makes Streamlit stop the page and run it anew: the job runs again in
    that run (Generate draws again; Evaluate goes on from the prompts done) instead of being lost."""
    at = page("generate.py").run()
    at.text_input(key="prompt").set_value("a cat")
    at.slider(key="steps").set_value(2)
    at.number_input(key="n").set_value(1)
    at.button(key="FormSubmitter:generate-Generate").click().run()
    assert len(at.session_state["history"]) == 1 and at.session_state["jobs"] == {}
    at.run()  # a rerun with no job: nothing drawn
    assert len(at.session_state["history"]) == 1
    at.session_state["jobs"] = {"generate": {"params": {}, "runs": 1}}  # started, then stopped by a rerun
    at.run()
    assert not at.exception and len(at.session_state["history"]) == 2 and at.session_state["jobs"] == {}
    assert [e["prompt"] for e in at.session_state["history"]] == ["a cat", "a cat"]

    ev = page("evaluate.py").run()
    ev.number_input(key="ev_n").set_value(1)
    ev.slider(key="ev_steps").set_value(2)
    ev.text_area(key="ev_prompts").set_value("a cat\na photo of nothing")
    ev.text_input(key="ev_out").set_value(str(tmp_path / "run"))
    ev.button(key="ev_run").click().run()
    run = tmp_path / "run"
    results = (run / "results.jsonl").read_text().splitlines()
    assert len(results) == 2 and not ev.info
    # stopped after its first prompt: the second's row and the summary not yet written
    (run / "results.jsonl").write_text(results[0] + "\n")
    (run / "summary.json").unlink()
    first = run / json.loads(results[0])["image"]
    first_written = first.stat().st_mtime_ns
    settings = json.loads((run / "run.json").read_text())["settings"]
    ev = page("evaluate.py")
    ev.session_state["jobs"] = {"evaluate": {"runs": 1, "params": {
        "prompts": ["a cat", "a photo of nothing"], "suite": "smoke", "per_prompt": 1, "out_dir": run,
        "generator": str(env[0]), "settings": settings}}}
    ev.run()
    assert not ev.exception and ev.session_state["jobs"] == {}
    assert not ev.info  # "Going on with the run ..." is shown while it runs, and gone once it ends
    assert [json.loads(r)["prompt"] for r in (run / "results.jsonl").read_text().splitlines()] == \
        ["a cat", "a photo of nothing"]
    assert first.stat().st_mtime_ns == first_written and (run / "summary.json").is_file()
    assert ev.subheader[0].value.startswith("Your prompts:")  # the finished run is opened
    # the page reran after the sidebar's generator changed: not drawn on with the other model
    changed = page("evaluate.py")
    changed.session_state["jobs"] = {"evaluate": {"runs": 1, "params": {
        "prompts": ["a cat"], "suite": "smoke", "per_prompt": 1, "out_dir": tmp_path / "changed",
        "generator": str(tmp_path / "other_generator"), "settings": settings}}}
    changed.run()
    assert not changed.exception and changed.error[0].value.startswith(
        f"The sidebar's generator changed to `{env[0]}` while the run drew with `{tmp_path / 'other_generator'}`")
    assert not (tmp_path / "changed").exists()

    # a job that fails is done: it is not run, and failed, again at every rerun
    broken = page("generate.py")
    broken.session_state["jobs"] = {"generate": {"params": {}, "runs": 1}}
    broken.session_state["prompt"] = "a cat"
    import generation.pipeline

    real = generation.pipeline.TextToImage.__call__
    generation.pipeline.TextToImage.__call__ = lambda self, *a, **k: 1 / 0
    try:
        broken.run()
    finally:
        generation.pipeline.TextToImage.__call__ = real
    assert broken.exception and broken.exception[0].value == "division by zero"
    assert broken.session_state["jobs"] == {}

    # the generator gone since the click (the sidebar's path changed): no drawing, no traceback
    gone = page("generate.py")
    gone.session_state["jobs"] = {"generate": {"params": {}, "runs": 1}}
    gone.session_state["kept"] = {"path_generator": str(tmp_path / "nowhere")}
    gone.run()
    assert not gone.exception and gone.session_state["jobs"] == {}
    assert gone.warning[0].value.startswith(f"No generator at `{tmp_path / 'nowhere'}`")

    app = AppTest.from_file(str(UI / "streamlit_app.py"), default_timeout=60)
    app.session_state["jobs"] = {"generate": {"params": {}, "runs": 1}}
    app.run()  # the home page runs: Generate's unfinished drawing is not started again on coming back
    assert not app.exception and app.session_state["jobs"] == {}
