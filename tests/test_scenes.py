"""datasets.scenes: the on-disk layout of datasets/FORMATS.md, determinism, label
round trips (COCO and YOLO back to objects.jsonl), caption truth, variety, pixels.

One small dataset (40 images at 64 px) is written once per module and read by
most tests; the variety and caption checks call render_scene directly, which is
much faster than writing files.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from datasets import scenes
from datasets.scenes import (CLASSES, COCO_IDS, COLORS, COUNT_WORDS, EMPTY_CAPTIONS, PHOTO_PREFIX,
                             PLAIN_BACKGROUNDS, RELATIONS, captions_for, main, relation_holds,
                             render_background, render_scene)
from datasets.scenes_draw import BACKGROUNDS
from evaluation.prompts import parse_prompt

REPO = Path(__file__).resolve().parents[1]
N, SIZE, SEED = 40, 64, 1
ARGS = ["--n", str(N), "--size", str(SIZE), "--seed", str(SEED)]
COCO_IDS_INV = {v: k for k, v in COCO_IDS.items()}
YOLO_NAMES = {"catdog": {0: "cat", 1: "dog"}, "face": {0: "face"}}  # FORMATS.md, "Classes"


# ---------------------------------------------------------------- helpers
def _files(root: Path) -> dict[str, bytes]:
    """Every file under root (relative path -> bytes)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _assert_same_tree(a: Path, b: Path) -> None:
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb)
    different = [k for k in fa if fa[k] != fb[k]]
    assert not different, f"files differ: {different[:5]}"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scenes") / "ds"
    assert main(["--out", str(out), *ARGS]) == 0
    return out


@pytest.fixture(scope="module")
def rows(root) -> list[dict]:
    return _jsonl(root / "objects.jsonl")


# ---------------------------------------------------------------- layout
def test_layout_has_every_file_of_formats_md(root, rows):
    n_train, n_val = scenes.split_sizes(N, 0.1)
    assert (n_train, n_val) == (36, 4)
    names = {"train": [f"{i:06d}.png" for i in range(n_train)],
             "val": [f"{i:06d}.png" for i in range(n_train, N)]}
    for split, expected in names.items():
        assert sorted(p.name for p in (root / "images" / split).iterdir()) == expected
        for task in YOLO_NAMES:
            assert sorted(p.name for p in (root / task / "images" / split).iterdir()) == expected
            assert sorted(p.name for p in (root / task / "labels" / split).iterdir()) == \
                [n.replace(".png", ".txt") for n in expected]
            for name in expected:  # the YOLO image is the same picture (link or copy)
                assert (root / task / "images" / split / name).read_bytes() == \
                    (root / "images" / split / name).read_bytes()
        for name in expected[:3]:
            with Image.open(root / "images" / split / name) as im:
                assert (im.mode, im.size) == ("RGB", (SIZE, SIZE))
    for f in ("captions.jsonl", "objects.jsonl", "meta.json", "annotations/instances_train.json",
              "annotations/instances_val.json", "catdog/data.yaml", "face/data.yaml"):
        assert (root / f).is_file(), f

    assert [r["image"] for r in rows] == [f"images/{s}/{n}" for s in ("train", "val") for n in names[s]]
    assert [r["split"] for r in rows] == ["train"] * n_train + ["val"] * n_val
    assert all(r["width"] == r["height"] == SIZE and r["background"] in BACKGROUNDS for r in rows)
    caps = _jsonl(root / "captions.jsonl")
    assert [(c["image"], c["split"]) for c in caps] == [(r["image"], r["split"]) for r in rows]

    meta = json.loads((root / "meta.json").read_text())
    assert meta["generator"].startswith("scenes")
    assert (meta["seed"], meta["n"], meta["size"]) == (SEED, N, SIZE)
    assert meta["splits"] == {"train": n_train, "val": n_val}
    assert meta["backgrounds"] == list(BACKGROUNDS) and meta["min_object"] == 0.0
    assert meta["count_probs"] == list(scenes.COUNT_PROBS)
    counted = Counter(o["label"] for r in rows for o in r["objects"])
    assert meta["objects"] == {c: counted[c] for c in CLASSES}
    assert meta["empty_images"] == sum(not r["objects"] for r in rows)


def test_data_yaml(root):
    for task, names in YOLO_NAMES.items():
        data = yaml.safe_load((root / task / "data.yaml").read_text())
        assert "path" not in data  # ultralytics then resolves train/val against the yaml's folder
        assert data["names"] == names
        assert (data["train"], data["val"], data["task_name"]) == ("images/train", "images/val", task)


# ---------------------------------------------------------------- determinism
def test_same_seed_byte_identical_and_workers_and_seed(root, tmp_path):
    other = tmp_path / "other"
    assert main(["--out", str(other), *ARGS[:-1], "2", "--quiet"]) == 0  # seed 2
    fa, fb = _files(root), _files(other)
    assert sorted(fa) == sorted(fb)
    pngs = [k for k in fa if k.startswith("images/")]
    assert sum(fa[k] != fb[k] for k in pngs) >= N - 2, "a different seed must give different images"
    assert fa["objects.jsonl"] != fb["objects.jsonl"]

    # Rewriting an earlier scenes root with seed 1 replaces it by exactly the seed-1 dataset.
    assert main(["--out", str(other), *ARGS, "--quiet"]) == 0
    _assert_same_tree(root, other)

    two = tmp_path / "two_workers"
    assert main(["--out", str(two), *ARGS, "--workers", "2", "--quiet"]) == 0
    _assert_same_tree(root, two)


def test_cli_subprocess_matches_in_process(root, tmp_path):
    out = tmp_path / "cli"
    res = subprocess.run([sys.executable, "-m", "datasets.scenes", "--out", str(out), *ARGS, "--quiet"],
                         cwd=REPO, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr
    assert f"wrote {N} scenes" in res.stdout
    _assert_same_tree(root, out)


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--out" in out and "--seed" in out and "--workers" in out


@pytest.mark.parametrize("argv, message", [
    (["--n", "0", "--size", "64"], "n must be at least 1 (got 0)"),
    (["--n", "5", "--size", "16"], "size must be at least 32 pixels (got 16)"),
    (["--n", "5", "--size", "64", "--seed", "-3"], "seed must be >= 0 (got -3)"),
    (["--n", "5", "--size", "64", "--val-fraction", "1.5"], "val fraction must be in [0, 1) (got 1.5)"),
    (["--n", "5", "--size", "64", "--workers", "0"], "workers must be at least 1 (got 0)"),
    (["--n", "five"], "invalid int value: 'five'"),
    (["--n", "5", "--backgrounds", "flat,sky"], "backgrounds must be some of flat, gradient, noise, stripes, "
                                                "checker, clutter, plain (got flat, sky)"),
    (["--n", "5", "--backgrounds", ","], "(got none)"),
    (["--n", "5", "--min-object", "0.7"], "min object must be in [0, 0.6] of the image side (got 0.7)"),
    (["--n", "5", "--count-probs", "0.5,0.5"], "count probs must be 5 numbers in [0, 1]"),
    (["--n", "5", "--count-probs", "0.2,0.2,0.2,0.2,0.3"], "that sum to 1 (got 0.2, 0.2, 0.2, 0.2, 0.3: sum 1.1)"),
    (["--n", "5", "--count-probs", "0,0,1,-0.5,0.5"], "count probs must be 5 numbers in [0, 1]"),
    (["--n", "5", "--count-probs", "a,b"], "--count-probs must be comma-separated numbers (got 'a,b')"),
])
def test_bad_arguments_exit_2_with_message(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        main(["--out", str(out), *argv])
    assert e.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())  # nothing written


def test_refuses_foreign_non_empty_dir(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.txt").write_text("do not delete")
    (out / "images").mkdir()
    with pytest.raises(SystemExit) as e:
        main(["--out", str(out), "--n", "3", "--size", "64"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert str(out) in err and "not empty" in err
    assert (out / "thesis.txt").read_text() == "do not delete"
    assert sorted(p.name for p in out.iterdir()) == ["images", "thesis.txt"]


def test_out_naming_a_file_is_a_usage_error(tmp_path, capsys):
    out = tmp_path / "README.md"
    out.write_text("keep me")
    with pytest.raises(SystemExit) as e:
        main(["--out", str(out), "--n", "3", "--size", "32"])
    assert e.value.code == 2
    assert f"error: {out}: --out exists and is not a folder" in capsys.readouterr().err
    assert out.read_text() == "keep me"


def test_rewriting_an_earlier_root_says_so(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["--out", str(out), "--n", "6", "--size", "32", "--quiet"]) == 0
    assert "replaced" not in capsys.readouterr().err  # a new root: nothing to say
    assert main(["--out", str(out), "--n", "2", "--size", "32", "--quiet"]) == 0
    assert f"note: replaced the existing scenes dataset at {out} (6 images, seed 0)" in capsys.readouterr().err
    assert json.loads((out / "meta.json").read_text())["n"] == 2


def test_a_run_cut_short_leaves_the_earlier_dataset_whole_and_a_rerun_works(tmp_path, monkeypatch, capsys):
    """Scenes are drawn in --out/.drawing and swapped in whole: interrupted (Ctrl-C, a crash) the earlier
    dataset is as it was and the same command runs again. Before, --out had been emptied first, and
    the rerun was refused (a folder of scenes files without meta.json)."""
    out = tmp_path / "ds"
    assert main(["--out", str(out), "--n", "6", "--size", "32", "--quiet", "--seed", "1"]) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real = scenes._write_index_files

    def cut_short(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(scenes, "_write_index_files", cut_short)
    capsys.readouterr()
    assert main(["--out", str(out), "--n", "9", "--size", "32", "--quiet"]) == 130
    err = capsys.readouterr().err.strip()
    assert err == (f"interrupted: {out} is as it was (the scenes are drawn in it, in .drawing/, and put in place "
                   "when all are done); run the same command again")
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"] and not (out / ".drawing").exists()
    monkeypatch.setattr(scenes, "_write_index_files", real)
    assert main(["--out", str(out), "--n", "9", "--size", "32", "--quiet"]) == 0
    assert json.loads((out / "meta.json").read_text())["n"] == 9 and len(list((out / "images").rglob("*.png"))) == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    # Ctrl-C while the earlier dataset is cleared away is held off: the new one is in place, said so
    import os
    import signal

    real_rmtree = scenes.shutil.rmtree

    def ctrl_c_while_clearing(path, *args, **kwargs):
        if Path(path).name == ".replaced" and Path(path).is_dir():
            os.kill(os.getpid(), signal.SIGINT)
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(scenes.shutil, "rmtree", ctrl_c_while_clearing)
    assert main(["--out", str(out), "--n", "5", "--size", "32", "--quiet"]) == 0
    monkeypatch.setattr(scenes.shutil, "rmtree", real_rmtree)
    assert json.loads((out / "meta.json").read_text())["n"] == 5 and sorted(p.name for p in out.iterdir()) == \
        sorted(scenes.MANAGED)
    # killed mid-swap (SIGKILL): part of each dataset, both hidden folders; the same command goes on
    (out / ".replaced").mkdir()
    os.replace(out / "meta.json", out / ".replaced" / "meta.json")
    os.replace(out / "face", out / ".replaced" / "face")
    (out / ".drawing").mkdir()
    assert main(["--out", str(out), "--n", "4", "--size", "32", "--quiet"]) == 0
    assert json.loads((out / "meta.json").read_text())["n"] == 4 and sorted(p.name for p in out.iterdir()) == \
        sorted(scenes.MANAGED)
    # a folder a run of an earlier version left cut short (its files, no meta.json) is replaced too;
    # a user's folder with an images/ of their own is not
    (out / "meta.json").unlink()
    mine = tmp_path / "mine"
    (mine / "images").mkdir(parents=True)
    with pytest.raises(SystemExit):
        main(["--out", str(mine), "--n", "3", "--size", "32", "--quiet"])
    assert main(["--out", str(out), "--n", "3", "--size", "32", "--quiet"]) == 0
    assert json.loads((out / "meta.json").read_text())["n"] == 3 and len(list((out / "images").rglob("*.png"))) == 3


def test_an_out_that_is_a_link_gets_the_dataset_where_it_points(tmp_path):
    """--out a symlink to a folder elsewhere (a mount point, say): drawn inside it (renames cannot
    cross disks), and the link stays a link."""
    target = tmp_path / "disk" / "scenes"
    target.mkdir(parents=True)
    (tmp_path / "links").mkdir()
    link = tmp_path / "links" / "scenes"
    link.symlink_to(target)
    for n in (3, 4):  # new, then replaced
        assert main(["--out", str(link), "--n", str(n), "--size", "32", "--quiet"]) == 0
        assert link.is_symlink() and json.loads((target / "meta.json").read_text())["n"] == n
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk", "links"]
    assert sorted(p.name for p in (tmp_path / "disk").iterdir()) == ["scenes"]


def test_ctrl_c_with_workers_says_one_line(tmp_path):
    """Ctrl-C during a two-worker run: one line, no worker tracebacks, nothing at --out."""
    import signal
    import time

    out = tmp_path / "ds"
    run = subprocess.Popen([sys.executable, "-m", "datasets.scenes", "--out", str(out), "--n", "20000", "--size", "64",
                            "--workers", "2", "--quiet"], cwd=Path(__file__).resolve().parents[1],
                           stderr=subprocess.PIPE, text=True)
    drawing = out / ".drawing" / "images" / "train"
    for _ in range(300):
        if drawing.is_dir() and any(drawing.iterdir()):
            break
        time.sleep(0.1)
    run.send_signal(signal.SIGINT)
    err = run.communicate(timeout=60)[1]
    assert run.returncode == 130, err
    assert err.strip().splitlines() == [f"interrupted: {out} is as it was (the scenes are drawn in it, in .drawing/, "
                                        "and put in place when all are done); run the same command again"]
    assert not out.exists()  # made by the run: gone with it


def test_missing_out_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--n", "3"])
    assert e.value.code == 2
    assert "--out" in capsys.readouterr().err


# ---------------------------------------------------------------- labels
def test_coco_matches_objects_jsonl(root, rows):
    from pycocotools.coco import COCO

    seen = 0
    for split in ("train", "val"):
        coco = COCO(str(root / "annotations" / f"instances_{split}.json"))
        assert {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())} == {1: "cat", 2: "dog", 3: "face"}
        by_file = {im["file_name"]: im for im in coco.loadImgs(coco.getImgIds())}
        split_rows = [r for r in rows if r["split"] == split]
        assert sorted(by_file) == sorted(Path(r["image"]).name for r in split_rows)
        for r in split_rows:
            im = by_file[Path(r["image"]).name]
            assert (root / "images" / split / im["file_name"]).is_file()
            assert (im["width"], im["height"]) == (SIZE, SIZE)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[im["id"]]))
            got = [(COCO_IDS_INV[a["category_id"]], a["color"],
                    [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]])
                   for a in anns]
            want = [(o["label"], o["color"], o["box"]) for o in r["objects"]]
            assert sorted(got) == sorted(want)
            for a in anns:
                assert a["area"] == pytest.approx(a["bbox"][2] * a["bbox"][3]) and a["iscrowd"] == 0
            seen += len(anns)
    assert seen == sum(len(r["objects"]) for r in rows) > 0



def test_yolo_labels_decode_to_objects_boxes(root, rows):
    decoded = 0
    for r in rows:
        for task, names in YOLO_NAMES.items():
            path = root / task / "labels" / r["split"] / Path(r["image"]).with_suffix(".txt").name
            got = []
            for line in path.read_text().splitlines():
                cls, cx, cy, w, h = line.split()
                cx, cy, w, h = (float(v) * SIZE for v in (cx, cy, w, h))
                assert all(0 <= float(v) <= 1 for v in line.split()[1:])
                got.append((names[int(cls)], [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]))
            want = [(o["label"], o["box"]) for o in r["objects"] if o["label"] in names.values()]
            assert [g[0] for g in got] == [w[0] for w in want]
            for (_, gb), (_, wb) in zip(got, want):
                assert np.abs(np.subtract(gb, wb)).max() < 1.0
            decoded += len(got)
    assert decoded == sum(len(r["objects"]) for r in rows) > 0


def test_boxes_inside_image(rows):
    boxes = [o["box"] for r in rows for o in r["objects"]]
    assert boxes
    for x1, y1, x2, y2 in boxes:
        assert 0 <= x1 < x2 <= SIZE and 0 <= y1 < y2 <= SIZE


# ---------------------------------------------------------------- captions
ARTICLES = {"a": 1, "an": 1, "one": 1, **{w: k for k, w in COUNT_WORDS.items()}}
ALL_COLORS = {c for label in ("cat", "dog") for c in COLORS[label]}


def _parse_phrase(phrase: str) -> tuple[int, str | None, str]:
    """'two black cats' -> (2, 'black', 'cat'); fails on anything the grammar does not allow."""
    words = phrase.split()
    assert 2 <= len(words) <= 3, phrase
    count = ARTICLES[words[0]]
    noun = words[-1]
    label = noun[:-1] if count > 1 else noun
    assert label in CLASSES and noun == label + ("s" if count > 1 else ""), phrase
    color = words[1] if len(words) == 3 else None
    if color is not None:
        assert label != "face", f"faces never take a colour: {phrase!r}"
        assert color in COLORS[label], phrase
    if words[0] in ("a", "an"):
        assert words[0] == ("an" if words[1][0] in "aeiou" else "a"), phrase
    return count, color, label


def _matches(obj, phrase) -> bool:
    _, color, label = phrase
    return obj["label"] == label and (color is None or obj["color"] == color)


def check_caption(caption: str, objects: list[dict], background: str, size: int) -> None:
    """Assert that caption is a true and complete description of objects."""
    if not objects:
        allowed = set(EMPTY_CAPTIONS) | ({"a plain background"} if background in PLAIN_BACKGROUNDS else set())
        assert caption in allowed | {PHOTO_PREFIX + c for c in allowed}, caption
        return
    text = caption.removeprefix(PHOTO_PREFIX)
    assert text not in set(EMPTY_CAPTIONS) | {"a plain background"}, caption
    rel = [r for r in RELATIONS if f" {r} " in text]
    if rel:
        left, right = text.split(f" {rel[0]} ")
        pa, pb = _parse_phrase(left), _parse_phrase(right)
        assert pa[0] == pb[0] == 1 and len(objects) == 2, caption
        pairs = [(a, b) for a in objects for b in objects
                 if a is not b and _matches(a, pa) and _matches(b, pb)]
        assert pairs, f"{caption!r}: no objects match"
        for a, b in pairs:  # true whichever matching objects the reader picks
            assert relation_holds(a["box"], b["box"], rel[0], size), caption
        return
    phrases = [_parse_phrase(p) for p in text.split(" and ")]
    for label in CLASSES:
        objs = [o for o in objects if o["label"] == label]
        assert sum(p[0] for p in phrases if p[2] == label) == len(objs), f"{caption!r}: count of {label}"
        for color in {p[1] for p in phrases if p[2] == label and p[1]}:
            claimed = sum(p[0] for p in phrases if p[2] == label and p[1] == color)
            assert claimed <= sum(o["color"] == color for o in objs), f"{caption!r}: {color} {label}"
        if all(p[1] for p in phrases if p[2] == label):  # every one coloured: the colours are exact
            for color in {o["color"] for o in objs}:
                assert sum(p[0] for p in phrases if p[2] == label and p[1] == color) == \
                    sum(o["color"] == color for o in objs), f"{caption!r}: {color} {label}"


def test_checker_rejects_false_captions():
    """The caption checker must be able to fail."""
    objs = [{"label": "cat", "color": "black", "box": [0, 0, 10, 10]},
            {"label": "dog", "color": "white", "box": [40, 0, 50, 10]}]
    check_caption("a black cat and a white dog", objs, "flat", 64)
    check_caption("a cat to the left of a dog", objs, "flat", 64)
    for bad in ("two cats and a dog", "a white cat and a white dog", "a cat", "a cat and a dog and a face",
                "a cat to the right of a dog", "a dog to the left of a cat", "nothing", "an black cat and a dog"):
        with pytest.raises(AssertionError):
            check_caption(bad, objs, "flat", 64)
    faces = [{"label": "face", "color": "blond", "box": [0, 0, 10, 10]}]
    with pytest.raises(AssertionError):
        check_caption("a blond face", faces, "flat", 64)
    with pytest.raises(AssertionError):
        check_caption("a plain background", [], "clutter", 64)
    with pytest.raises(AssertionError):
        check_caption("a photo of nothing", objs, "flat", 64)


def test_empty_scene_captions_known_answer_and_judged_empty():
    assert captions_for([], "clutter", 64) == ["nothing", "an empty room", "an empty scene", "a photo of nothing",
                                              "a photo of an empty room", "a photo of an empty scene"]
    plain = captions_for([], "flat", 64)
    assert plain[0] == "a plain background" and plain[4] == "a photo of a plain background" and len(plain) == 8
    none = {c: {"count": 0} for c in CLASSES}
    assert all(parse_prompt(c).expect == none for c in plain)


def test_relation_holds_known_answers():
    a, b = [0, 0, 10, 10], [30, 0, 40, 10]  # centres 5 and 35: dx = 30 > 0.15 * 64 = 9.6
    assert relation_holds(a, b, "to the left of", 64) and relation_holds(b, a, "to the right of", 64)
    assert not relation_holds(a, b, "to the right of", 64) and not relation_holds(a, b, "above", 64)
    assert not relation_holds(a, [9, 0, 19, 10], "to the left of", 64)  # dx = 9 < 9.6: too close
    assert relation_holds([0, 0, 10, 10], [0, 20, 10, 30], "above", 64)
    assert relation_holds([0, 20, 10, 30], [0, 0, 10, 10], "below", 64)


def test_dataset_captions_are_true(root, rows):
    caps = _jsonl(root / "captions.jsonl")
    for r, c in zip(rows, caps):
        assert c["captions"] and len(set(c["captions"])) == len(c["captions"])
        if r["objects"]:
            assert len(c["captions"]) >= 2
        for caption in c["captions"]:
            check_caption(caption, r["objects"], r["background"], SIZE)
    coco = json.loads((root / "annotations" / "instances_train.json").read_text())
    assert [im["captions"] for im in coco["images"]] == [c["captions"] for c in caps if c["split"] == "train"]


@pytest.fixture(scope="module")
def many():
    """300 scenes rendered in memory with their backgrounds (seed 7, 64 px)."""
    return [(i, *render_scene(i, SIZE, 7, with_background=True)) for i in range(300)]


def test_rendered_captions_are_true_and_recomputable(many):
    kinds = Counter()
    for _, _, objects, captions, background in many:
        assert captions == captions_for(objects, background, SIZE)
        for caption in captions:
            check_caption(caption, objects, background, SIZE)
            kinds["relation" if any(f" {r} " in caption for r in RELATIONS) else
                  "count" if any(caption.split()[0] == w or f" {w} " in caption for w in ("two", "three", "four"))
                  else "other"] += 1
    assert kinds["relation"] >= 10 and kinds["count"] >= 10


def test_variety(many):
    counts = Counter(len(objs) for _, _, objs, _, _ in many)
    assert set(counts) == {0, 1, 2, 3, 4}
    objs = [o for _, _, scene, _, _ in many for o in scene]
    assert set(o["label"] for o in objs) == set(CLASSES)
    for label in ("cat", "dog"):
        assert len({o["color"] for o in objs if o["label"] == label}) >= 4
    assert len({o["color"] for o in objs if o["label"] == "face"}) >= 3
    assert len({bg for *_, bg in many}) >= 5
    sides = [max(o["box"][2] - o["box"][0], o["box"][3] - o["box"][1]) / SIZE for o in objs]
    assert min(sides) <= 0.25 and max(sides) >= 0.8  # small to frame-filling
    for o in objs:
        x1, y1, x2, y2 = o["box"]
        assert 0 <= x1 < x2 <= SIZE and 0 <= y1 < y2 <= SIZE
        assert o["color"] in COLORS[o["label"]]


def _boxes_overlap(a, b) -> bool:
    return not (a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1])


def _check_pixels(image: np.ndarray, background: np.ndarray, objects: list[dict]) -> None:
    changed = np.abs(image.astype(int) - background.astype(int)).max(-1) > 0
    covered = np.zeros(changed.shape, bool)
    for k, o in enumerate(objects):
        x1, y1, x2, y2 = o["box"]
        covered[y1:y2, x1:x2] = True
        inside = changed[y1:y2, x1:x2]
        assert inside.mean() > 0.4, f"object {k} ({o['label']}) barely drawn: {inside.mean():.2f}"
        if not any(_boxes_overlap(o["box"], p["box"]) for j, p in enumerate(objects) if j != k):
            # a lone box is tight: the drawing touches all four edges
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
    assert not changed[~covered].any(), "pixels outside every box differ from the background"


def test_objects_are_drawn_inside_their_boxes(root, rows):
    for i, r in enumerate(rows):
        image = np.asarray(Image.open(root / r["image"]).convert("RGB"))
        kind, bg = render_background(i, SIZE, SEED)
        assert kind == r["background"]
        _check_pixels(image, np.asarray(bg), r["objects"])


def test_rendered_pixels_match_boxes(many):
    for i, image, objects, _, _ in many[:150]:
        _check_pixels(np.asarray(image), np.asarray(render_background(i, SIZE, 7)[1]), objects)


# ---------------------------------------------------------------- fewer backgrounds
def test_full_world_backgrounds_are_unchanged_by_the_option():
    # scenes-1 as written before --backgrounds existed (seed 0, 64 px: the demo data)
    expected = ["noise", "clutter", "stripes", "flat", "clutter", "noise", "clutter", "gradient", "stripes", "noise",
                "clutter", "flat"]
    assert [render_background(i, 64, 0)[0] for i in range(12)] == expected
    assert [render_background(i, 64, 0, BACKGROUNDS)[0] for i in range(12)] == expected
    # and the objects: sha256 of the first 20 scenes' objects as scenes-1 wrote them
    objects = json.dumps([render_scene(i, 64, 0, min_object=0.0)[1] for i in range(20)])
    assert hashlib.sha256(objects.encode()).hexdigest() == \
        "7f2d84af5ce1bb08a192e44997fcc8efe70409c9c3e95c08a730ea0cf39132a6"


def test_plain_backgrounds_only_and_captions_stay_true():
    kinds = Counter()
    for i in range(120):
        image, objects, captions, kind = render_scene(i, SIZE, 7, with_background=True, backgrounds=PLAIN_BACKGROUNDS)
        kinds[kind] += 1
        assert captions == captions_for(objects, kind, SIZE)
        for caption in captions:
            check_caption(caption, objects, kind, SIZE)
        _check_pixels(np.asarray(image), np.asarray(render_background(i, SIZE, 7, PLAIN_BACKGROUNDS)[1]), objects)
    assert set(kinds) == set(PLAIN_BACKGROUNDS) and min(kinds.values()) >= 30
    for i in range(20):  # flat alone: one colour everywhere
        kind, bg = render_background(i, SIZE, 7, ("flat",))
        assert kind == "flat" and len(np.unique(np.asarray(bg).reshape(-1, 3), axis=0)) == 1


def test_min_object_makes_every_object_large_and_captions_stay_true():
    def sides(min_object):
        out = []
        for i in range(150):
            _, objects, captions, kind = render_scene(i, SIZE, 7, with_background=True, min_object=min_object)
            for caption in captions:
                check_caption(caption, objects, kind, SIZE)
            out += [max(o["box"][2] - o["box"][0], o["box"][3] - o["box"][1]) for o in objects]
        return np.array(out)

    world, large = sides(0.0), sides(0.375)
    # boxes are tight around the drawing, so a little under the nominal 24 px
    assert large.min() >= 0.8 * 0.375 * SIZE and world.min() < 0.25 * SIZE
    assert np.median(large) > np.median(world) and len(large) >= 0.8 * len(world)  # few left out


def test_cli_backgrounds_plain_is_recorded(tmp_path):
    out = tmp_path / "plain"
    assert main(["--out", str(out), "--n", "12", "--size", "32", "--seed", "2", "--backgrounds", "plain",
                 "--min-object", "0.3"]) == 0
    assert json.loads((out / "meta.json").read_text())["backgrounds"] == list(PLAIN_BACKGROUNDS)
    assert json.loads((out / "meta.json").read_text())["min_object"] == 0.3
    assert {r["background"] for r in _jsonl(out / "objects.jsonl")} <= set(PLAIN_BACKGROUNDS)


def test_cli_backgrounds_plain_mixes_with_other_kinds(tmp_path):
    out = tmp_path / "mixed"
    assert main(["--out", str(out), "--n", "4", "--size", "32", "--backgrounds", "plain,flat,noise", "--quiet"]) == 0
    assert json.loads((out / "meta.json").read_text())["backgrounds"] == ["flat", "gradient", "noise"]
    assert scenes.expand_backgrounds(("noise", "plain")) == ("noise", "flat", "gradient")


@pytest.mark.parametrize("argv, message", [
    (["--out", "sheet"], "--out must be an image file name ending in .png or .jpg (got sheet)"),
    (["--out", "sheet.txt"], "--out must be an image file name ending in .png or .jpg (got sheet.txt)"),
    (["--out", "sheet.png", "--start", "-3"], "--start must be >= 0 (got -3)"),
    (["--out", "sheet.png", "--seed", "-1"], "--seed must be >= 0 (got -1)"),
    (["--out", "sheet.png", "--size", "8"], "--size must be at least 32 pixels (got 8)"),
])
def test_preview_bad_arguments_exit_2_with_message(tmp_path, monkeypatch, capsys, argv, message):
    from datasets import scenes_preview

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        scenes_preview.main([*argv, "--rows", "1", "--cols", "1"])
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written


def test_preview_writes_png_and_jpg(tmp_path):
    from datasets import scenes_preview

    for name in ("sheet.png", "sheet.jpg"):
        assert scenes_preview.main(["--out", str(tmp_path / name), "--rows", "1", "--cols", "2", "--size", "32"]) == 0
        with Image.open(tmp_path / name) as im:
            assert im.size == (64, 32 + scenes_preview.CAPTION_H)


def test_count_probs_set_how_many_objects_and_default_draws_are_unchanged(tmp_path):
    # the default is the world's own distribution, drawn from the same stream: same scenes
    for i in range(10):
        assert render_scene(i, SIZE, 3, min_object=0.375)[1] == \
            render_scene(i, SIZE, 3, min_object=0.375, count_probs=scenes.COUNT_PROBS)[1]
    # all mass on one count: every scene plans exactly that many (4 large ones may not all fit)
    for k in range(scenes.MAX_OBJECTS + 1):
        probs = tuple(float(j == k) for j in range(scenes.MAX_OBJECTS + 1))
        found = [len(render_scene(i, 128, 5, min_object=0.2, count_probs=probs)[1]) for i in range(40)]
        assert max(found) == k and sum(n == k for n in found) >= 0.9 * len(found), (k, Counter(found))
    # a mixture: the share of two-object scenes follows its probability (600 scenes, 3 SD ~ 0.06)
    probs = (0.0, 0.3, 0.7, 0.0, 0.0)
    found = Counter(len(render_scene(i, 128, 6, min_object=0.2, count_probs=probs)[1]) for i in range(600))
    assert abs(found[2] / 600 - 0.7) < 0.07 and found[0] == found[3] == found[4] == 0
    out = tmp_path / "pairs"
    assert main(["--out", str(out), "--n", "8", "--size", "64", "--count-probs", "0,0,1,0,0", "--quiet"]) == 0
    assert json.loads((out / "meta.json").read_text())["count_probs"] == [0.0, 0.0, 1.0, 0.0, 0.0]
    rows = _jsonl(out / "objects.jsonl")
    assert sum(len(r["objects"]) == 2 for r in rows) >= 7
    for r, c in zip(rows, _jsonl(out / "captions.jsonl")):  # and the captions still describe them
        for caption in c["captions"]:
            check_caption(caption, r["objects"], r["background"], 64)
