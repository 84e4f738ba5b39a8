"""Seeded procedural scenes: image / caption / box triples of cats, dogs and faces.

    python -m datasets.scenes --out DIR --n N --size S --seed K [--val-fraction 0.1] [--workers W]
                              [--backgrounds plain] [--min-object 0.375]

writes the dataset root described in datasets/FORMATS.md. Every image is a pure
function of (seed, index, size): its random streams are seeded from those
numbers only, so the output is byte-identical for any worker count.

Python API: `generate(...)`, `render_scene(index, size, seed)`,
`render_background(index, size, seed)`, `captions_for(objects, background, size)`,
`relation_holds(box_a, box_b, relation, size)` and the vocabulary constants below.
Drawing lives in `datasets.scenes_draw`.
"""

from __future__ import annotations

import gendet_env  # offline-safe environment, as every entry point

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import sys
from functools import partial
from pathlib import Path

import numpy as np
import yaml
from PIL import Image
from tqdm import tqdm

from datasets import scenes_draw as draw
from datasets.signals import ctrl_c_held

GENERATOR = "scenes-2"  # scenes-2: empty scenes also get "a photo of ..." captions
CLASSES = ("cat", "dog", "face")
# Cats and dogs: fur colour. Faces: hair colour (captions never name it).
COLORS = {"cat": tuple(draw.FUR_RGB), "dog": tuple(draw.FUR_RGB), "face": tuple(draw.HAIR_RGB)}
COCO_IDS = {"cat": 1, "dog": 2, "face": 3}
YOLO_TASKS = {"catdog": ("cat", "dog"), "face": ("face",)}

# Caption vocabulary, shared with the evaluation prompts.
COUNT_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}
RELATIONS = ("to the left of", "to the right of", "above", "below")
RELATION_MARGIN = 0.15  # centres must differ by this fraction of the image size
EMPTY_CAPTIONS = ("nothing", "an empty room", "an empty scene")
PLAIN_BACKGROUNDS = ("flat", "gradient")  # these also get "a plain background"
PHOTO_PREFIX = "a photo of "

MAX_OBJECTS = 4
COUNT_PROBS = (0.12, 0.36, 0.26, 0.16, 0.10)  # P(0..4 objects)
SIDE_RANGE = {1: (0.15, 1.0), 2: (0.13, 0.62), 3: (0.12, 0.5), 4: (0.12, 0.44)}  # x size, uniform
MIN_SIDE_PX = 10
MAX_IOU = 0.3
MAX_COVER = 0.5  # intersection / smaller box: no object hides inside another
MIN_CONTRAST = 70.0  # RGB distance between an object's main colour and the background under it
MIN_SIZE = 32


# ---------------------------------------------------------------- geometry
def iou(a, b) -> float:
    inter = _inter(a, b)
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def _area(b) -> float:
    return max(0, b[2] - b[0]) * max(0, b[3] - b[1])


def _inter(a, b) -> float:
    return _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def relation_holds(a, b, relation: str, size: int) -> bool:
    """Is box a `relation` box b, judged by centres with a clear margin?"""
    margin = RELATION_MARGIN * size
    dx = (b[0] + b[2]) / 2 - (a[0] + a[2]) / 2
    dy = (b[1] + b[3]) / 2 - (a[1] + a[3]) / 2
    return {"to the left of": dx > margin, "to the right of": -dx > margin,
            "above": dy > margin, "below": -dy > margin}[relation]


# ---------------------------------------------------------------- layout
def _rngs(seed: int, index: int):
    # Separate streams: the background never depends on how many objects were drawn.
    return [np.random.default_rng([seed, index, k]) for k in range(3)]


def _plan(rng, size: int, min_object: float = 0.0,
          count_probs: tuple[float, ...] = COUNT_PROBS) -> list[tuple[str, str, float]]:
    """(label, colour, nominal side in px), largest first so small objects land on top;
    `min_object` raises the side range's lower end (a fraction of the image side) and
    `count_probs` are P(0..4 objects)."""
    n = int(rng.choice(len(count_probs), p=count_probs))
    if n == 0:
        return []
    same_class = n >= 2 and rng.random() < 0.45  # "three dogs"
    same_color = rng.random() < 0.5  # "two black cats"
    first = CLASSES[rng.integers(len(CLASSES))]
    lo, hi = SIDE_RANGE[n]
    lo = max(lo, min_object)
    hi = max(hi, lo)
    plan, colour_of = [], {}
    for _ in range(n):
        label = first if same_class else CLASSES[rng.integers(len(CLASSES))]
        palette = COLORS[label]
        color = palette[rng.integers(len(palette))]
        if same_color:
            color = colour_of.setdefault(label, color)
        side = max(MIN_SIDE_PX, size * rng.uniform(lo, hi))
        plan.append((label, color, min(side, size)))
    return sorted(plan, key=lambda t: -t[2])


def _fits(box, boxes) -> bool:
    return all(iou(box, b) < MAX_IOU and _inter(box, b) < MAX_COVER * min(_area(box), _area(b))
               for b in boxes)


def _place(layer_size, boxes, size, rng, tries=40):
    w, h = layer_size
    if w > size or h > size:
        return None
    for _ in range(tries):
        x, y = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
        if _fits((x, y, x + w, y + h), boxes):
            return x, y
    return None


def _mean_under(layer, bg, x, y) -> np.ndarray:
    """Mean background colour under the layer's opaque pixels."""
    alpha = np.asarray(layer.getchannel("A"), np.float32)[..., None] / 255
    region = bg[y:y + layer.height, x:x + layer.width].astype(np.float32)
    return (region * alpha).sum((0, 1)) / max(1e-6, float(alpha.sum()))


def _contrast(layer, bg, x, y, rgb) -> float:
    return float(np.linalg.norm(_mean_under(layer, bg, x, y) - np.asarray(rgb, np.float32)))


def _recolor(p, bg, layer, x, y, rng):
    """Swap the main colour for one that stands out from the background (same shape)."""
    if p["label"] == "face":
        options = [("skin", c) for c in draw.SKIN_RGB]
    else:
        options = [("rgb", draw.FUR_RGB[c], c) for c in COLORS[p["label"]]]
    under = _mean_under(layer, bg, x, y)
    best, best_d = None, -1.0
    for k in rng.permutation(len(options)):
        opt = options[k]
        d = float(np.linalg.norm(under - np.asarray(opt[1], np.float32)))
        if d > best_d:
            best, best_d = opt, d
        if d >= MIN_CONTRAST:
            break
    q = dict(p, **{best[0]: best[1]})
    if len(best) == 3:
        q["color"] = best[2]
    return q


def render_background(index: int, size: int, seed: int,
                      backgrounds: tuple[str, ...] = draw.BACKGROUNDS) -> tuple[str, Image.Image]:
    """The background of scene `index` alone: (kind, RGB image)."""
    kind, bg = draw.draw_background(size, _rngs(seed, index)[1], backgrounds)
    return kind, Image.fromarray(bg)


def render_scene(index: int, size: int, seed: int, with_background: bool = False,
                 backgrounds: tuple[str, ...] = draw.BACKGROUNDS, min_object: float = 0.0,
                 count_probs: tuple[float, ...] = COUNT_PROBS):
    """Scene `index`: (RGB image, objects, captions); objects are
    {"label", "color", "box": [x1, y1, x2, y2]} with exclusive x2/y2.
    with_background=True appends the background kind as a 4th item. `backgrounds` limits the
    background kinds, `min_object` makes every object's nominal side at least that fraction of
    the image (one that cannot fit at that size is left out) and `count_probs` (P(0..4 objects))
    how many objects are planned; all draw from the same random streams as the full world."""
    backgrounds = expand_backgrounds((backgrounds,) if isinstance(backgrounds, str) else backgrounds)
    check_args(1, size, seed, 0.0, 1, backgrounds, min_object, tuple(count_probs))  # as generate() checks them
    if index < 0:
        raise ValueError(f"index must be >= 0 (got {index})")
    floor = max(MIN_SIDE_PX, round(min_object * size))
    r_layout, r_bg, r_obj = _rngs(seed, index)
    kind, bg = draw.draw_background(size, r_bg, backgrounds)
    canvas = Image.fromarray(bg).convert("RGBA")
    objects, boxes = [], []
    for label, color, side in _plan(r_layout, size, min_object, count_probs):
        p = draw.sample_params(label, color, r_obj)
        for _ in range(4):  # shrink and retry when it does not fit beside the others
            w = max(MIN_SIDE_PX, min(size, round(side * p["aspect"])))
            layer = draw.render_object(p, w, max(MIN_SIDE_PX, round(side)))
            pos = _place(layer.size, boxes, size, r_layout)
            if pos is not None:
                break
            side = max(side * 0.8, floor)
        if pos is None:
            continue
        x, y = pos
        if _contrast(layer, bg, x, y, draw.main_rgb(p)) < MIN_CONTRAST:
            p = _recolor(p, bg, layer, x, y, r_obj)
            layer = draw.render_object(p, w, max(MIN_SIDE_PX, round(side)))
        canvas.alpha_composite(layer, (x, y))
        box = [x, y, x + layer.width, y + layer.height]
        boxes.append(box)
        objects.append({"label": label, "color": p["color"], "box": box})
    image = canvas.convert("RGB")
    captions = captions_for(objects, kind, size)
    return (image, objects, captions, kind) if with_background else (image, objects, captions)


# ---------------------------------------------------------------- captions
def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def noun_phrase(label: str, count: int = 1, color: str | None = None, one: bool = False) -> str:
    """"a cat", "an orange cat", "one dog", "two black cats". Faces never take a colour."""
    words = ([color] if color and label != "face" else []) + [label + ("s" if count > 1 else "")]
    head = " ".join(words)
    if count == 1:
        return ("one " if one else _article(head) + " ") + head
    return f"{COUNT_WORDS[count]} {head}"


def captions_for(objects: list[dict], background: str, size: int) -> list[str]:
    """Every caption is true and complete: it names every object in the image
    (relation captions are only made for two-object scenes)."""
    if not objects:
        caps = (["a plain background"] if background in PLAIN_BACKGROUNDS else []) + list(EMPTY_CAPTIONS)
        # the photo prefix as on every other caption, so "a photo of" alone never promises an object
        return caps + [PHOTO_PREFIX + c for c in caps]
    labels = [c for c in CLASSES if any(o["label"] == c for o in objects)]
    count = {c: sum(o["label"] == c for o in objects) for c in labels}
    plain = " and ".join(noun_phrase(c, count[c]) for c in labels)
    groups = []
    for c in labels:
        if c == "face":
            groups.append(noun_phrase(c, count[c]))
            continue
        for col in COLORS[c]:
            k = sum(o["label"] == c and o["color"] == col for o in objects)
            if k:
                groups.append(noun_phrase(c, k, col))
    colored = " and ".join(groups)
    caps = [colored, plain]
    if any(count[c] == 1 for c in labels):
        caps.append(" and ".join(noun_phrase(c, count[c], one=True) for c in labels))
    if len(objects) > 1 and any(count[c] > 1 for c in labels):
        caps.append(" and ".join(noun_phrase(o["label"], 1, o["color"]) for o in objects))
    caps += [PHOTO_PREFIX + plain, PHOTO_PREFIX + colored]
    if len(objects) == 2:
        caps += _relation_captions(*objects, size)
    return list(dict.fromkeys(caps))  # drop duplicates, keep order


def _relation_captions(a: dict, b: dict, size: int) -> list[str]:
    da, db = noun_phrase(a["label"], 1, a["color"]), noun_phrase(b["label"], 1, b["color"])
    if da == db:
        return []  # "a cat to the left of a cat" does not say which is which
    names = [(da, db)]
    if a["label"] != b["label"] and (a["label"], b["label"]) != ("face", "face"):
        names.append((noun_phrase(a["label"]), noun_phrase(b["label"])))
    caps = []
    for rel in RELATIONS:
        if relation_holds(a["box"], b["box"], rel, size):
            caps += [f"{na} {rel} {nb}" for na, nb in names]
        if relation_holds(b["box"], a["box"], rel, size):
            caps += [f"{nb} {rel} {na}" for na, nb in names]
    return caps


# ---------------------------------------------------------------- writing
def split_sizes(n: int, val_fraction: float) -> tuple[int, int]:
    """(train, val). Indices 0..train-1 are train, the rest val; val gets at least
    one image when n >= 2 and val_fraction > 0 (detector training needs one)."""
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n >= 2:
        n_val = min(n - 1, max(1, n_val))
    return n - n_val, n_val


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # other filesystem, or links not allowed
        shutil.copyfile(src, dst)


def yolo_line(cls: int, box, size: int) -> str:
    x1, y1, x2, y2 = box
    return (f"{cls} {(x1 + x2) / 2 / size:.6f} {(y1 + y2) / 2 / size:.6f} "
            f"{(x2 - x1) / size:.6f} {(y2 - y1) / size:.6f}")


def _write_one(index: int, root: Path, size: int, seed: int, n_train: int,
               backgrounds: tuple[str, ...] = draw.BACKGROUNDS, min_object: float = 0.0,
               count_probs: tuple[float, ...] = COUNT_PROBS) -> dict:
    """Render scene `index` and write its PNG, YOLO links and labels."""
    split = "train" if index < n_train else "val"
    image, objects, captions, kind = render_scene(index, size, seed, with_background=True, backgrounds=backgrounds,
                                                  min_object=min_object, count_probs=count_probs)
    name = f"{index:06d}"
    png = root / "images" / split / f"{name}.png"
    image.save(png, format="PNG", compress_level=6)  # PIL writes no time or text chunks
    for task, names in YOLO_TASKS.items():
        _link(png, root / task / "images" / split / f"{name}.png")
        lines = [yolo_line(names.index(o["label"]), o["box"], size) for o in objects if o["label"] in names]
        (root / task / "labels" / split / f"{name}.txt").write_text("".join(line + "\n" for line in lines))
    return {"index": index, "split": split, "name": name, "background": kind,
            "objects": objects, "captions": captions}


# what a scenes dataset is made of; meta.json last (written last, the mark of a whole dataset)
MANAGED = ("images", "annotations", "catdog", "face", "captions.jsonl", "objects.jsonl", "meta.json")
DRAWING, REPLACED = ".drawing", ".replaced"  # inside --out: the new dataset, then the earlier one on its way out


def previous_meta(root: Path) -> dict | None:
    """meta.json of an earlier scenes dataset at root, or None."""
    try:
        meta = json.loads((root / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and str(meta.get("generator", "")).startswith("scenes") else None


def _check_out(root: Path) -> None:
    """--out must be new, empty, or an earlier scenes dataset (whose files are replaced, once the
    new one is whole); anything else is refused. A folder of our files without meta.json is one
    whose run was cut short (before the swap below existed): replaced too."""
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root}: --out exists and is not a folder")
    if root.is_dir() and previous_meta(root) is None:
        names = {p.name for p in root.iterdir()} - {DRAWING, REPLACED}  # a killed run's leftovers
        # killed mid-swap (SIGKILL: Ctrl-C is held off there), or an older version's run cut short
        swapping = (root / REPLACED).is_dir() and names <= set(MANAGED)
        cut_short = {"images", "annotations", "catdog", "face"} <= names <= set(MANAGED)
        if names and not (swapping or cut_short):
            raise FileExistsError(f"{root} is not empty and holds no scenes dataset (meta.json); "
                                  "choose an empty or new --out directory")


def _make_folders(root: Path) -> None:
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        for task in YOLO_TASKS:
            (root / task / "images" / split).mkdir(parents=True, exist_ok=True)
            (root / task / "labels" / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)


def _swap_in(root: Path) -> None:
    """Put the dataset drawn in root/DRAWING in place of an earlier one's files (other files there
    stay). Renames within --out (a mount point, a folder whose parent is not the user's): a kill
    leaves the old dataset or the new one, and meta.json, the mark of a whole dataset, goes first
    and comes last."""
    old = root / REPLACED
    shutil.rmtree(old, ignore_errors=True)
    old.mkdir()
    with ctrl_c_held():  # and the earlier files' deletion: a Ctrl-C would say "as it was" of the new dataset
        for name in reversed(MANAGED):
            if (root / name).exists():
                os.replace(root / name, old / name)
        for name in MANAGED:
            os.replace(root / DRAWING / name, root / name)
        (root / DRAWING).rmdir()
        shutil.rmtree(old)


def _dump(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1) + "\n")


def _coco(records: list[dict], split: str, size: int) -> dict:
    images, anns = [], []
    for r in records:
        if r["split"] != split:
            continue
        image_id = r["index"] + 1  # COCO ids start at 1; some tools treat 0 as "none"
        images.append({"id": image_id, "file_name": f"{r['name']}.png", "width": size, "height": size,
                       "captions": r["captions"]})
        for o in r["objects"]:
            x1, y1, x2, y2 = o["box"]
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": COCO_IDS[o["label"]],
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                         "iscrowd": 0, "color": o["color"]})
    return {"info": {"description": f"gendet procedural scenes ({split})", "version": GENERATOR},
            "licenses": [], "images": images, "annotations": anns,
            "categories": [{"id": COCO_IDS[c], "name": c, "supercategory": "person" if c == "face" else "animal"}
                           for c in CLASSES]}


def read_objects(path: Path) -> list[dict]:
    """The rows of an objects.jsonl as _write_index_files writes them; blank lines skipped, a bad
    line named by file and line number (a ValueError)."""
    rows = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise ValueError(f"{path}:{number}: not JSON ({e})") from None
        if not isinstance(row, dict) or "image" not in row:
            raise ValueError(f"{path}:{number}: no 'image' field")
        rows.append(row)
    return rows


def _write_index_files(root: Path, records: list[dict], n: int, size: int, seed: int,
                       val_fraction: float, n_train: int, n_val: int, backgrounds: tuple[str, ...],
                       min_object: float, count_probs: tuple[float, ...]) -> None:
    with open(root / "captions.jsonl", "w") as cap, open(root / "objects.jsonl", "w") as obj:
        for r in records:
            image = f"images/{r['split']}/{r['name']}.png"
            cap.write(json.dumps({"image": image, "split": r["split"], "captions": r["captions"]}) + "\n")
            obj.write(json.dumps({"image": image, "split": r["split"], "width": size, "height": size,
                                  "background": r["background"], "objects": r["objects"]}) + "\n")
    for split in ("train", "val"):
        _dump(root / "annotations" / f"instances_{split}.json", _coco(records, split, size))
    for task, names in YOLO_TASKS.items():
        data = {"train": "images/train", "val": "images/val", "names": dict(enumerate(names)), "task_name": task}
        (root / task / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    counts = {s: {c: sum(o["label"] == c for r in records if r["split"] == s for o in r["objects"])
                  for c in CLASSES} for s in ("train", "val")}
    _dump(root / "meta.json", {
        "generator": GENERATOR, "seed": seed, "n": n, "size": size, "val_fraction": val_fraction,
        "backgrounds": list(backgrounds), "min_object": min_object,
        "count_probs": list(count_probs), "splits": {"train": n_train, "val": n_val},
        "objects": {c: counts["train"][c] + counts["val"][c] for c in CLASSES},
        "objects_per_split": counts,
        "empty_images": sum(not r["objects"] for r in records),
        "classes": list(CLASSES), "colors": {c: list(v) for c, v in COLORS.items()},
    })


def expand_backgrounds(kinds) -> tuple[str, ...]:
    """Background kinds with 'plain' standing for PLAIN_BACKGROUNDS; repeats dropped, order kept."""
    out = []
    for kind in kinds:
        out += PLAIN_BACKGROUNDS if kind == "plain" else [kind]
    return tuple(dict.fromkeys(out))


def check_args(n: int, size: int, seed: int, val_fraction: float, workers: int,
               backgrounds: tuple[str, ...] = draw.BACKGROUNDS, min_object: float = 0.0,
               count_probs: tuple[float, ...] = COUNT_PROBS) -> None:
    """Raise ValueError with a readable message for arguments generate() cannot use."""
    if (len(count_probs) != MAX_OBJECTS + 1 or any(not 0 <= p <= 1 for p in count_probs)
            or abs(sum(count_probs) - 1) > 1e-8):  # numpy's own tolerance is ~1.5e-8
        raise ValueError(f"count probs must be {MAX_OBJECTS + 1} numbers in [0, 1], P(0..{MAX_OBJECTS} objects), "
                         f"that sum to 1 (got {', '.join(map(str, count_probs))}: sum {sum(count_probs):.9g})")
    if not 0 <= min_object <= 0.6:  # four objects of 0.6 no longer fit side by side
        raise ValueError(f"min object must be in [0, 0.6] of the image side (got {min_object})")
    unknown = [b for b in expand_backgrounds(backgrounds) if b not in draw.BACKGROUNDS]
    if unknown or not backgrounds:
        raise ValueError(f"backgrounds must be some of {', '.join(draw.BACKGROUNDS + ('plain',))} "
                         f"(got {', '.join(backgrounds) or 'none'})")
    if n < 1:
        raise ValueError(f"n must be at least 1 (got {n})")
    if size < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE} pixels (got {size})")
    if seed < 0:
        raise ValueError(f"seed must be >= 0 (got {seed})")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val fraction must be in [0, 1) (got {val_fraction})")
    if workers < 1:
        raise ValueError(f"workers must be at least 1 (got {workers})")


def generate(out_dir, n: int, size: int = 128, seed: int = 0, val_fraction: float = 0.1,
             workers: int = 1, progress: bool = True, backgrounds: tuple[str, ...] = draw.BACKGROUNDS,
             min_object: float = 0.0, count_probs: tuple[float, ...] = COUNT_PROBS) -> Path:
    """Write a scenes dataset root (datasets/FORMATS.md) and return its path. `out_dir` is new,
    empty, or an earlier scenes dataset, which is replaced (another folder is refused). `backgrounds`
    limits the background kinds (e.g. PLAIN_BACKGROUNDS; "plain" stands for those), `min_object` the smallest object
    (a fraction of the image side): easier worlds for a small generator; `count_probs`
    reweights how many objects a scene has, P(0..4), e.g. more two-object scenes, where the
    relation captions are."""
    if isinstance(backgrounds, str):  # one kind: "plain" read letter by letter was "p, l, a, i, n"
        backgrounds = (backgrounds,)
    backgrounds, count_probs = expand_backgrounds(backgrounds), tuple(float(p) for p in count_probs)
    check_args(n, size, seed, val_fraction, workers, backgrounds, min_object, count_probs)
    root = Path(out_dir)
    _check_out(root)
    made = not root.exists()
    with gendet_env.held(root, "datasets.scenes"):  # a second run drawing into the same --out is refused
        # drawn in --out/.drawing and swapped in whole: a run cut short left a folder that a rerun
        # refused, and the earlier dataset there already deleted
        staged = root / DRAWING
        shutil.rmtree(staged, ignore_errors=True)  # a run killed before it could clean up
        _make_folders(staged)
        n_train, n_val = split_sizes(n, val_fraction)
        job = partial(_write_one, root=staged, size=size, seed=seed, n_train=n_train, backgrounds=backgrounds,
                      min_object=min_object, count_probs=count_probs)
        bar = tqdm(total=n, desc="scenes", unit="img", disable=not progress)
        records = []
        try:
            if workers == 1:
                for i in range(n):
                    records.append(job(i))
                    bar.update()
            else:  # the workers leave Ctrl-C to this process, which stops them (each printed a traceback)
                with multiprocessing.get_context("fork").Pool(workers, initializer=signal.signal,
                                                              initargs=(signal.SIGINT, signal.SIG_IGN)) as pool:
                    for rec in pool.imap(job, range(n), chunksize=32):  # imap keeps index order
                        records.append(rec)
                        bar.update()
            bar.close()
            _write_index_files(staged, records, n, size, seed, val_fraction, n_train, n_val, backgrounds, min_object,
                               count_probs)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            if made and not any(root.iterdir()):
                root.rmdir()
            raise
        _swap_in(root)
        return root


# ---------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m datasets.scenes",
        description="Generate seeded procedural scenes of cats, dogs and human faces with captions, "
                    "COCO annotations and YOLO datasets (layout: datasets/FORMATS.md).")
    ap.add_argument("--out", required=True, type=Path,
                    help="dataset root to write (empty, new, or an earlier scenes root, which is replaced)")
    ap.add_argument("--n", required=True, type=int, help="number of images (>= 1)")
    ap.add_argument("--size", type=int, default=128, help=f"image side in pixels (>= {MIN_SIZE}, default 128)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (>= 0, default 0)")
    ap.add_argument("--val-fraction", type=float, default=0.1, help="share of images in the val split (default 0.1)")
    ap.add_argument("--workers", type=int, default=1, help="processes; output does not depend on it (default 1)")
    ap.add_argument("--backgrounds", default=",".join(draw.BACKGROUNDS),
                    help="comma-separated background kinds to draw from (default: all, "
                         f"{','.join(draw.BACKGROUNDS)}; 'plain' stands for {','.join(PLAIN_BACKGROUNDS)}, "
                         "alone or in the list)")
    ap.add_argument("--min-object", type=float, default=0.0,
                    help="smallest nominal object side as a fraction of the image side, 0-0.6 (default 0: "
                         "the world's own 0.12-0.15; the tight box can be a little smaller)")
    ap.add_argument("--count-probs", default=",".join(f"{p:g}" for p in COUNT_PROBS),
                    help="comma-separated P(0..4 objects) per scene, summing to 1 (default "
                         f"{','.join(f'{p:g}' for p in COUNT_PROBS)})")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    backgrounds = tuple(b.strip() for b in args.backgrounds.split(",") if b.strip())
    try:
        count_probs = tuple(float(p) for p in args.count_probs.split(","))
    except ValueError:
        ap.error(f"bad argument: --count-probs must be comma-separated numbers (got {args.count_probs!r})")
    try:
        check_args(args.n, args.size, args.seed, args.val_fraction, args.workers, backgrounds, args.min_object,
                   count_probs)
    except ValueError as e:
        ap.error(f"bad argument: {e}")
    previous = previous_meta(args.out)
    try:
        root = generate(args.out, args.n, args.size, args.seed, args.val_fraction, args.workers,
                        progress=not args.quiet, backgrounds=backgrounds, min_object=args.min_object,
                        count_probs=count_probs)
    except (FileExistsError, gendet_env.RunFolderError) as e:
        ap.error(str(e))
    except KeyboardInterrupt:
        print(f"\ninterrupted: {args.out} is as it was (the scenes are drawn in it, in {DRAWING}/, and put in place "
              "when all are done); run the same command again", file=sys.stderr)
        return 130
    if previous is not None:  # the same --out twice is allowed (scripts resume), but never silently
        print(f"note: replaced the existing scenes dataset at {root} ({previous.get('n', '?')} images, "
              f"seed {previous.get('seed', '?')})", file=sys.stderr)
    print(f"wrote {args.n} scene{'s' * (args.n != 1)} to {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
