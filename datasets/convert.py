"""Convert real dataset formats into gendet's on-disk formats (datasets/FORMATS.md).

Detection (YOLO dataset, one task):

* ``coco``  COCO instances JSON -> ``catdog`` (cat=0, dog=1, matched by category name)
* ``pets``  Oxford-IIIT Pet (VOC XML head boxes + trainval.txt / test.txt) -> ``catdog``
* ``wider`` WIDER FACE (wider_face_split/*_bbx_gt.txt) -> ``face``

Captions (captions dataset: ``DIR/captions.jsonl`` + ``DIR/images/{train,val}/``):

* ``coco-captions`` COCO captions_*.json
* ``cub``           CUB-200 / Oxford-102 text layout: images/<class>/<name>.jpg + text[_c10]/<class>/<name>.txt
* ``folder``        a folder of images + captions.jsonl ({"image", "captions"|"caption"[, "split"]})

Command line::

    python -m datasets.convert coco /data/coco --out data/coco_catdog --keep-negatives 500
    python -m datasets.convert pets /data/oxford-iiit-pet --out data/pets_catdog
    python -m datasets.convert wider /data/WIDER --out data/wider_face
    python -m datasets.convert cub /data/cub_200 --out data/cub_captions

Python::

    from datasets.convert import convert
    report = convert("wider", "/data/WIDER", "data/wider_face", val_fraction=0.1)
    print(report.summary())

Rules every converter follows:

* Images are hard-linked into ``DIR/images/<split>/`` (copied where a link fails, or
  always with ``copy=True``); their file type and extension are kept (.jpg stays .jpg).
  Names are flattened (``<basename>``; on a clash the parent folder is prefixed).
* Boxes are clipped to the image and written as YOLO ``cls cx cy w h`` normalised,
  6 decimals. A box that is empty after clipping is skipped and counted.
* Malformed input raises :class:`ConvertError` naming the file and the line (text
  formats) or the record (JSON / XML). Legitimately skippable records (a missing image,
  an invalid box, a crowd box, ...) are skipped and COUNTED in the report
  (``report.skipped``: reason -> count), which is also written to
  ``DIR/convert_report.json``.
* Splits: an existing train/val split in the source is kept; otherwise the records are
  split by ``val_fraction`` with a seeded shuffle of the sorted record keys
  (deterministic: same input + seed -> same split).
"""

from __future__ import annotations

import gendet_env  # noqa: F401  (offline-safe environment, as every entry point)

import argparse
import contextlib
import inspect
import io
import json
import os
import random
import re
import shutil
import sys
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

__all__ = [
    "ConvertError",
    "ConvertReport",
    "FORMATS",
    "convert",
    "convert_coco",
    "convert_pets",
    "convert_wider",
    "convert_coco_captions",
    "convert_cub",
    "convert_folder",
    "split_keys",
    "main",
]

SPLITS = ("train", "val")
CATDOG_NAMES = {0: "cat", 1: "dog"}
FACE_NAMES = {0: "face"}
TASK_NAMES = {"catdog": CATDOG_NAMES, "face": FACE_NAMES}
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")

# skip reasons (report.skipped keys); one place so tests and consumers can refer to them
SKIP_MISSING_IMAGE = "missing image file"
SKIP_UNREADABLE_IMAGE = "unreadable image file"
SKIP_CROWD = "crowd box (iscrowd=1)"
SKIP_DEGENERATE = "degenerate box (w or h <= 0)"
SKIP_OUTSIDE = "box empty after clipping to the image"
SKIP_NO_USABLE_BOX = "image with objects but no usable box"
SKIP_NEGATIVE = "negative image not kept (see --keep-negatives)"
SKIP_UNKNOWN_IMAGE_ID = "annotation for an unknown image id"
SKIP_NO_XML = "no head box (no xml)"
SKIP_XML_NO_OBJECTS = "no head box (xml without objects)"
SKIP_DUPLICATE = "duplicate list entry"
SKIP_INVALID_FACE = "invalid face (invalid=1)"
SKIP_NO_CAPTIONS = "no captions"
SKIP_NO_CAPTION_FILE = "no caption file"
SKIP_UNSPLIT_FILE = "annotation file outside train/val ignored"


class ConvertError(ValueError):
    """Malformed input. The message names the file and the line or record."""

    def __init__(self, message: str, path: str | os.PathLike | None = None,
                 line: int | None = None, record: str | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        self.record = record
        where = ""
        if self.path is not None:
            where = self.path
            if line is not None:
                where += f":{line}"
            if record is not None:
                where += f" ({record})"
        elif record is not None:
            where = record
        super().__init__(f"{where}: {message}" if where else message)


# ----------------------------------------------------------------------------- report


@dataclass
class ConvertReport:
    """What a conversion wrote and what it skipped (reason -> count)."""

    format: str
    src: str
    out: str
    task: str  # "catdog", "face" or "captions"
    images: dict = field(default_factory=lambda: {s: 0 for s in SPLITS})
    boxes: dict = field(default_factory=lambda: {s: 0 for s in SPLITS})
    negatives: dict = field(default_factory=lambda: {s: 0 for s in SPLITS})
    captions: dict = field(default_factory=lambda: {s: 0 for s in SPLITS})
    boxes_per_class: Counter = field(default_factory=Counter)
    boxes_clipped: int = 0
    skipped: Counter = field(default_factory=Counter)
    warnings: Counter = field(default_factory=Counter)
    notes: list = field(default_factory=list)

    @property
    def images_written(self) -> int:
        return sum(self.images.values())

    @property
    def boxes_written(self) -> int:
        return sum(self.boxes.values())

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def skip(self, reason: str, n: int = 1) -> None:
        if n:
            self.skipped[reason] += n

    def to_dict(self) -> dict:
        names = TASK_NAMES.get(self.task, {})
        return {
            "format": self.format,
            "src": self.src,
            "out": self.out,
            "task": self.task,
            "images_written": self.images_written,
            "images": dict(self.images),
            "negatives": dict(self.negatives),
            "boxes_written": self.boxes_written,
            "boxes": dict(self.boxes),
            "boxes_per_class": {names.get(k, str(k)): v for k, v in sorted(self.boxes_per_class.items())},
            "boxes_clipped": self.boxes_clipped,
            "captions": dict(self.captions),
            "skipped": dict(sorted(self.skipped.items())),
            "skipped_total": self.skipped_total,
            "warnings": dict(sorted(self.warnings.items())),
            "notes": list(self.notes),
        }

    def write(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    def summary(self) -> str:
        split = lambda d: ", ".join(f"{s} {d.get(s, 0)}" for s in SPLITS)  # noqa: E731
        lines = [f"converted {self.format} {self.src} -> {self.out} ({self.task})",
                 f"  images written: {self.images_written} ({split(self.images)})"]
        if self.task == "captions":
            lines.append(f"  captions written: {sum(self.captions.values())} ({split(self.captions)})")
        else:
            lines.append(f"  negatives (no boxes): {sum(self.negatives.values())} ({split(self.negatives)})")
            lines.append(f"  boxes written: {self.boxes_written} ({split(self.boxes)})")
            names = TASK_NAMES.get(self.task, {})
            if self.boxes_per_class:
                per = ", ".join(f"{names.get(k, k)} {v}" for k, v in sorted(self.boxes_per_class.items()))
                lines.append(f"  boxes per class: {per}")
            if self.boxes_clipped:
                lines.append(f"  boxes clipped to the image: {self.boxes_clipped}")
        if self.skipped:
            lines.append(f"  skipped: {self.skipped_total}")
            lines += [f"    {reason}: {n}" for reason, n in sorted(self.skipped.items())]
        else:
            lines.append("  skipped: 0")
        for reason, n in sorted(self.warnings.items()):
            lines.append(f"  warning: {reason}: {n}")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


# ----------------------------------------------------------------------------- helpers


def _progress(iterable: Iterable, progress: bool, desc: str, total: int | None = None):
    if not progress:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True)


def split_keys(keys: Iterable, val_fraction: float, seed: int = 0) -> dict:
    """Deterministic train/val assignment: key -> "train" | "val".

    The keys are sorted (by ``str``) and shuffled with ``random.Random(seed)``; the first
    ``round(n * val_fraction)`` go to val (at least 1 and at most n-1 when
    ``val_fraction > 0`` and n >= 2).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ordered = sorted(set(keys), key=str)
    random.Random(seed).shuffle(ordered)
    n = len(ordered)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    return {k: ("val" if i < n_val else "train") for i, k in enumerate(ordered)}


def _image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the header only; None when PIL cannot read it."""
    from PIL import Image

    try:
        with Image.open(path) as im:  # lazy: reads the header, not the pixels
            return im.size
    except (OSError, SyntaxError, ValueError):
        return None


def _load_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConvertError(f"not UTF-8 text ({e.reason} at byte {e.start})", path) from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConvertError(f"invalid JSON: {e.msg} (column {e.colno})", path, line=e.lineno) from e


def _read_lines(path: Path) -> list[str]:
    data = path.read_bytes()
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConvertError(f"not UTF-8 text ({e.reason})", path, line=line) from e


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return None


# ----------------------------------------------------------------------------- writers


class _Output:
    """Common output handling: the folder, unique image names, linking/copying."""

    OWNED = ("images", "labels", "data.yaml", "captions.jsonl", "convert_report.json")

    def __init__(self, out, report: ConvertReport, *, copy: bool = False, overwrite: bool = False):
        self.out = Path(out)
        self.report = report
        self.copy = copy
        self._used: dict[str, set[str]] = {s: set() for s in SPLITS}
        if self.out.exists() and not self.out.is_dir():
            raise ConvertError("the output path exists and is not a folder", self.out)
        existing = [name for name in self.OWNED if (self.out / name).exists()]
        if existing:
            if not overwrite:
                raise ConvertError(
                    f"output folder already holds {', '.join(existing)}; pass --overwrite (overwrite=True) "
                    "to replace them", self.out)
            for name in existing:
                p = self.out / name
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        for split in SPLITS:
            (self.out / "images" / split).mkdir(parents=True, exist_ok=True)

    def _unique_name(self, split: str, src: Path) -> str:
        used = self._used[split]
        stem, ext = src.stem, src.suffix.lower() or ".jpg"
        candidates = [stem]
        parents = [p for p in src.parent.parts[-2:] if p not in ("/", "")]
        if parents:
            candidates.append(f"{parents[-1]}__{stem}")
        if len(parents) > 1:
            candidates.append(f"{parents[0]}__{parents[1]}__{stem}")
        for cand in candidates:
            cand = re.sub(r"[^\w.\-]+", "_", cand)
            if cand not in used:
                used.add(cand)
                return cand + ext
        base, k = re.sub(r"[^\w.\-]+", "_", stem), 1
        while f"{base}_{k}" in used:
            k += 1
        used.add(f"{base}_{k}")
        return f"{base}_{k}{ext}"

    def place_image(self, split: str, src: Path) -> str:
        """Link (or copy) src under images/<split>/; returns the path relative to out."""
        name = self._unique_name(split, src)
        dst = self.out / "images" / split / name
        if dst.exists() or dst.is_symlink():
            dst.unlink()
        if self.copy:
            shutil.copy2(src, dst)
        else:
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
        return f"images/{split}/{name}"

    def _finish_report(self) -> ConvertReport:
        self.report.write(self.out / "convert_report.json")
        return self.report


class YoloWriter(_Output):
    """Writes a YOLO dataset (FORMATS.md): images/, labels/, data.yaml."""

    def __init__(self, out, report: ConvertReport, task: str, **kw):
        super().__init__(out, report, **kw)
        self.task = task
        self.names = TASK_NAMES[task]
        for split in SPLITS:
            (self.out / "labels" / split).mkdir(parents=True, exist_ok=True)

    def label_lines(self, boxes, width: int, height: int) -> list[str]:
        """boxes: (cls, x1, y1, x2, y2) in pixels (x2/y2 exclusive) -> YOLO lines; clips, counts."""
        lines = []
        for cls, x1, y1, x2, y2 in boxes:
            cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
            cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
            if cx2 - cx1 <= 0 or cy2 - cy1 <= 0:
                self.report.skip(SKIP_OUTSIDE)
                continue
            if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
                self.report.boxes_clipped += 1
            cx, cy = (cx1 + cx2) / 2 / width, (cy1 + cy2) / 2 / height
            w, h = (cx2 - cx1) / width, (cy2 - cy1) / height
            lines.append(f"{int(cls)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
        return lines

    def add(self, split: str, image: Path, width: int | None, height: int | None, boxes,
            *, negative: bool = False) -> bool:
        """Write one image + its label file. ``negative`` marks an image that has no objects
        at all; an image that had objects but whose boxes were all dropped is skipped."""
        if not image.is_file():
            self.report.skip(SKIP_MISSING_IMAGE)
            return False
        if not width or not height:
            size = _image_size(image)
            if size is None:
                self.report.skip(SKIP_UNREADABLE_IMAGE)
                return False
            width, height = size
        lines = [] if negative else self.label_lines(boxes, width, height)
        if not negative and not lines:
            self.report.skip(SKIP_NO_USABLE_BOX)
            return False
        rel = self.place_image(split, image)
        label = self.out / "labels" / split / (Path(rel).stem + ".txt")
        label.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        self.report.images[split] += 1
        self.report.boxes[split] += len(lines)
        if not lines:
            self.report.negatives[split] += 1
        for line in lines:
            self.report.boxes_per_class[int(line.split(" ", 1)[0])] += 1
        return True

    def finish(self) -> ConvertReport:
        import yaml

        data = {"train": "images/train", "val": "images/val",
                "names": dict(self.names), "task_name": self.task}
        (self.out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        for split in SPLITS:
            if not self.report.images[split]:
                self.report.notes.append(f"the {split} split is empty")
        return self._finish_report()


class CaptionsWriter(_Output):
    """Writes a captions dataset (FORMATS.md): images/{train,val}/ + captions.jsonl."""

    def __init__(self, out, report: ConvertReport, **kw):
        super().__init__(out, report, **kw)
        self.rows: list[dict] = []

    def add(self, split: str, image: Path, captions: list[str]) -> bool:
        captions = [c.strip() for c in captions if c and c.strip()]
        if not captions:
            self.report.skip(SKIP_NO_CAPTIONS)
            return False
        if not image.is_file():
            self.report.skip(SKIP_MISSING_IMAGE)
            return False
        rel = self.place_image(split, image)
        self.rows.append({"image": rel, "split": split, "captions": captions})
        self.report.images[split] += 1
        self.report.captions[split] += len(captions)
        return True

    def finish(self) -> ConvertReport:
        with open(self.out / "captions.jsonl", "w", encoding="utf-8") as f:
            for row in self.rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        for split in SPLITS:
            if not self.report.images[split]:
                self.report.notes.append(f"the {split} split is empty")
        return self._finish_report()


# ----------------------------------------------------------------------------- COCO


def _coco_split_of(tag: str) -> str | None:
    tag = tag.lower()
    if tag.startswith("train"):
        return "train"
    if tag.startswith("val"):
        return "val"
    return None


def _coco_sources(src, images, kind: str) -> tuple[list[tuple[Path, str | None, Path]], bool]:
    """[(json, split-from-name, image folder)], and whether the source has its own train/val split."""
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
    out = []
    for f in files:
        tag = f.stem[len(kind) + 1:] if f.stem.startswith(kind + "_") else f.stem
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
        out.append((f, split, img_dir))
    splits = {s for _, s, _ in out}
    return out, {"train", "val"} <= splits


def _load_coco(path: Path, *, captions: bool = False):
    """Load and validate a COCO json, return a pycocotools COCO index."""
    from pycocotools.coco import COCO

    data = _load_json(path)
    if not isinstance(data, dict):
        raise ConvertError(f"expected a JSON object at the top, got {type(data).__name__}", path)
    for key in ("images", "annotations") + (() if captions else ("categories",)):
        if not isinstance(data.get(key), list):
            raise ConvertError(f"missing or non-list '{key}'", path)
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
            raise ConvertError("image record needs 'id' and 'file_name'", path, record=f"images[{i}]")
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
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or any(_num(v) is None for v in bbox):
            raise ConvertError(f"'bbox' must be 4 numbers [x, y, w, h], got {bbox!r}", path, record=rec)
    if not captions:
        for i, cat in enumerate(data["categories"]):
            if not isinstance(cat, dict) or "id" not in cat or not isinstance(cat.get("name"), str):
                raise ConvertError("category needs 'id' and 'name'", path, record=f"categories[{i}]")
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
    sources, has_split = _coco_sources(src, images, "instances")
    report = ConvertReport("coco", str(src), str(out), "catdog")
    if keep_negatives < 0:
        raise ValueError("keep_negatives must be >= 0")
    positives, negatives = [], []  # (key, split-or-None, coco, img_dir, image_id, boxes)
    for path, split, img_dir in sources:
        if has_split and split is None:
            report.skip(SKIP_UNSPLIT_FILE)
            report.notes.append(f"ignored {path.name}: not a train/val file")
            continue
        coco = _load_coco(path)
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
                report.skip(SKIP_UNKNOWN_IMAGE_ID)
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
    writer = YoloWriter(out, report, "catdog", copy=copy, overwrite=overwrite)
    for key, split, coco, img_dir, image_id, anns, want in _progress(entries, progress, "coco", len(entries)):
        split = split or assign[key]
        info = coco.imgs[image_id]
        image = img_dir / info["file_name"]
        if not image.is_file():
            report.skip(SKIP_MISSING_IMAGE)
            continue
        boxes = []
        for ann in anns:
            if ann.get("iscrowd", 0):
                report.skip(SKIP_CROWD)
                continue
            x, y, w, h = (float(v) for v in ann["bbox"])
            if w <= 0 or h <= 0:
                report.skip(SKIP_DEGENERATE)
                continue
            boxes.append((want[ann["category_id"]], x, y, x + w, y + h))
        width, height = info.get("width"), info.get("height")
        if _num(width) is None or _num(height) is None or width <= 0 or height <= 0:
            width = height = None
        writer.add(split, image, width, height, boxes, negative=not anns)
    return writer.finish()


# ----------------------------------------------------------------------------- Oxford-IIIT Pet


def _parse_pets_list(path: Path) -> list[tuple[str, int, int]]:
    rows = []
    for lineno, raw in enumerate(_read_lines(path), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 4:
            raise ConvertError(f"expected 4 fields 'name class_id species breed_id', got {len(fields)}: {line!r}",
                               path, line=lineno)
        try:
            class_id, species, breed = (int(v) for v in fields[1:])
        except ValueError:
            raise ConvertError(f"class_id, species and breed_id must be integers: {line!r}", path, line=lineno) from None
        if species not in (1, 2):
            raise ConvertError(f"species must be 1 (cat) or 2 (dog), got {species}", path, line=lineno)
        rows.append((fields[0], species, lineno))
    return rows


def _parse_voc_xml(path: Path) -> tuple[int | None, int | None, list[tuple[str, float, float, float, float]]]:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise ConvertError(f"malformed XML: {e}", path, line=e.position[0]) from e
    width = height = None
    size = root.find("size")
    if size is not None:
        try:
            width, height = int(float(size.findtext("width", "0"))), int(float(size.findtext("height", "0")))
        except ValueError:
            raise ConvertError("<size> width/height are not numbers", path, record="size") from None
    objects = []
    for k, obj in enumerate(root.iter("object")):
        box = obj.find("bndbox")
        if box is None:
            raise ConvertError("object without <bndbox>", path, record=f"object {k}")
        try:
            coords = [float(box.findtext(tag)) for tag in ("xmin", "ymin", "xmax", "ymax")]
        except (TypeError, ValueError):
            raise ConvertError("<bndbox> needs numeric xmin, ymin, xmax, ymax", path, record=f"object {k}") from None
        objects.append(((obj.findtext("name") or "").strip().lower(), *coords))
    return width or None, height or None, objects


def convert_pets(src, out, *, val_fraction: float = 0.1, seed: int = 0, copy: bool = False,
                 overwrite: bool = False, progress: bool = False) -> ConvertReport:
    """Oxford-IIIT Pet head boxes -> YOLO ``catdog``. The class comes from the species column
    of the list files (1 = cat, 2 = dog). VOC boxes are 1-based inclusive: pixel box
    [xmin - 1, ymin - 1, xmax, ymax]."""
    src = Path(src)
    ann_dir = src / "annotations"
    lists = [ann_dir / n for n in ("trainval.txt", "test.txt") if (ann_dir / n).is_file()]
    if not lists and (ann_dir / "list.txt").is_file():
        lists = [ann_dir / "list.txt"]
    if not lists:
        raise ConvertError("no annotations/trainval.txt, test.txt or list.txt", src)
    report = ConvertReport("pets", str(src), str(out), "catdog")
    entries, seen = [], set()
    for path in lists:
        for name, species, _ in _parse_pets_list(path):
            if name in seen:
                report.skip(SKIP_DUPLICATE)
                continue
            seen.add(name)
            entries.append((name, species))
    assign = split_keys([name for name, _ in entries], val_fraction, seed)
    writer = YoloWriter(out, report, "catdog", copy=copy, overwrite=overwrite)
    for name, species in _progress(entries, progress, "pets", len(entries)):
        xml = ann_dir / "xmls" / f"{name}.xml"
        if not xml.is_file():
            report.skip(SKIP_NO_XML)
            continue
        image = src / "images" / f"{name}.jpg"
        if not image.is_file():
            report.skip(SKIP_MISSING_IMAGE)
            continue
        width, height, objects = _parse_voc_xml(xml)
        cls = species - 1
        boxes = []
        for obj_name, xmin, ymin, xmax, ymax in objects:
            if obj_name in ("cat", "dog") and obj_name != CATDOG_NAMES[cls]:
                report.warnings["xml <name> disagrees with the list species (species used)"] += 1
            x1, y1, x2, y2 = xmin - 1, ymin - 1, xmax, ymax
            if x2 <= x1 or y2 <= y1:
                report.skip(SKIP_DEGENERATE)
                continue
            boxes.append((cls, x1, y1, x2, y2))
        if not objects:
            report.skip(SKIP_XML_NO_OBJECTS)
            continue
        writer.add(assign[name], image, width, height, boxes)
    return writer.finish()


# ----------------------------------------------------------------------------- WIDER FACE

WIDER_FIELDS = "x1 y1 w h blur expression illumination invalid occlusion pose"
_NUMERIC_LINE = re.compile(r"[-+0-9.\s]+")


def parse_wider_gt(path) -> list[tuple[str, int, list[tuple[int, list[float]]], int]]:
    """Parse a wider_face_*_bbx_gt.txt: [(image rel path, line of the path, [(line, 10 numbers)], count)].
    For a count of 0 the placeholder line of zeros is consumed and no box is returned."""
    path = Path(path)
    lines = _read_lines(path)
    records, i, n_lines = [], 0, len(lines)
    while i < n_lines:
        rel = lines[i].strip()
        if not rel:
            i += 1
            continue
        path_line = i + 1
        if _NUMERIC_LINE.fullmatch(rel):
            raise ConvertError(f"expected an image path, got {rel!r} (face count does not match the box lines?)",
                               path, line=path_line)
        i += 1
        if i >= n_lines:
            raise ConvertError(f"truncated file: image {rel!r} has no face-count line", path, line=path_line)
        count_text = lines[i].strip()
        try:
            count = int(count_text)
        except ValueError:
            raise ConvertError(f"expected the face count (an integer) for {rel!r}, got {count_text!r}",
                               path, line=i + 1) from None
        if count < 0:
            raise ConvertError(f"negative face count {count} for {rel!r}", path, line=i + 1)
        i += 1
        boxes = []
        if count == 0:
            # one placeholder line of zeros; tolerate files that leave it out
            if i < n_lines and _NUMERIC_LINE.fullmatch(lines[i].strip() or "x"):
                i += 1
        else:
            for k in range(count):
                if i >= n_lines:
                    raise ConvertError(f"truncated file: {rel!r} declares {count} faces but the file ends "
                                       f"after {k} box lines", path, line=n_lines)
                fields = lines[i].split()
                if len(fields) != 10:
                    raise ConvertError(f"expected 10 fields '{WIDER_FIELDS}', got {len(fields)}: "
                                       f"{lines[i].strip()!r}", path, line=i + 1)
                try:
                    values = [float(v) for v in fields]
                except ValueError:
                    raise ConvertError(f"box fields must be numbers: {lines[i].strip()!r}", path, line=i + 1) from None
                boxes.append((i + 1, values))
                i += 1
        records.append((rel, path_line, boxes, count))
    return records


def convert_wider(src, out, *, val_fraction: float = 0.1, seed: int = 0, copy: bool = False,
                  overwrite: bool = False, progress: bool = False) -> ConvertReport:
    """WIDER FACE -> YOLO ``face``. Boxes with invalid=1 or w/h <= 0 are skipped (counted);
    images with 0 faces are kept as negatives; an image whose faces were all skipped is
    skipped. Uses the train/val gt files as the split when both exist."""
    src = Path(src)
    split_dir = src / "wider_face_split" if (src / "wider_face_split").is_dir() else src
    files = {s: split_dir / f"wider_face_{s}_bbx_gt.txt" for s in SPLITS}
    files = {s: p for s, p in files.items() if p.is_file()}
    if not files:
        raise ConvertError("no wider_face_split/wider_face_{train,val}_bbx_gt.txt", src)
    report = ConvertReport("wider", str(src), str(out), "face")
    has_split = len(files) == 2
    entries = []
    for split, path in files.items():
        img_root = src / f"WIDER_{split}" / "images"
        for rel, _, boxes, count in parse_wider_gt(path):
            entries.append((f"{split}/{rel}", split, img_root / rel, boxes, count))
    if not has_split:
        assign = split_keys([e[0] for e in entries], val_fraction, seed)
    writer = YoloWriter(out, report, "face", copy=copy, overwrite=overwrite)
    for key, split, image, raw_boxes, count in _progress(entries, progress, "wider", len(entries)):
        split = split if has_split else assign[key]
        if not image.is_file():
            report.skip(SKIP_MISSING_IMAGE)
            continue
        boxes = []
        for _, (x, y, w, h, _blur, _expr, _illum, invalid, _occ, _pose) in raw_boxes:
            if invalid == 1:
                report.skip(SKIP_INVALID_FACE)
                continue
            if w <= 0 or h <= 0:
                report.skip(SKIP_DEGENERATE)
                continue
            boxes.append((0, x, y, x + w, y + h))
        writer.add(split, image, None, None, boxes, negative=count == 0)
    return writer.finish()


# ----------------------------------------------------------------------------- captions formats


def convert_coco_captions(src, out, *, images=None, val_fraction: float = 0.1, seed: int = 0,
                          copy: bool = False, overwrite: bool = False, progress: bool = False) -> ConvertReport:
    """COCO captions_*.json -> captions dataset."""
    sources, has_split = _coco_sources(src, images, "captions")
    report = ConvertReport("coco-captions", str(src), str(out), "captions")
    entries = []
    for path, split, img_dir in sources:
        if has_split and split is None:
            report.skip(SKIP_UNSPLIT_FILE)
            report.notes.append(f"ignored {path.name}: not a train/val file")
            continue
        coco = _load_coco(path, captions=True)
        for ann in coco.dataset["annotations"]:
            if ann["image_id"] not in coco.imgs:
                report.skip(SKIP_UNKNOWN_IMAGE_ID)
        for image_id in sorted(coco.getImgIds(), key=str):
            caps = [a["caption"] for a in coco.imgToAnns.get(image_id, [])]
            entries.append((f"{path.name}:{image_id}", split if has_split else None,
                            img_dir / coco.imgs[image_id]["file_name"], caps))
    if not has_split:
        assign = split_keys([e[0] for e in entries], val_fraction, seed)
    writer = CaptionsWriter(out, report, copy=copy, overwrite=overwrite)
    for key, split, image, caps in _progress(entries, progress, "coco-captions", len(entries)):
        writer.add(split or assign[key], image, caps)
    return writer.finish()


def convert_cub(src, out, *, val_fraction: float = 0.1, seed: int = 0, copy: bool = False,
                overwrite: bool = False, progress: bool = False) -> ConvertReport:
    """CUB-200 / Oxford-102 (Reed et al. layout) -> captions dataset: images/<class>/<name>.jpg
    with text/<class>/<name>.txt (or text_c10/), one caption a line."""
    src = Path(src)
    img_dir = src / "images"
    text_dir = next((src / n for n in ("text", "text_c10") if (src / n).is_dir()), None)
    if not img_dir.is_dir():
        raise ConvertError("no images/ folder", src)
    if text_dir is None:
        raise ConvertError("no text/ or text_c10/ folder", src)
    report = ConvertReport("cub", str(src), str(out), "captions")
    images = {p.relative_to(img_dir).with_suffix("").as_posix(): p
              for p in img_dir.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file()}
    texts = {p.relative_to(text_dir).with_suffix("").as_posix(): p for p in text_dir.rglob("*.txt")}
    keys = sorted(set(images) | set(texts))
    assign = split_keys(keys, val_fraction, seed)
    writer = CaptionsWriter(out, report, copy=copy, overwrite=overwrite)
    for key in _progress(keys, progress, "cub", len(keys)):
        if key not in texts:
            report.skip(SKIP_NO_CAPTION_FILE)
            continue
        if key not in images:
            report.skip(SKIP_MISSING_IMAGE)
            continue
        writer.add(assign[key], images[key], _read_lines(texts[key]))
    return writer.finish()


def convert_folder(src, out, *, val_fraction: float = 0.1, seed: int = 0, copy: bool = False,
                   overwrite: bool = False, progress: bool = False) -> ConvertReport:
    """A folder of images + captions.jsonl -> captions dataset. Rows:
    {"image": path relative to the folder, "captions": [...]} or {"image", "caption": "..."};
    an optional "split" (train|val) is kept when any row has one (rows without it: train),
    otherwise the split comes from ``val_fraction``. Rows naming the same image are merged."""
    src = Path(src)
    path = src / "captions.jsonl" if src.is_dir() else src
    root = path.parent
    if not path.is_file():
        raise ConvertError("no captions.jsonl", src)
    report = ConvertReport("folder", str(src), str(out), "captions")
    rows: dict[str, dict] = {}
    any_split = False
    for lineno, raw in enumerate(_read_lines(path), 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ConvertError(f"invalid JSON: {e.msg} (column {e.colno})", path, line=lineno) from None
        if not isinstance(row, dict) or not isinstance(row.get("image"), str) or not row["image"]:
            raise ConvertError("a row must be an object with a string 'image'", path, line=lineno)
        if "captions" in row:
            caps = row["captions"]
            if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
                raise ConvertError("'captions' must be a list of strings", path, line=lineno)
        elif isinstance(row.get("caption"), str):
            caps = [row["caption"]]
        else:
            raise ConvertError("a row needs 'captions' (list of strings) or 'caption' (string)", path, line=lineno)
        split = row.get("split")
        if split is not None:
            if split not in SPLITS:
                raise ConvertError(f"'split' must be train or val, got {split!r}", path, line=lineno)
            any_split = True
        entry = rows.setdefault(row["image"], {"captions": [], "split": split})
        if entry["captions"]:
            report.warnings["rows naming the same image (captions merged)"] += 1
        entry["captions"] += [c for c in caps if c not in entry["captions"]]
        entry["split"] = entry["split"] or split
    assign = None if any_split else split_keys(rows, val_fraction, seed)
    writer = CaptionsWriter(out, report, copy=copy, overwrite=overwrite)
    for image, entry in _progress(list(rows.items()), progress, "folder", len(rows)):
        split = (entry["split"] or "train") if any_split else assign[image]
        writer.add(split, root / image, entry["captions"])
    return writer.finish()


# ----------------------------------------------------------------------------- dispatch + CLI

FORMATS: dict[str, Callable[..., ConvertReport]] = {
    "coco": convert_coco,
    "pets": convert_pets,
    "wider": convert_wider,
    "coco-captions": convert_coco_captions,
    "cub": convert_cub,
    "folder": convert_folder,
}


def convert(fmt: str, src, out, **options) -> ConvertReport:
    """Convert ``src`` in format ``fmt`` (one of FORMATS) into ``out``; see the per-format
    functions for their options. Writes ``out/convert_report.json`` and returns the report."""
    try:
        func = FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}") from None
    accepted = set(inspect.signature(func).parameters) - {"src", "out"}
    unknown = set(options) - accepted
    if unknown:
        raise TypeError(f"format {fmt!r} does not take {', '.join(sorted(unknown))} "
                        f"(it takes {', '.join(sorted(accepted))})")
    # checked here, not only in split_keys: a source with its own train/val split never
    # reaches split_keys, and a bad value should not pass silently there either
    vf = options.get("val_fraction", 0.0)
    if isinstance(vf, bool) or not isinstance(vf, (int, float)) or not 0.0 <= vf < 1.0:
        raise ValueError(f"val_fraction must be a number in [0, 1), got {vf!r}")
    return func(src, out, **options)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m datasets.convert",
        description="Convert a real dataset into gendet's formats (datasets/FORMATS.md): "
                    "coco/pets -> YOLO catdog, wider -> YOLO face, coco-captions/cub/folder -> captions dataset.",
        epilog="examples:\n"
               "  python -m datasets.convert coco /data/coco --out data/coco_catdog --keep-negatives 500\n"
               "  python -m datasets.convert coco instances_val2017.json --images /data/coco/val2017 --out d\n"
               "  python -m datasets.convert pets /data/oxford-iiit-pet --out data/pets_catdog\n"
               "  python -m datasets.convert wider /data/WIDER --out data/wider_face\n"
               "  python -m datasets.convert cub /data/birds --out data/cub_captions --val-fraction 0.05\n"
               "  python -m datasets.convert folder my_images/ --out data/my_captions",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("format", choices=list(FORMATS), help="source format")
    p.add_argument("src", help="source root (or, for coco/coco-captions, one json file)")
    p.add_argument("--out", required=True, help="output dataset folder")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="val share when the source has no train/val split of its own (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the deterministic split (default 0)")
    p.add_argument("--images", default=None, help="coco/coco-captions: image folder for a json given as SRC")
    p.add_argument("--keep-negatives", type=int, default=None, metavar="N",
                   help="coco: keep N images without cats/dogs as negatives (default 0)")
    p.add_argument("--copy", action="store_true", help="copy images instead of hard-linking them")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    options = {"val_fraction": args.val_fraction, "seed": args.seed, "copy": args.copy,
               "overwrite": args.overwrite, "progress": not args.quiet}
    if args.images is not None:
        options["images"] = args.images
    if args.keep_negatives is not None:
        options["keep_negatives"] = args.keep_negatives
    accepted = inspect.signature(FORMATS[args.format]).parameters
    for name in ("images", "keep_negatives"):
        if name in options and name not in accepted:
            print(f"error: --{name.replace('_', '-')} does not apply to {args.format}", file=sys.stderr)
            return 2
    try:
        report = convert(args.format, args.src, args.out, **options)
    except (ConvertError, ValueError, OSError) as e:  # OSError: unreadable source, unwritable --out
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.summary())
    print(f"  report: {Path(args.out) / 'convert_report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
