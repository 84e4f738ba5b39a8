"""The generate-then-detect runner with a known world: the "generator" returns
procedural scenes and the "detectors" report their ground truth, so every
verdict is known in advance."""

import csv
import json

import numpy as np
import pytest

import gendet_env

from datasets.scenes import render_scene
from evaluation.detectors import JudgeDetectors, parse_detector_spec
from evaluation.judge import judge
from evaluation.runner import OLD_IMAGE_SEEDS, Shard, image_seeds, read_rows, run_suite
from evaluation.spec import PromptSpec
from evaluation.suite import Suite, load_suite
from evaluation.summary import accuracy_by_block, bootstrap_ci, summarize

SIZE = 64


class SceneWorld:
    """generate(prompt, seeds) -> scenes `seed`; detectors look the scene up by its pixels."""

    def __init__(self):
        self.truth = {}
        self.calls = []

    def generate(self, prompt, seeds):
        self.calls.append(prompt)
        images = []
        for s in seeds:
            image, objects, _ = render_scene(s, SIZE, 11)
            array = np.asarray(image)
            self.truth[array.tobytes()] = objects
            images.append(array)
        return images


class GroundTruthDetector:
    def __init__(self, world, names):
        self.world, self.names = world, names

    def detect(self, images, conf=None):
        class D:
            def __init__(self, o):
                self.label, self.confidence, self.box = o["label"], 0.9, o["box"]
        return [[D(o) for o in self.world.truth[np.asarray(im).tobytes()] if o["label"] in self.names]
                for im in images]


def make_eyes(world):
    return JudgeDetectors({"catdog": GroundTruthDetector(world, ["cat", "dog"]),
                           "face": GroundTruthDetector(world, ["face"])})


def expected_pass(spec, seed):
    image, objects, _ = render_scene(seed, SIZE, 11)
    dets = [{"label": o["label"], "confidence": 0.9, "box": o["box"]} for o in objects]
    return judge(spec, dets, (SIZE, SIZE), image=np.asarray(image)).passed  # colours measured, as the runner does


def test_runner_writes_every_output_with_known_verdicts(tmp_path):
    suite = load_suite("smoke")
    world = SceneWorld()
    summary = run_suite(suite, world.generate, make_eyes(world), tmp_path, images_per_prompt=3, seed=5,
                        settings={"steps": 0}, progress=False)
    rows = read_rows(tmp_path / "results.jsonl")
    assert len(rows) == 3 * len(suite.prompts)
    for row in rows:
        spec = suite.prompts[row["prompt_index"]]
        assert row["prompt"] == spec.prompt and row["seed"] == 5 * 3 + row["image_index"]  # block 5 of 3
        assert row["passed"] == expected_pass(spec, row["seed"])
        assert row["verdict"]["rules"]["version"] == "judge-2"
        assert (tmp_path / row["image"]).is_file()
    # summary numbers equal a recount
    passed = [r["passed"] for r in rows]
    assert summary["overall"]["accuracy"] == pytest.approx(np.mean(passed))
    assert summary["overall"]["n"] == len(rows)
    for cat, block in summary["categories"].items():
        mine = [r["passed"] for r in rows if r["category"] == cat]
        assert block["accuracy"] == pytest.approx(np.mean(mine)) and block["n"] == len(mine)
        assert block["ci95"][0] <= block["accuracy"] <= block["ci95"][1]
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["overall"] == summary["overall"] and on_disk["judge"]["count_conf"] == 0.45
    with open(tmp_path / "summary.csv") as fh:
        table = list(csv.DictReader(fh))
    assert table[0]["category"] == "overall" and int(table[0]["n"]) == len(rows)
    for line in table:  # columns in their header's order: a swapped interval reads high-low
        assert float(line["ci95_low"]) <= float(line["accuracy"]) <= float(line["ci95_high"]), line
    assert float(table[0]["ci95_low"]) < float(table[0]["ci95_high"])
    report = (tmp_path / "report.html").read_text()
    assert all(f'src="{r["image"]}"' in report for r in rows)
    assert report.count('class="card pass"') == sum(passed)
    assert 0 < sum(passed) < len(rows)  # both branches are exercised
    assert "Judge rules: judge-2: presence at confidence &gt;= 0.3; exact counts at &gt;= 0.45" in report
    agreement = {"overall": 0.9869, "counting": 0.9891, "faces": 0.9794}
    validation = {"overall": {"accuracy": 0.98687},  # a validate_judge report, as the bundle ships one
                  "categories": {"counting": {"accuracy": 0.98912}, "faces": {"accuracy": 0.97941}},
                  "data": "runs/demo_cpu/scenes", "split": "val", "images": 2000, "suite": "default"}
    run_suite(suite, world.generate, make_eyes(world), tmp_path, images_per_prompt=3, seed=5,  # resumes: no work
              settings={"steps": 0}, progress=False, judge_validation=validation)
    assert json.loads((tmp_path / "summary.json").read_text())["judge_validation"] == agreement
    # quoted with what it was measured on: the suite here is smoke, the agreement the default suite's
    assert ("Judge agreement with ground truth: 98.7% overall (counting 98.9%, faces 97.9%) (on 2000 val images "
            "of runs/demo_cpu/scenes, the default suite&#x27;s prompts and their own captions)"
            in (tmp_path / "report.html").read_text())


def test_runs_at_different_seeds_share_no_image():
    """Image k of a run at seed S has seed S * n + k: replicates are independent (the old rule,
    seed + k, which runs before 2026-12-05 used and keep when judged again, shared n - 1 of n)."""
    blocks = [set(image_seeds(s, 4)) for s in range(6)]
    assert all(not (a & b) for i, a in enumerate(blocks) for b in blocks[i + 1:])
    assert set().union(*blocks) == set(range(24))
    assert image_seeds(1, 4, OLD_IMAGE_SEEDS) == [1, 2, 3, 4] and image_seeds(0, 4) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="seed must be >= 0"):
        image_seeds(-1, 4)
    with pytest.raises(ValueError, match="unknown image seed rule"):
        image_seeds(0, 4, "seed - k")


def test_blocks_of_a_larger_run_are_the_runs_at_those_seeds(tmp_path):
    """A seed-0 run with 4 images a prompt, in blocks of 2, is the seed-0 and seed-1 runs with 2:
    the same images, the same verdicts (the model card reports its evaluation so)."""
    suite, world = load_suite("smoke"), SceneWorld()
    run_suite(suite, world.generate, make_eyes(world), tmp_path / "four", images_per_prompt=4, seed=0,
              settings={}, progress=False)
    four = read_rows(tmp_path / "four" / "results.jsonl")
    blocks = []
    for seed in (0, 1):
        run_suite(suite, world.generate, make_eyes(world), tmp_path / f"s{seed}", images_per_prompt=2, seed=seed,
                  settings={}, progress=False)
        rows = read_rows(tmp_path / f"s{seed}" / "results.jsonl")
        assert {(r["prompt"], r["seed"], r["passed"]) for r in rows} == {
            (r["prompt"], r["seed"], r["passed"]) for r in four if r["image_index"] // 2 == seed}
        blocks.append(summarize(rows)["overall"]["accuracy"])
    assert accuracy_by_block(four, 2) == pytest.approx(blocks)
    # known answer: rows without a verdict are left out; blocks in order of their index
    rows = [{"image_index": i, "verdict": v} for i, v in [(0, {"passed": True}), (1, {"passed": False}),
                                                          (5, {"passed": True}), (4, None), (2, {"passed": True})]]
    assert accuracy_by_block(rows, 2) == [0.5, 1.0, 1.0]
    with pytest.raises(ValueError, match="per_block"):
        accuracy_by_block(rows, 0)


def test_runner_resumes_without_repeating_work(tmp_path):
    suite = load_suite("smoke")
    world = SceneWorld()
    calls = {"n": 0}

    def flaky(prompt, seeds):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # interrupted after 3 prompts
        return world.generate(prompt, seeds)

    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, flaky, make_eyes(world), tmp_path, images_per_prompt=2, progress=False)
    assert len(read_rows(tmp_path / "results.jsonl")) == 6
    world.calls.clear()
    told = []  # the app's progress bar: a resumed run starts at the prompts already done
    run_suite(suite, world.generate, make_eyes(world), tmp_path, images_per_prompt=2, progress=False,
              on_prompt=lambda done, total: told.append((done, total)))
    n = len(suite.prompts)
    assert told == [(d, n) for d in range(3, n + 1)]
    rows = read_rows(tmp_path / "results.jsonl")
    assert len(rows) == 2 * len(suite.prompts)
    assert len({(r["prompt_index"], r["image_index"]) for r in rows}) == len(rows)
    assert world.calls == [p.prompt for p in suite.prompts[3:]]
    # a torn last line (killed mid-write) is dropped, not fatal
    with open(tmp_path / "results.jsonl", "a") as fh:
        fh.write('{"prompt": "a ca')
    assert len(read_rows(tmp_path / "results.jsonl")) == len(rows)
    # and resuming over it redraws the torn row on a line of its own (it used to be appended to the
    # torn line, lost again, and the next resume stopped at 'not a JSON row')
    text = (tmp_path / "results.jsonl").read_text()
    last = text.splitlines()[-2]  # the last whole row, torn in the middle
    (tmp_path / "results.jsonl").write_text(text[:text.rindex(last)] + last[:40])
    for _ in range(2):
        world.calls.clear()
        run_suite(suite, world.generate, make_eyes(world), tmp_path, images_per_prompt=2, progress=False)
        assert read_rows(tmp_path / "results.jsonl") == rows
    assert (tmp_path / "results.jsonl").read_text() == "".join(json.dumps(r) + "\n" for r in rows)
    # a suite file edited between the start and the resume: its expectations must be the run's
    first = suite.prompts[0]
    edited = Suite(suite.name, (PromptSpec(first.prompt, first.category, {**first.expect, "dog": {"min": 1}}),
                                *suite.prompts[1:]), suite.path)
    with pytest.raises(ValueError, match=r"other settings \(specs: 'a cat' has expect.dog.count: 0 there, unset now\)"
                                         r".*--suite .*suite.yaml resumes it as it began"):
        run_suite(edited, world.generate, make_eyes(world), tmp_path, images_per_prompt=2, progress=False)
    assert (tmp_path / "suite.yaml").is_file() and load_suite(tmp_path / "suite.yaml").prompts == suite.prompts
    # other settings in the same folder are refused
    with pytest.raises(ValueError, match=r"other settings \(images_per_prompt: 2 there, 3 now\): rerun with its "
                                         "settings to resume it, or start a new run in another folder"):
        run_suite(suite, world.generate, make_eyes(world), tmp_path, images_per_prompt=3, progress=False)
    with pytest.raises(ValueError, match=r"settings.steps: unset there, 3 now; settings.truncation: unset there, 0.9 now\)"):
        run_suite(suite, world.generate, make_eyes(world), tmp_path, images_per_prompt=2, progress=False,
                  settings={"steps": 3, "truncation": 0.9})


def test_a_second_run_into_a_folder_in_use_is_refused(tmp_path):
    """Two runs started on one --out (two terminals, a job submitted twice) wrote side by side:
    every image counted twice in the summary. The second is refused; the first ends whole."""
    import threading

    import gendet_env

    suite = load_suite("smoke")
    world = SceneWorld()
    started, go_on = threading.Event(), threading.Event()

    def slow(prompt, seeds):
        started.set()
        go_on.wait(60)
        return world.generate(prompt, seeds)

    first = threading.Thread(target=run_suite, args=(suite, slow, make_eyes(world), tmp_path),
                             kwargs={"images_per_prompt": 2, "progress": False})
    first.start()
    try:
        assert started.wait(60)
        with pytest.raises(gendet_env.FolderBusy,
                           match=f"{tmp_path}: another run is writing there now \\(this evaluation run"):
            run_suite(suite, world.generate, make_eyes(world), tmp_path, images_per_prompt=2, progress=False)
        # the probe the app asks before its wait for the device: the same reason, and the holder keeps its lock
        assert gendet_env.busy_reason(tmp_path, "evaluation").startswith("another run is writing there now (this "
                                                                         "evaluation run would mix")
        assert gendet_env.busy_reason(tmp_path, "evaluation") is not None
        assert gendet_env.busy_reason(tmp_path / "missing", "evaluation") is None
    finally:
        go_on.set()
        first.join(120)
    assert gendet_env.busy_reason(tmp_path, "evaluation") is None  # free again
    rows = read_rows(tmp_path / "results.jsonl")
    assert sorted((r["prompt_index"], r["image_index"]) for r in rows) == \
        [(i, k) for i in range(len(suite.prompts)) for k in range(2)]
    summary = run_suite(suite, world.generate, make_eyes(world), tmp_path, images_per_prompt=2, progress=False)
    assert summary["overall"]["n"] == 2 * len(suite.prompts)  # the folder is free again once the run ends


def test_a_folder_that_cannot_be_locked_is_run_in_with_a_warning_and_cleared_after_a_failure(tmp_path, monkeypatch):
    """On NFS or a Lustre mount without flock, locking a folder fails (EBADF, ENOLCK): every run
    into it ended in a traceback. It runs, unguarded, and says so. A run that fails takes away the
    folders it made, also when it removed its own out folder first."""
    import errno
    import fcntl

    import gendet_env

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    with pytest.warns(gendet_env.GendetWarning, match=f"{tmp_path / 'nfs'}: cannot lock it \\(No locks available\\)"):
        with gendet_env.held(tmp_path / "nfs", "test"):
            (tmp_path / "nfs" / "x").write_text("written")
    assert (tmp_path / "nfs" / "x").read_text() == "written"
    monkeypatch.undo()
    out = tmp_path / "a" / "b" / "c"
    with pytest.raises(RuntimeError):
        with gendet_env.held(out, "test"):
            out.rmdir()  # as datasets.scenes does with an empty out folder of its own
            raise RuntimeError("failed")
    assert not (tmp_path / "a").exists()


def _ready_then_sleep(ready):
    import time

    ready.set()
    time.sleep(30)


def test_a_worker_forked_during_a_run_does_not_keep_the_folder_locked(tmp_path):
    """A forked child (a DataLoader worker, a pool process) inherits the lock's descriptor; one that
    outlived the run kept the folder locked, and the next run into it was refused."""
    import multiprocessing

    import gendet_env

    fork = multiprocessing.get_context("fork")
    ready = fork.Event()
    with gendet_env.held(tmp_path, "first"):
        worker = fork.Process(target=_ready_then_sleep, args=(ready,))
        worker.start()
        assert ready.wait(30)  # the child is running its own code: past the fork
    try:
        with gendet_env.held(tmp_path, "second"):  # the worker still lives
            pass
    finally:
        worker.kill()
        worker.join()


def test_a_corrupt_middle_row_is_an_error_only_a_torn_last_line_is_dropped(tmp_path):
    """Only the last line can be torn by a kill; a bad line in the middle means the file was
    damaged or edited, and silently dropping it would summarise fewer images than were judged."""
    path = tmp_path / "results.jsonl"
    good = json.dumps({"category": "x", "verdict": {"passed": True}})
    path.write_text(f"{good}\n{{not json\n{good}\n")
    with pytest.raises(ValueError, match=r"results.jsonl:2: not a JSON row"):
        read_rows(path)
    path.write_text(f"{good}\n{good}\n{{torn")
    assert read_rows(path) == [json.loads(good)] * 2


def test_sharded_run_merges_to_the_single_process_result(tmp_path):
    suite = load_suite("smoke")
    world = SceneWorld()
    single = run_suite(suite, world.generate, make_eyes(world), tmp_path / "one", images_per_prompt=2,
                       progress=False)
    sharded = tmp_path / "two"
    assert run_suite(suite, world.generate, make_eyes(world), sharded, images_per_prompt=2,
                     shard=Shard(1, 2), progress=False) is None
    merged = run_suite(suite, world.generate, make_eyes(world), sharded, images_per_prompt=2,
                       shard=Shard(0, 2), progress=False)
    assert read_rows(sharded / "results.jsonl") == read_rows(tmp_path / "one" / "results.jsonl")
    assert merged["overall"] == single["overall"] and merged["categories"] == single["categories"]


def test_bootstrap_interval_matches_the_normal_approximation():
    x = [1] * 700 + [0] * 300
    lo, hi = bootstrap_ci(x)
    half = 1.96 * np.sqrt(0.7 * 0.3 / 1000)  # 0.0284
    assert lo == pytest.approx(0.7 - half, abs=0.006) and hi == pytest.approx(0.7 + half, abs=0.006)
    # closer: the 2.5% and 97.5% quantiles of Binomial(1000, 0.7) / 1000 are 0.671 and 0.728
    # (scipy.stats.binom.ppf); a 90% interval (0.676, 0.724) is a reported 95% CI too narrow
    assert lo == pytest.approx(0.671, abs=0.002) and hi == pytest.approx(0.728, abs=0.002), (lo, hi)
    # all passed or none: the bootstrap has no spread; the exact interval's edge is the rate at
    # which n equal outcomes have probability 2.5%: about ln(40)/n = 3.69/n from the end
    for n in (1, 3, 100):
        lo, hi = bootstrap_ci([1] * n)
        assert hi == 1.0 and lo ** n == pytest.approx(0.025) and bootstrap_ci([0] * n) == (0.0, 1.0 - lo)
    assert bootstrap_ci([1] * 100)[0] == pytest.approx(0.9638, abs=1e-4)
    assert 1 - 3.7 / 100 < bootstrap_ci([1] * 100)[0] < 1 - 3.6 / 100
    assert bootstrap_ci(x) == bootstrap_ci(x)  # seeded
    with pytest.raises(ValueError):
        summarize([])


def test_rows_without_a_verdict_are_counted_as_not_judged():
    """A row whose verdict is null (the judge could not read its prompt) is left out of the
    accuracy and counted once under not_judged; the report must not call it a pass or a fail."""
    base = {"prompt": "a cat", "prompt_index": 0, "category": "single", "expect": "at least 1 cat",
            "image_index": 0, "seed": 0, "settings": {}, "image": "images/0000_0.png", "size": [64, 64],
            "detections": []}
    judged = {**base, "verdict": {"passed": True}, "passed": True, "reason": "ok: 1 cat"}
    unread = {**base, "category": "x", "image_index": 1, "verdict": None, "passed": None, "reason": "not judged"}
    failed = {**judged, "image_index": 2, "verdict": {"passed": False}, "passed": False, "reason": "found 0"}
    s = summarize([judged, unread, failed])
    assert s["not_judged"] == 1 and s["overall"]["n"] == 2 and s["overall"]["accuracy"] == 0.5
    assert list(s["categories"]) == ["single"]
    assert "not_judged" not in summarize([judged, judged])


def test_detector_spec_parsing():
    assert parse_detector_spec("catdog=a.pt,face=b.pt") == {"catdog": __import__("pathlib").Path("a.pt"),
                                                            "face": __import__("pathlib").Path("b.pt")}
    # a comma inside a path stays in it: only a comma before the next catdog= or face= separates
    Path = __import__("pathlib").Path
    assert parse_detector_spec("catdog=runs/a,b/best.pt, face=c,d.pt") == {"catdog": Path("runs/a,b/best.pt"),
                                                                          "face": Path("c,d.pt")}
    assert parse_detector_spec("catdog=runs/lr=0.1,bs=16/best.pt") == {"catdog": Path("runs/lr=0.1,bs=16/best.pt")}
    for stray in ("catdog=a.pt,", "catdog=a.pt,,face=b.pt", ",catdog=a.pt , face=b.pt,", "catdog=a.pt,\tface=b.pt"):
        assert parse_detector_spec(stray)["catdog"] == Path("a.pt")
    with pytest.raises(FileNotFoundError, match="a.pt,face does not exist \\(the comma is read as part of the path"):
        JudgeDetectors.load("catdog=a.pt,face")  # a forgotten "=": one path, said so
    with pytest.raises(FileNotFoundError, match="\\('cat' is not a detector task: give catdog=PATH and/or face=PATH"):
        JudgeDetectors.load("catdog=a.pt,cat=b.pt")  # a misspelt task: named
    assert parse_detector_spec("catdog =a.pt, face = b.pt") == {"catdog": Path("a.pt"), "face": Path("b.pt")}
    assert parse_detector_spec("catdog=~nosuchuser/a.pt")["catdog"] == Path("~nosuchuser/a.pt")  # as given
    assert parse_detector_spec("catdog=~/a.pt")["catdog"] == Path.home() / "a.pt"  # as the mapping form
    for bad in ("cat=a.pt", "catdog", "catdog=a.pt,catdog=b.pt", ""):
        with pytest.raises(ValueError):
            parse_detector_spec(bad)


def test_generate_checked_keeps_passing_candidates_best_first():
    from evaluation.checked import generate_checked

    world = SceneWorld()
    eyes = make_eyes(world)
    spec = load_suite("default").prompts[0]  # "a cat"
    everything = generate_checked(world.generate, eyes, spec, n_candidates=40, seed=0, keep_failed=True)
    assert [c.seed for c in everything if c.verdict.passed] == \
        sorted((s for s in range(40) if expected_pass(spec, s)), key=lambda s: s)  # equal scores: by seed
    passing = generate_checked(world.generate, eyes, "a cat", n_candidates=40, seed=0)
    assert passing and all(c.verdict.passed for c in passing)
    assert [c.seed for c in passing] == [c.seed for c in everything if c.verdict.passed]
    assert all(not c.verdict.passed for c in everything[len(passing):])


def test_validate_judge_agrees_fully_with_ground_truth_eyes(tmp_path):
    from datasets.scenes import generate
    from evaluation.validate_judge import format_table, validate

    root = generate(tmp_path / "scenes", n=30, size=64, seed=11, val_fraction=0.5, progress=False)

    world = SceneWorld()
    for row in map(json.loads, (root / "objects.jsonl").read_text().splitlines()):
        from PIL import Image
        world.truth[np.asarray(Image.open(root / row["image"]).convert("RGB")).tobytes()] = row["objects"]
    report = validate(root, make_eyes(world), "smoke", progress=False)
    assert report["images"] == 15
    for cat, block in report["categories"].items():
        # only colours are measured from pixels (95% right on scenes); everything else is exact
        assert block["accuracy"] == 1.0 or cat == "colors", (cat, block)
    assert report["true_captions_failed"]["single_object"] == 0.0
    assert "overall" in format_table(report)
    # eyes that see the truth find every object, whatever its size
    assert report["recall_by_size"] and all(v["recall"] == 1.0 for v in report["recall_by_size"].values())

    # eyes that miss every face: face prompts now disagree with the truth
    blind = make_eyes(world)
    blind.detectors["face"] = GroundTruthDetector(world, [])
    worse = validate(root, blind, "smoke", progress=False)
    assert worse["categories"]["faces"]["accuracy"] < 1.0
    assert worse["disagreements"] and worse["overall"]["accuracy"] < report["overall"]["accuracy"]


def test_validate_judge_through_an_image_map_judges_the_mapped_images(tmp_path):
    """The tokenizer-ceiling path: detectors see the mapped images, the truth stays the original's."""
    from PIL import Image

    from datasets.scenes import generate
    from evaluation.validate_judge import validate

    root = generate(tmp_path / "scenes", n=20, size=64, seed=5, val_fraction=0.5, progress=False)
    world = SceneWorld()
    for row in map(json.loads, (root / "objects.jsonl").read_text().splitlines()):
        world.truth[np.asarray(Image.open(root / row["image"]).convert("RGB")).tobytes()] = row["objects"]
    seen = []  # the map gets each image's own first caption beside it

    def copy(ims, captions):
        seen.extend(captions)
        return [i.copy() for i in ims]

    same = validate(root, make_eyes(world), "smoke", progress=False, image_map=copy)
    plain = validate(root, make_eyes(world), "smoke", progress=False)
    assert same["categories"] == plain["categories"]
    captions = {r["image"]: r["captions"] for r in map(json.loads, (root / "captions.jsonl").read_text().splitlines())}
    val = [r for r in map(json.loads, (root / "objects.jsonl").read_text().splitlines()) if r["split"] == "val"]
    assert seen == [captions[r["image"]][0] for r in val] and len(seen) == 10
    # a tokenizer that keeps nothing: every image the detectors see is blank, so every true
    # caption naming an object fails; the truth is still the original image's
    world.truth[np.zeros((64, 64, 3), np.uint8).tobytes()] = []
    blank = validate(root, make_eyes(world), "smoke", progress=False,
                     image_map=lambda ims, captions: [np.zeros_like(i) for i in ims])
    assert blank["true_captions_failed"]["single_object"] == 1.0
    assert all(v["recall"] == 0.0 for v in blank["recall_by_size"].values())
    assert {k: v["objects"] for k, v in blank["recall_by_size"].items()} == \
        {k: v["objects"] for k, v in plain["recall_by_size"].items()}
    assert all(blank["categories"][c]["truth_pass_rate"] == b["truth_pass_rate"] for c, b in plain["categories"].items())
    assert blank["overall"]["accuracy"] < plain["overall"]["accuracy"]


def test_vq_round_trip_is_encode_decode_and_measures_psnr(tmp_path, tiny_detector, capsys):
    import torch

    from datasets.scenes import generate
    from evaluation.validate_judge import VQRoundTrip, main
    from generation.vqvae import VQVAE, VQVAEConfig

    torch.manual_seed(0)
    vq = VQVAE(VQVAEConfig(channels=8, channel_mult=(1, 2), codebook_size=16, embed_dim=4)).eval()
    vq.save_pretrained(tmp_path / "vq")
    trip = VQRoundTrip(tmp_path / "vq")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (16, 24, 3), dtype=np.uint8) for _ in range(3)]
    out = trip(images)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        ref = (vq.decode(vq.encode(x), grid=(8, 12)) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    assert all(o.dtype == np.uint8 and o.shape == (16, 24, 3) for o in out)
    assert np.array_equal(np.stack(out), ref)
    mse = ((ref.astype(np.float64) - np.stack(images)) ** 2).mean(axis=(1, 2, 3)) / 255 ** 2
    assert trip.info()["psnr"] == pytest.approx(np.mean(-10 * np.log10(mse)), abs=1e-3)
    assert trip.info()["images"] == 3

    root = generate(tmp_path / "scenes", n=8, size=32, seed=2, val_fraction=0.5, progress=False)
    _, det_run = tiny_detector
    args = ["--data", str(root), "--detectors", f"catdog={det_run / 'best.pt'}", "--suite", "smoke",
            "--device", "cpu", "--through-vqvae", str(tmp_path / "vq"), "--out", str(tmp_path / "o")]
    assert main(args) == 0
    report = json.loads((tmp_path / "o" / "tokenizer_ceiling.json").read_text())
    assert report["images"] == 4 and report["through_vqvae"]["images"] == 4
    assert not (tmp_path / "o" / "judge_validation.json").exists()
    printed = capsys.readouterr()
    assert "mean PSNR" in printed.out
    ceiling = ", ".join(f"{c} {1 - v:.3f}" for c, v in report["true_captions_failed"].items())
    assert f"tokenizer ceiling (true captions still passed after the round trip): {ceiling}" in printed.out
    assert "warning: no detector finds face: verdicts on it read 'found 0' (give face=PATH" in printed.err
    assert main(args[:-4] + ["--out", str(tmp_path / "p")]) == 0  # the plain run: its originals are the ceiling's
    plain = json.loads((tmp_path / "p" / "judge_validation.json").read_text())
    assert report["through_vqvae"]["originals_true_captions_failed"] == plain["true_captions_failed"]
    assert report["through_vqvae"]["originals_recall_by_size"] == plain["recall_by_size"]
    val_objects = [o for r in map(json.loads, (root / "objects.jsonl").read_text().splitlines())
                   if r["split"] == "val" for o in r["objects"]]
    assert sum(v["objects"] for v in report["recall_by_size"].values()) == len(val_objects)
    assert all(0 <= v["recall"] <= 1 for v in report["recall_by_size"].values())
    assert main(args[:-4] + ["--through-vqvae", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "is not a saved VQ-VAE" in capsys.readouterr().err


def test_generator_completion_is_the_generators_edit_from_the_own_caption(tmp_path, tiny_detector, capsys):
    import torch

    from datasets.scenes import generate
    from evaluation.validate_judge import GeneratorCompletion, main
    from generation.diffusion import MaskReplaceDiffusion
    from generation.pipeline import TextToImage
    from generation.text import ScratchTextEncoder
    from generation.transformer import DenoisingTransformer, TransformerConfig
    from generation.vqvae import VQVAE, VQVAEConfig

    torch.manual_seed(0)
    text = ScratchTextEncoder.train_new(["a cat", "two dogs", "nothing", "a face"], vocab_size=120, dim=32, layers=1,
                                        heads=2, max_length=12)
    vq = VQVAE(VQVAEConfig(channels=8, channel_mult=(1, 2, 2), codebook_size=16, embed_dim=8))
    vq.codebook.embed.normal_()
    cfg = TransformerConfig(num_classes=16, h=8, w=8, width=32, depth=1, heads=2, text_dim=32, diffusion_steps=10)
    pipe = TextToImage(vq, text, DenoisingTransformer(cfg), MaskReplaceDiffusion(16, 10), image_size=32).eval()
    pipe.save_pretrained(tmp_path / "gen")
    completion = GeneratorCompletion(tmp_path / "gen", filter_ratio=0.5, device="cpu", steps=3)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(2)]
    out = completion(images, ["a cat", "two dogs"])
    for image, caption, got in zip(images, ["a cat", "two dogs"], out):
        x = torch.from_numpy(image).permute(2, 0, 1).float() / 255
        ref = pipe(caption, seed=0, steps=3, init_image=x, filter_ratio=0.5).images[0]
        assert got.dtype == np.uint8 and np.array_equal(got, (ref * 255).round().byte().permute(1, 2, 0).numpy())
    assert completion.info()["images"] == 2 and completion.info()["filter_ratio"] == 0.5
    with pytest.raises(ValueError, match="filter_ratio must be in"):
        GeneratorCompletion(tmp_path / "gen", filter_ratio=0.01, device="cpu")

    root = generate(tmp_path / "scenes", n=8, size=32, seed=2, val_fraction=0.5, progress=False)
    _, det_run = tiny_detector
    args = ["--data", str(root), "--detectors", f"catdog={det_run / 'best.pt'}", "--suite", "smoke", "--device", "cpu",
            "--through-generator", str(tmp_path / "gen"), "--filter-ratio", "0.5", "--steps", "3",
            "--out", str(tmp_path / "o")]
    assert main(args) == 0
    report = json.loads((tmp_path / "o" / "completion_r0.5.json").read_text())
    assert report["images"] == 4 and report["through_generator"]["images"] == 4
    assert report["through_generator"]["settings"]["steps"] == 3
    assert "own captions passed" in capsys.readouterr().out
    assert main(args[:-6] + ["--filter-ratio", "2", "--out", str(tmp_path / "o")]) == 2
    assert "filter_ratio must be in" in capsys.readouterr().err
    for extra, message in ((["--through-vqvae", str(tmp_path / "gen")], "not both"),
                           (["--limit", "0"], "--limit must be >= 1, got 0")):
        with pytest.raises(SystemExit) as exit_:
            main(args + extra)
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    plain = [a for a in args if a not in ("--through-generator", str(tmp_path / "gen"))]
    with pytest.raises(SystemExit):  # a completion's options without a completion: refused, not ignored
        main(plain)
    assert "--filter-ratio only applies with --through-generator" in capsys.readouterr().err


def test_size_buckets_known_answers():
    from evaluation.validate_judge import size_bucket

    assert size_bucket([0, 0, 15, 15], 64) == "0-0.25"
    assert size_bucket([10, 10, 26, 12], 64) == "0.25-0.375"  # the longer side counts: 16 / 64
    assert size_bucket([0, 0, 31, 24], 64) == "0.375-0.5"
    assert size_bucket([0, 0, 32, 8], 64) == size_bucket([0, 0, 64, 64], 64) == "0.5-1"


def test_the_report_draws_the_boxes_the_judge_counted():
    """As the app does: three nested cat boxes are one cat under judge-2 (the card said "ok: 1 cat"
    beside three boxes), three under judge-1; a box below presence confidence is not drawn."""
    from evaluation.judge import DEFAULT_RULES, JUDGE_1
    from evaluation.report import render_report

    dets = [{"label": "cat", "confidence": c, "box": box} for c, box in
            ((0.9, [0, 0, 60, 60]), (0.5, [10, 10, 40, 40]), (0.4, [20, 20, 30, 30]), (0.1, [50, 0, 64, 10]))]
    row = {"prompt": "a cat", "category": "single_object", "expect": "at least 1 cat", "seed": 0, "image": "x.png",
           "size": [64, 64], "detections": dets, "passed": True, "reason": "ok: 1 cat"}
    summary = {"overall": {"accuracy": 1.0, "ci95": [0.0, 1.0], "n": 1}, "categories": {}, "suite": "s"}
    for rules, boxes in ((DEFAULT_RULES, 1), (JUDGE_1, 3)):
        assert render_report([row], {**summary, "judge": rules.to_dict()}).count("<rect") == boxes


def test_the_report_draws_a_box_at_its_place_and_size_and_lists_the_overall_row():
    """Box (10, 20, 30, 60) is an SVG rect at (10, 20) of 20 x 40 (drawing x2 as the width would
    stretch every box right); the summary table starts with the overall accuracy."""
    from evaluation.report import render_report

    row = {"prompt": "a cat", "category": "single_object", "expect": "at least 1 cat", "seed": 0, "image": "x.png",
           "size": [64, 64], "detections": [{"label": "cat", "confidence": 0.9, "box": [10, 20, 30, 60]}],
           "passed": True, "reason": "ok: 1 cat"}
    summary = {"overall": {"accuracy": 0.5, "ci95": [0.1, 0.9], "n": 2},
               "categories": {"single_object": {"accuracy": 1.0, "ci95": [0.025, 1.0], "n": 1}}, "suite": "s"}
    page = render_report([row], summary)
    assert '<rect x="10.0" y="20.0" width="20.0" height="40.0" ' in page
    assert "<tr><td>overall</td><td>0.500</td><td>0.100 - 0.900</td><td>2</td></tr>" in page
    assert "<tr><td>single_object</td><td>1.000</td><td>0.025 - 1.000</td><td>1</td></tr>" in page


def test_a_generators_folder_hash_covers_its_decoder_and_not_its_path(tmp_path):
    from evaluation.run import model_info

    gen = tmp_path / "gen"
    for part, data in (("transformer", b"T"), ("vqvae", b"V"), ("text_encoder", b"E")):
        (gen / part).mkdir(parents=True)
        (gen / part / "model.safetensors").write_bytes(data)
    (gen / "pipeline.json").write_text("{}")
    before = model_info(gen)
    (gen / "vqvae" / "model.safetensors").write_bytes(b"V2")  # a fine-tuned decoder
    after = model_info(gen)
    assert after["sha256"] == before["sha256"] and after["weights_sha256"] != before["weights_sha256"]
    import shutil

    shutil.copytree(gen, tmp_path / "moved")
    assert model_info(tmp_path / "moved")["weights_sha256"] == after["weights_sha256"]
    (tmp_path / "moved" / "vqvae" / "model.safetensors").rename(tmp_path / "moved" / "vqvae" / "other.safetensors")
    assert model_info(tmp_path / "moved")["weights_sha256"] != after["weights_sha256"]  # names count too


def test_a_model_named_another_way_resumes_and_another_model_does_not(tmp_path, monkeypatch):
    """`models/demo/catdog.pt`, its absolute path and the default are the same file: the README's
    two forms of a command resume each other's run, as does the same weights given from another
    working directory or a moved checkout (models are compared by their weights' hash). Other
    weights are refused: a retrained detector, a generator with another decoder."""
    suite = load_suite("smoke")
    world = SceneWorld()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()

    def models(path, sha="b", folder="w"):
        return {"generator": {"path": path, "sha256": "a", "weights_sha256": folder},
                "detectors": {"catdog": {"path": path, "sha256": sha}}}

    def run(models, out="run"):
        return run_suite(suite, world.generate, make_eyes(world), tmp_path / out, images_per_prompt=1,
                         progress=False, models=models)

    run(models("models/x.pt"))
    run(models(str(tmp_path / "models" / "x.pt")))
    run(models("./models/../models/x.pt"))
    with pytest.raises(ValueError, match=r"\(models.detectors.catdog.path: 'models/x.pt' there, 'models/y.pt' now; "
                                         r"models.detectors.catdog.sha256: 'b' there, 'c' now\)"):
        run(models("models/y.pt", sha="c"))
    with pytest.raises(ValueError, match=r"\(models.detectors.catdog.sha256: 'b' there, 'c' now\)"):  # retrained
        run(models("models/x.pt", sha="c"))
    # the transformer alike, the decoder fine-tuned (train_vqvae --decoder-only): another generator
    with pytest.raises(ValueError, match=r"\(models.generator.path: 'models/x.pt' there, 'models/x_ft' now; "
                                         r"models.generator.weights_sha256: 'w' there, 'w2' now\)"):
        run({**models("models/x.pt"), "generator": {"path": "models/x_ft", "sha256": "a", "weights_sha256": "w2"}})
    assert json.loads((tmp_path / "run" / "run.json").read_text())["models"] == models("models/x.pt")  # as given
    # from another working directory, or after the checkout moved: the same weights, the same run
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    run(models(str(tmp_path / "models" / "x.pt")))
    run(models("../models/x.pt"))
    # a run of an older gendet recorded no folder hash: its generator is compared by the transformer's
    old = {"generator": {"path": "models/g", "sha256": "a"}, "detectors": {"catdog": {"path": "d.pt", "sha256": "b"}}}
    run(old, out="older")
    run(models("/elsewhere/models/g"), out="older")
    # a rejudged run's images, named relative to where it began: resumed from elsewhere by another name
    rejudged = {"generator": {"images_from": "src", "images_from_resolved": str(tmp_path / "elsewhere" / "src"),
                              **old["generator"]}}
    run(rejudged, out="rejudged")
    monkeypatch.chdir(tmp_path)
    run({"generator": {**rejudged["generator"], "images_from": "elsewhere/src"}}, out="rejudged")
    with pytest.raises(ValueError, match=r"models.generator.images_from: .*src' there, .*src2' now"):
        run({"generator": {**rejudged["generator"], "images_from": "src2", "images_from_resolved": str(tmp_path / "src2")}},
            out="rejudged")
    # the app's runs recorded no models before 2026-12-08: the app, which now does, resumes them
    run(None, out="app")
    assert json.loads((tmp_path / "app" / "run.json").read_text())["models"] == {}
    with pytest.warns(gendet_env.GendetWarning, match="recorded no models .* it records these from now on"):
        run(models("models/x.pt"), out="app")
    assert json.loads((tmp_path / "app" / "run.json").read_text())["models"] == models("models/x.pt")
    with pytest.raises(ValueError, match="models.detectors.catdog.sha256: 'b' there, 'c' now"):
        run(models("models/x.pt", sha="c"), out="app")  # and compared from then on
    # a model recorded without any hash (no weights file found) is compared by its path, resolved
    bare = {"generator": {"path": "models/g", "sha256": None}}
    run(bare, out="bare")
    with pytest.raises(ValueError, match=r"models.generator.path: 'models/g' there, 'models/h' now"):
        run({"generator": {"path": "models/h", "sha256": None}}, out="bare")
