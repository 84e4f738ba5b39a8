"""python -m evaluation.run end to end with a tiny generator and a tiny detector; resumes."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluation.judge import JUDGE_1
from evaluation.run import main
from evaluation.runner import read_rows


def test_run_writes_everything_and_resumes(tiny_detector, tmp_path, capsys):
    from test_pipeline import tiny_pipeline

    _, det_run = tiny_detector
    tiny_pipeline().save_pretrained(tmp_path / "gen")
    args = ["--suite", "smoke", "--model", str(tmp_path / "gen"), "--detectors", f"catdog={det_run / 'best.pt'}",
            "--images-per-prompt", "2", "--steps", "3", "--device", "cpu", "--out", str(tmp_path / "eval"), "--quiet"]
    assert main(args) == 0
    out = tmp_path / "eval"
    rows = read_rows(out / "results.jsonl")
    assert len(rows) == 16 and {r["seed"] for r in rows} == {0, 1}
    assert all(r["settings"]["steps"] == 3 and r["settings"]["purity"] is False and "reason" in r for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["overall"]["n"] == 16 and summary["models"]["detectors"]["catdog"]["sha256"]
    assert summary["judge"]["version"] == "judge-2" and summary["judge"]["nest_cover"] == 0.7
    html = (out / "report.html").read_text()
    assert all(r["image"] in html for r in rows)
    printed = capsys.readouterr()
    assert "| **overall** |" in printed.out
    assert "warning: no detector finds face" in printed.err  # only the cat/dog detector is given
    assert main(args) == 0  # resume: nothing to redo, no duplicate rows
    assert len(read_rows(out / "results.jsonl")) == 16
    # the same folder with other settings: one line naming what differs, and the run is untouched
    assert main([*args[:-5], "--steps", "2", *args[-3:]]) == 2
    err = capsys.readouterr().err
    assert "(settings.steps: 3 there, 2 now)" in err.splitlines()[-1] and "Traceback" not in err
    assert len(read_rows(out / "results.jsonl")) == 16
    # --purity reaches the sampler: recorded, and the images differ from the random-order ones
    assert main([*args[:-3], "--out", str(tmp_path / "pure"), "--quiet", "--purity"]) == 0
    pure = read_rows(tmp_path / "pure" / "results.jsonl")
    assert all(r["settings"]["purity"] is True for r in pure)
    assert any((out / r["image"]).read_bytes() != (tmp_path / "pure" / r["image"]).read_bytes()
               for r in pure)
    bad = ["--suite", "nope", "--model", str(tmp_path / "gen"), "--out", str(tmp_path / "y"), "--quiet"]
    assert main(bad) == 2 and "no suite 'nope'" in capsys.readouterr().err
    for flags, message in ((["--images-per-prompt", "0"], "--images-per-prompt must be >= 1, got 0"),
                           (["--steps", "0"], "--steps must be >= 1, got 0"),
                           (["--truncation", "0"], "--truncation must be in (0, 1], got 0.0"),
                           (["--device", "gpu"], "argument --device: 'gpu' is not a device"),
                           (["--out", str(out / "summary.json")], "summary.json: exists and is not a folder")):
        with pytest.raises(SystemExit) as exit_:
            main([*bad[2:], *flags])
        assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_images_from_judges_a_finished_run_again_without_generating(tiny_detector, tmp_path, capsys, monkeypatch):
    """--images-from hands the judge a finished run's PNGs: with the same detectors every
    detection, verdict and image is the source's; nothing is sampled (the model is never loaded)."""
    from test_pipeline import tiny_pipeline

    from generation.pipeline import TextToImage

    _, det_run = tiny_detector
    tiny_pipeline().save_pretrained(tmp_path / "gen")
    det = f"catdog={det_run / 'best.pt'}"
    assert main(["--suite", "smoke", "--model", str(tmp_path / "gen"), "--detectors", det, "--images-per-prompt", "2",
                 "--seed", "5", "--steps", "3", "--device", "cpu", "--out", str(tmp_path / "src"), "--quiet"]) == 0

    def no_model(*args, **kwargs):
        raise AssertionError("--images-from must not load a generator")

    monkeypatch.setattr(TextToImage, "from_pretrained", no_model)
    again = ["--suite", "smoke", "--images-from", str(tmp_path / "src"), "--detectors", det, "--device", "cpu",
             "--quiet"]
    assert main([*again, "--out", str(tmp_path / "re")]) == 0
    src, re = read_rows(tmp_path / "src" / "results.jsonl"), read_rows(tmp_path / "re" / "results.jsonl")
    assert len(re) == len(src) == 16 and {r["seed"] for r in re} == {10, 11}  # block 5 of 2 per prompt
    for a, b in zip(src, re):
        assert (a["prompt"], a["seed"], a["settings"]) == (b["prompt"], b["seed"], b["settings"])
        assert a["detections"] == b["detections"] and a["verdict"] == b["verdict"]
        assert (tmp_path / "src" / a["image"]).read_bytes() == (tmp_path / "re" / b["image"]).read_bytes()
    summary = json.loads((tmp_path / "re" / "summary.json").read_text())
    assert summary["models"]["generator"]["images_from"] == str(tmp_path / "src")
    capsys.readouterr()
    for extra, message in ((["--seed", "0"], "has seed 5, not 0"), (["--steps", "4"], "generates nothing: drop steps"),
                           (["--suite", "default"], "whose prompts are not those of 'default'")):
        args = [*again, *extra, "--out", str(tmp_path / "x")]
        if extra[0] == "--suite":
            args = ["--suite", "default", *again[2:], "--out", str(tmp_path / "x")]
        assert main(args) == 2 and message in capsys.readouterr().err
    assert main(["--images-from", str(tmp_path), "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "no run.json" in capsys.readouterr().err
    # --judge judge-1: the rules of runs before judge-2, recorded as such; a run is finished by its own rules
    assert main([*again, "--judge", "judge-1", "--out", str(tmp_path / "j1")]) == 0
    assert json.loads((tmp_path / "j1" / "summary.json").read_text())["judge"] == JUDGE_1.to_dict()
    printed = capsys.readouterr().out
    assert "judge not validated for these detectors under judge-1: python -m evaluation.validate_judge " \
        "--data SCENES --detectors catdog=" in printed and "--judge judge-1 --out " in printed
    assert main([*again, "--out", str(tmp_path / "j1")]) == 2
    assert "judge.version: 'judge-1' there, 'judge-2' now" in capsys.readouterr().err
    # a run from before 2026-12-05 (no image_seeds in run.json; image k had seed `seed + k`) is
    # judged again by its own rule
    import shutil

    old = tmp_path / "old"
    shutil.copytree(tmp_path / "src", old)
    config = json.loads((old / "run.json").read_text())
    del config["image_seeds"]
    (old / "run.json").write_text(json.dumps(config))
    (old / "results.jsonl").write_text("".join(json.dumps({**r, "seed": 5 + r["image_index"]}) + "\n" for r in src))
    assert main(["--suite", "smoke", "--images-from", str(old), "--detectors", det, "--device", "cpu", "--quiet",
                 "--out", str(tmp_path / "old_re")]) == 0
    old_re = read_rows(tmp_path / "old_re" / "results.jsonl")
    assert [(r["prompt"], r["seed"], r["verdict"]) for r in old_re] == \
        [(r["prompt"], 5 + r["image_index"], r["verdict"]) for r in src]
    assert json.loads((tmp_path / "old_re" / "run.json").read_text())["image_seeds"] == "seed + k"


def test_the_bundles_judge_validation_is_used_only_for_its_own_detectors_and_rules(tmp_path):
    """A validation measured under judge-1 says nothing of judge-2's verdicts: summaries quote it
    only for the rules (and detector files) it was measured with."""
    from evaluation.detectors import JudgeDetectors
    from evaluation.judge import JudgeRules
    from evaluation.run import find_judge_validation

    weights = tmp_path / "catdog.pt"
    weights.write_bytes(b"weights")
    eyes = JudgeDetectors({}, {"catdog": weights})
    report = {"judge": JudgeRules().to_dict(), "detectors": eyes.info(), "overall": {"accuracy": 0.99}}
    (tmp_path / "judge_validation.json").write_text(json.dumps(report))
    assert find_judge_validation(eyes) == report
    assert find_judge_validation(JudgeDetectors({}, {"catdog": weights}, JUDGE_1)) is None
    old = {**report, "judge": {k: v for k, v in JUDGE_1.to_dict().items() if k != "nest_cover"}}
    (tmp_path / "judge_validation.json").write_text(json.dumps(old))  # as judge-1 wrote it
    assert find_judge_validation(JudgeDetectors({}, {"catdog": weights}, JUDGE_1)) == old
    assert find_judge_validation(eyes) is None
    weights.write_bytes(b"other weights")
    assert find_judge_validation(JudgeDetectors({}, {"catdog": weights}, JUDGE_1)) is None


def test_torchrun_two_processes_give_the_single_process_result(tmp_path):
    """A real `torchrun --nproc_per_node 2` run on CPU (gloo) over the bundled models: the
    prompts are sharded over ranks and merged; rows and summary equal a one-process run."""
    import os
    import shutil
    import socket
    import subprocess
    import sys
    from pathlib import Path

    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        torchrun = shutil.which("torchrun")
    # 10 steps, not the bundle's 50: the same code path at a fifth of the time
    args = ["-m", "evaluation.run", "--suite", "smoke", "--images-per-prompt", "1", "--seed", "3", "--steps", "10",
            "--device", "cpu", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    root = Path(__file__).resolve().parents[1]
    with socket.socket() as sock:  # a free loopback port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    launch = [str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(port)]
    subprocess.run([*launch, *args, "--out", str(tmp_path / "two")], check=True, env=env, cwd=root,
                   capture_output=True, timeout=600)
    assert main([*args[2:], "--out", str(tmp_path / "one")]) == 0

    def key(rows):
        return {(r["prompt"], r["seed"]): (r["passed"], r["reason"], json.dumps(r["detections"], sort_keys=True))
                for r in rows}

    two, one = read_rows(tmp_path / "two" / "results.jsonl"), read_rows(tmp_path / "one" / "results.jsonl")
    assert len(two) == len(one) == 8 and key(two) == key(one)
    assert (tmp_path / "two" / "results.rank1.jsonl").is_file()  # rank 1 really ran
    s2, s1 = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("two", "one"))
    assert s2["overall"] == s1["overall"] and s2["categories"] == s1["categories"]


def test_checked_cli_writes_the_passing_candidates_best_first(tiny_detector, tmp_path, capsys):
    """python -m evaluation.checked: the verdicts are generate_checked's on the same draws, the PNGs
    the passing ones (best first, at most --keep) with their verdict; exit 1 when none passes."""
    from evaluation.checked import generate_checked
    from evaluation.checked import main as checked
    from evaluation.detectors import JudgeDetectors
    from evaluation.prompts import parse_prompt
    from generation.pipeline import TextToImage
    from generation.png_info import read_settings
    from test_pipeline import tiny_pipeline

    _, det_run = tiny_detector
    tiny_pipeline().save_pretrained(tmp_path / "gen")
    eyes_spec = f"catdog={det_run / 'best.pt'}"
    common = ["--model", str(tmp_path / "gen"), "--detectors", eyes_spec, "--steps", "3", "--device", "cpu", "--quiet"]
    pipe, eyes = TextToImage.from_pretrained(tmp_path / "gen"), JudgeDetectors.load(eyes_spec)
    for prompt, flags in (("a photo of nothing", ["--keep", "2"]), ("a cat", []), ("a cat", ["--avoid", "dog"])):
        out = tmp_path / f"out_{len(list(tmp_path.glob('out_*')))}"
        code = checked([prompt, "--candidates", "5", "--seed", "7", "--batch", "2", *flags, *common, "--out", str(out)])
        want = generate_checked(pipe, eyes, parse_prompt(prompt).excluding(["dog"] if flags[-1:] == ["dog"] else []),
                                5, 7, keep_failed=True, steps=3)
        rows = [json.loads(line) for line in (out / "checked.jsonl").read_text().splitlines()]
        assert [(r["seed"], r["passed"], r["reason"]) for r in rows] == \
               [(c.seed, c.verdict.passed, c.verdict.reason) for c in want]
        passing = [c for c in want if c.verdict.passed][:2 if "--keep" in flags else None]
        assert sorted(p.name for p in out.glob("*.png")) == sorted(r["image"] for r in rows if r["image"])
        assert [r["image"] for r in rows if r["image"]] == [f"{prompt.replace(' ', '_')}_{c.seed}.png" for c in passing]
        for c in passing:
            png = out / f"{prompt.replace(' ', '_')}_{c.seed}.png"
            s = read_settings(png)
            assert s["passed"] is True and s["verdict"] == c.verdict.reason and s["seed"] == c.seed
            assert np.array_equal(np.asarray(Image.open(png)), c.image)
        assert code == (0 if passing else 1)
        assert f"{sum(r['passed'] for r in rows)} of 5 candidates pass" in capsys.readouterr().out
    # the empty prompts pass on an untrained detector that sees nothing: the keep limit was exercised
    assert len(list((tmp_path / "out_0").glob("*.png"))) == 2
    for argv, message in ((["a purple giraffe"], "'giraffe' is not one of cat, dog, face"),
                          (["a cat", "--candidates", "0"], "--candidates must be >= 1, got 0"),
                          (["a cat", "--avoid", "horse"], "--avoid: horse is not one of cat, dog, face"),
                          (["two cats and a dog", "--avoid", "dog,face"],
                           "--avoid dog contradicts the prompt 'two cats and a dog', which asks for dog"),
                          (["a cat on the left of a dog"], "the relations the judge reads are"),
                          (["a cat", "--device", "cuda:x"], "argument --device: 'cuda:x' is not a device")):
        with pytest.raises(SystemExit) as exit_:
            checked([*argv, *common, "--out", str(tmp_path / "bad")])
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert checked(["a purple giraffe", "--avoid", "cat", "--candidates", "2", *common,
                    "--out", str(tmp_path / "giraffe")]) in (0, 1)  # unreadable, but its exclusion is judged
    assert len((tmp_path / "giraffe" / "checked.jsonl").read_text().splitlines()) == 2
    # Ctrl-C while drawing: the batches drawn by then are ranked and written (exit 130); in the first, nothing
    import evaluation.checked as checked_module

    def interrupted_at_batch(n):
        def draw(pipe, *args, **kwargs):
            calls, generate = [], pipe.generate_for_judge

            def counted(*a, **k):
                calls.append(1)
                if len(calls) == n:
                    raise KeyboardInterrupt
                return generate(*a, **k)
            pipe.generate_for_judge = counted
            return real(pipe, *args, **kwargs)
        return draw

    real = checked_module.draw_candidates
    argv = ["a photo of nothing", "--candidates", "5", "--seed", "7", "--batch", "2", *common]
    try:
        checked_module.draw_candidates = interrupted_at_batch(2)
        assert checked([*argv, "--out", str(tmp_path / "half")]) == 130
        assert "interrupted: ranking the 2 of 5 candidates drawn (seeds 7-8)" in capsys.readouterr().err
        checked_module.draw_candidates = interrupted_at_batch(1)
        assert checked([*argv, "--out", str(tmp_path / "stopped")]) == 130
    finally:
        checked_module.draw_candidates = real
    want = generate_checked(pipe, eyes, "a photo of nothing", 2, 7, keep_failed=True, steps=3)
    rows = [json.loads(line) for line in (tmp_path / "half" / "checked.jsonl").read_text().splitlines()]
    assert [(r["seed"], r["passed"], r["reason"]) for r in rows] == [(c.seed, c.verdict.passed, c.verdict.reason)
                                                                     for c in want]
    assert sorted(p.name for p in (tmp_path / "half").glob("*.png")) == sorted(r["image"] for r in rows if r["image"])
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"interrupted before the first batch of 2 was drawn: nothing written to {tmp_path / 'stopped'}")
    assert not (tmp_path / "stopped").exists()


def test_run_evaluates_prompts_given_on_the_command_line(tiny_detector, tmp_path, capsys):
    """--prompt (repeated) makes the suite from parse_prompt: its categories, its expectations; the
    suite is written beside the results and a run from that file gives the same rows."""
    from evaluation.suite import load_suite
    from test_pipeline import tiny_pipeline

    _, det_run = tiny_detector
    tiny_pipeline().save_pretrained(tmp_path / "gen")
    common = ["--model", str(tmp_path / "gen"), "--detectors", f"catdog={det_run / 'best.pt'}", "--steps", "2",
              "--images-per-prompt", "2", "--device", "cpu", "--quiet"]
    prompts = ["two black cats", "a photo of nothing"]
    assert main([*[a for p in prompts for a in ("--prompt", p)], *common, "--out", str(tmp_path / "mine")]) == 0
    rows = read_rows(tmp_path / "mine" / "results.jsonl")
    assert [(r["prompt"], r["category"]) for r in rows] == [("two black cats", "colors")] * 2 + \
           [("a photo of nothing", "negatives")] * 2
    assert rows[0]["expect"] and "cat" in rows[0]["expect"]
    suite = load_suite(tmp_path / "mine" / "suite.yaml")
    assert [p.prompt for p in suite.prompts] == prompts
    assert main(["--suite", str(tmp_path / "mine" / "suite.yaml"), *common, "--out", str(tmp_path / "again")]) == 0
    again = read_rows(tmp_path / "again" / "results.jsonl")
    assert [(r["seed"], r["passed"], r["reason"]) for r in again] == [(r["seed"], r["passed"], r["reason"]) for r in rows]
    # --images-from such a run judges its own prompts (it asked for --suite RUN/suite.yaml, then refused)
    assert main(["--images-from", str(tmp_path / "mine"), *common[2:4], "--device", "cpu", "--quiet",
                 "--out", str(tmp_path / "rejudged")]) == 0
    rejudged = read_rows(tmp_path / "rejudged" / "results.jsonl")
    assert [(r["prompt"], r["seed"], r["reason"]) for r in rejudged] == [(r["prompt"], r["seed"], r["reason"]) for r in rows]
    assert load_suite(tmp_path / "rejudged" / "suite.yaml").prompts == suite.prompts
    capsys.readouterr()
    assert main(["--prompt", "a purple giraffe", *common, "--out", str(tmp_path / "bad")]) == 2
    assert "prompt 1: cannot judge 'a purple giraffe'" in capsys.readouterr().err
    assert main(["--prompt", "a cat", "--prompt", "a cat", *common, "--out", str(tmp_path / "bad")]) == 2
    assert "prompt 2: 'a cat' is given twice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--prompt", "a cat", "--suite", "smoke", *common, "--out", str(tmp_path / "bad")])
    assert "give --suite or --prompt, not both" in capsys.readouterr().err


def test_the_unvalidated_hint_is_a_command_whose_report_later_runs_quote(tiny_detector, tmp_path, capsys,
                                                                          monkeypatch):
    """evaluation.run finds judge_validation.json beside the detectors: the hint it prints for
    detectors without one is a command that writes it there, and the next run quotes it."""
    import shlex
    import shutil

    import gendet_env
    from test_pipeline import tiny_pipeline

    from datasets.scenes import generate
    from evaluation.validate_judge import main as validate_main

    (tmp_path / "det").mkdir()
    shutil.copy(tiny_detector[1] / "best.pt", tmp_path / "det" / "best.pt")
    tiny_pipeline().save_pretrained(tmp_path / "gen")
    run = ["--suite", "smoke", "--model", str(tmp_path / "gen"), "--detectors", f"catdog={tmp_path / 'det' / 'best.pt'}",
           "--images-per-prompt", "1", "--steps", "2", "--device", "cpu", "--quiet"]
    assert main([*run, "--out", str(tmp_path / "a")]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("judge not validated"))
    command = shlex.split(line.split(": ", 1)[1].split(" measures it")[0])
    assert command[:3] == ["python", "-m", "evaluation.validate_judge"]
    scenes = generate(tmp_path / "scenes", n=8, size=32, seed=2, val_fraction=0.5, progress=False)
    args = [str(scenes) if a == "SCENES" else a for a in command[3:]]
    assert validate_main([*args, "--suite", "smoke", "--device", "cpu"]) == 0
    report = json.loads((tmp_path / "det" / "judge_validation.json").read_text())
    assert main([*run, "--out", str(tmp_path / "b")]) == 0
    printed = capsys.readouterr().out
    assert (f"judge agreement with ground truth (validate_judge on 4 val images of {scenes}, the smoke suite's "
            "prompts and their own captions): ") in printed
    quoted = json.loads((tmp_path / "b" / "summary.json").read_text())["judge_validation"]
    assert quoted["overall"] == round(report["overall"]["accuracy"], 4)
    # for the bundle's detectors (here under judge-1, which its report is not for), the hint does not
    # point into models/demo: that would replace the bundle's own report
    from evaluation.run import DEMO

    assert main(["--images-from", str(tmp_path / "a"), "--detectors", f"catdog={DEMO / 'catdog.pt'}", "--judge",
                 "judge-1", "--device", "cpu", "--quiet", "--out", str(tmp_path / "c")]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("judge not validated"))
    assert line.endswith("--judge judge-1 --out runs/judge_val measures it on a scenes dataset")
    # without --out the report goes to runs/judge_val/, named after the data folder, not into the data
    monkeypatch.setattr(gendet_env, "ROOT", tmp_path / "repo")
    assert validate_main(["--data", str(scenes), "--detectors", f"catdog={tmp_path / 'det' / 'best.pt'}",
                          "--suite", "smoke", "--device", "cpu"]) == 0
    assert (tmp_path / "repo" / "runs" / "judge_val" / "scenes" / "judge_validation.json").is_file()
    assert not (scenes / "judge_validation.json").exists()


def test_images_from_judges_a_run_of_a_suite_file_or_of_spaced_prompts_again(tiny_detector, tmp_path, capsys):
    """Every run keeps its suite as suite.yaml: a run of a suite file anywhere is judged again
    without naming it (it was looked up as a built-in by name), and prompts typed with spaces
    around them read back as the run recorded them."""
    import shutil

    from test_pipeline import tiny_pipeline

    tiny_pipeline().save_pretrained(tmp_path / "gen")
    det = f"catdog={tiny_detector[1] / 'best.pt'}"
    mine = tmp_path / "mine.yaml"
    mine.write_text((Path(__file__).parents[1] / "evaluation" / "suites" / "smoke.yaml").read_text()
                    .replace("name: smoke", "name: mine"))
    common = ["--model", str(tmp_path / "gen"), "--detectors", det, "--images-per-prompt", "1", "--steps", "2",
              "--device", "cpu", "--quiet"]
    assert main(["--suite", str(mine), *common, "--out", str(tmp_path / "a")]) == 0
    assert main(["--prompt", " two black cats ", "--prompt", "a dog", *common, "--out", str(tmp_path / "b")]) == 0
    for run in ("a", "b"):
        assert main(["--images-from", str(tmp_path / run), "--detectors", det, "--device", "cpu", "--quiet",
                     "--out", str(tmp_path / f"{run}_again")]) == 0
        before, again = (read_rows(tmp_path / f / "results.jsonl") for f in (run, f"{run}_again"))
        assert [r["verdict"] for r in again] == [r["verdict"] for r in before] and len(before) >= 2
    assert read_rows(tmp_path / "b" / "results.jsonl")[0]["prompt"] == "two black cats"
    # a run from before every run kept its suite: a suite that is not built in is asked for
    shutil.copytree(tmp_path / "a", tmp_path / "old")
    (tmp_path / "old" / "suite.yaml").unlink()
    assert main(["--images-from", str(tmp_path / "old"), "--detectors", det, "--device", "cpu", "--quiet",
                 "--out", str(tmp_path / "old_again")]) == 2
    assert "a run of suite 'mine', which is not built in, and the run holds no suite.yaml: give its suite file " \
        "with --suite" in capsys.readouterr().err


def test_an_interrupted_run_says_how_to_go_on_instead_of_a_traceback(tiny_detector, tmp_path, capsys, monkeypatch):
    import evaluation.run as run_module
    from test_pipeline import tiny_pipeline

    tiny_pipeline().save_pretrained(tmp_path / "gen")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "run_suite", interrupted)
    assert main(["--suite", "smoke", "--model", str(tmp_path / "gen"), "--detectors",
                 f"catdog={tiny_detector[1] / 'best.pt'}", "--device", "cpu", "--quiet", "--out", str(tmp_path / "r")]) == 130
    assert capsys.readouterr().err.endswith(f"interrupted: {tmp_path / 'r'} keeps every image judged so far; the same "
                                            "command resumes the run\n")
