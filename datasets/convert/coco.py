"""COCO instances JSON -> YOLO catdog (cat=0, dog=1, matched by category name)."""

from __future__ import annotations

import contextlib
import io
import random
import re
from collections import defaultdict
from pathlib import Path

from datasets.convert.common import (
    CATDOG_NAMES, SKIP_CROWD, SKIP_DEGENERATE, SKIP_MISSING_IMAGE, SKIP_NEGATIVE, SKIP_UNKNOWN_IMAGE_ID,
    SKIP_OTHER_YEAR, SKIP_UNSPLIT_FILE, ConvertError, ConvertReport, load_json, number, progress_iter,
    split_keys)
from datasets.convert.writers import YoloWriter


def _coco_split_of(tag: str) -> str | None:
    tag = tag.lower()
    if tag.startswith("train"):
        return "train"
    if tag.startswith("val"):
        return "val"
    return None


def coco_sources(src, images, kind: str, report: ConvertReport) -> tuple[list[tuple[Path, str | None, Path]], bool]:
    """[(json, split-from-name, image folder)] to read, and whether the source has its own
    train/val split. Files left out (not train/val beside train/val ones; an older COCO year
    beside a newer) are counted and noted in `report`."""
    src = Path(src)
    if src.is_file():
        files = [src]
        root = src.parent.parent if src.parent.name == "annotations" else src.parent
    elif src.is_dir():
        files = sorted((src / "annotations").glob(f"{kind}_*.json")) + sorted(src.glob(f"{kind}_*.json"))
        root = src
        if not files:
            raise ConvertError(f"no {kind}_*.json in this folder or its annotations/ folder", src)
    else:
        raise ConvertError("no such file or folder", src)
    tags = {f: f.stem[len(kind) + 1:] if f.stem.startswith(kind + "_") else f.stem for f in files}
    years = {f: m.group(1) for f, t in tags.items() if (m := re.search(r"((?:19|20)\d\d)$", t))}
    if len(set(years.values())) > 1:  # 2014 and 2017 hold the same photos, split otherwise: one year only
        newest = max(years.values())
        for f in [f for f in files if years.get(f, newest) != newest]:
            files.remove(f)
            report.skip(SKIP_OTHER_YEAR, file=f)
            report.notes.append(f"ignored {f.name}: COCO {years[f]} beside {newest}, whose photos it shares "
                                f"(mixing years would put one photo in both train and val)")
    out = []
    for f in files:
        tag = tags[f]
        split = _coco_split_of(tag)
        if images is not None:
            img_dir = Path(images)
            if (img_dir / tag).is_dir() and len(files) > 1:
                img_dir = img_dir / tag
        else:
            candidates = [root / tag, root / "images" / tag]
            if split:
                candidates.append(root / "images" / split)
            candidates += [root / "images", root]
            img_dir = next((c for c in candidates if c.is_dir()), None)
            if img_dir is None:
                raise ConvertError("cannot find the image folder; pass --images DIR", f)
            if img_dir in (root / "images", root) and len(files) > 1:
                report.notes.append(f"{f.name}: no {tag}/ folder; its images are looked for in {img_dir}")
        out.append((f, split, img_dir))
    has_split = {"train", "val"} <= {s for _, s, _ in out}
    if has_split:
        for f in [f for f, s, _ in out if s is None]:
            report.skip(SKIP_UNSPLIT_FILE, file=f)
            report.notes.append(f"ignored {f.name}: not a train/val file")
        out = [o for o in out if o[1] is not None]
    return out, has_split


def load_coco(path: Path, *, captions: bool = False):
    """Load and validate a COCO json, return a pycocotools COCO index."""
    from pycocotools.coco import COCO

    data = load_json(path)
    if not isinstance(data, dict):
        raise ConvertError(f"expected a JSON object at the top, got {type(data).__name__}", path)
    for key in ("images", "annotations") + (() if captions else ("categories",)):
        if not isinstance(data.get(key), list):
            raise ConvertError(f"missing or non-list '{key}'", path)
    seen = {}
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
            raise ConvertError("image record needs 'id' and 'file_name'", path, record=f"images[{i}]")
        if img["id"] in seen:  # pycocotools would keep the last one and merge their annotations
            raise ConvertError(f"image id {img['id']!r} is also images[{seen[img['id']]}]'s", path,
                               record=f"images[{i}]")
        seen[img["id"]] = i
    declared = set()
    if not captions:
        for i, cat in enumerate(data["categories"]):
            if not isinstance(cat, dict) or "id" not in cat or not isinstance(cat.get("name"), str):
                raise ConvertError("category needs 'id' and 'name'", path, record=f"categories[{i}]")
            declared.add(cat["id"])
    for i, ann in enumerate(data["annotations"]):
        rec = f"annotations[{i}]" + (f" id={ann.get('id')}" if isinstance(ann, dict) else "")
        if not isinstance(ann, dict) or "image_id" not in ann:
            raise ConvertError("annotation needs 'image_id'", path, record=rec)
        if captions:
            if not isinstance(ann.get("caption"), str):
                raise ConvertError("annotation needs a string 'caption'", path, record=rec)
            continue
        if "category_id" not in ann:
            raise ConvertError("annotation needs 'category_id'", path, record=rec)
        if ann["category_id"] not in declared:  # its object's class is unknown, so no image is a sure negative
            raise ConvertError(f"category_id {ann['category_id']!r} is not in 'categories'", path, record=rec)
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or any(number(v) is None for v in bbox):
            raise ConvertError(f"'bbox' must be 4 numbers [x, y, w, h], got {bbox!r}", path, record=rec)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


def _sample_negatives(negatives: list, keep: int, seed: int) -> set:
    if keep <= 0 or not negatives:
        return set()
    ordered = sorted(negatives, key=str)
    random.Random(seed + 1).shuffle(ordered)
    return set(ordered[:keep])


def convert_coco(src, out, *, images=None, keep_negatives: int = 0, val_fraction: float = 0.1,
                 seed: int = 0, copy: bool = False, overwrite: bool = False,
                 progress: bool = False) -> ConvertReport:
    """COCO instances -> YOLO ``catdog``. ``src``: a COCO root (annotations/instances_*.json)
    or one instances json (then ``images`` names the image folder unless it can be found)."""
    if keep_negatives < 0:
        raise ValueError("keep_negatives must be >= 0")
    report = ConvertReport("coco", str(src), str(out), "catdog")
    sources, has_split = coco_sources(src, images, "instances", report)
    positives, negatives = [], []  # (key, split-or-None, coco, img_dir, image_id, boxes)
    for path, split, img_dir in sources:
        coco = load_coco(path)
        want = {}
        for cat in coco.dataset["categories"]:
            name = cat["name"].strip().lower()
            if name in ("cat", "dog"):
                want[cat["id"]] = 0 if name == "cat" else 1
        if not want:
            raise ConvertError("no 'cat' or 'dog' category", path, record="categories")
        for missing in {"cat", "dog"} - {CATDOG_NAMES[c] for c in want.values()}:
            report.notes.append(f"{path.name} has no '{missing}' category")
        ann_ids = coco.getAnnIds(catIds=list(want), iscrowd=None)
        by_image = defaultdict(list)
        for ann in coco.loadAnns(ann_ids):
            if ann["image_id"] not in coco.imgs:
                report.skip(SKIP_UNKNOWN_IMAGE_ID, file=f"{path} (annotation id={ann.get('id')})")
                continue
            by_image[ann["image_id"]].append(ann)
        for image_id in sorted(coco.getImgIds(), key=str):
            key = f"{path.name}:{image_id}"
            entry = (key, split if has_split else None, coco, img_dir, image_id, by_image.get(image_id, []), want)
            (positives if entry[5] else negatives).append(entry)
    kept_neg = _sample_negatives([e[0] for e in negatives], keep_negatives, seed)
    report.skip(SKIP_NEGATIVE, len(negatives) - len(kept_neg))
    entries = positives + [e for e in negatives if e[0] in kept_neg]
    if not has_split:
        assign = split_keys([e[0] for e in entries], val_fraction, seed)
    with YoloWriter(out, report, "catdog", copy=copy, overwrite=overwrite) as writer:
        for key, split, coco, img_dir, image_id, anns, want in progress_iter(entries, progress, "coco", len(entries)):
            split = split or assign[key]
            info = coco.imgs[image_id]
            image = img_dir / info["file_name"]
            if not image.is_file():
                report.skip(SKIP_MISSING_IMAGE, file=image)
                continue
            boxes = []
            for ann in anns:
                if ann.get("iscrowd", 0):
                    report.skip(SKIP_CROWD, file=image)
                    continue
                x, y, w, h = (float(v) for v in ann["bbox"])
                if w <= 0 or h <= 0:
                    report.skip(SKIP_DEGENERATE, file=image)
                    continue
                boxes.append((want[ann["category_id"]], x, y, x + w, y + h))
            width, height = info.get("width"), info.get("height")
            if number(width) is None or number(height) is None or width <= 0 or height <= 0:
                width = height = None
            writer.add(split, image, width, height, boxes, negative=not anns)
        return writer.finish()
