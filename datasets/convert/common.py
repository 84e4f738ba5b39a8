"""What every converter shares: the skip reasons, the error type, the report and small readers."""

from __future__ import annotations

import json
import os
import posixpath
import random
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

SPLITS = ("train", "val")
# a caption is a sentence or a paragraph (CLIP reads 77 tokens); one of 300,000 characters stalled
# the BPE tokenizer's training for minutes, with no word
MAX_CAPTION = 10_000
CATDOG_NAMES = {0: "cat", 1: "dog"}
FACE_NAMES = {0: "face"}
TASK_NAMES = {"catdog": CATDOG_NAMES, "face": FACE_NAMES}
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
# what ultralytics trains on, by the data inside (PIL's format names) and by the file's suffix;
# anything else goes into a YOLO output re-encoded as PNG (ultralytics skips it as "corrupt", or
# never lists it)
YOLO_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "MPO")
YOLO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

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
SKIP_UNLISTED = "head box (xml) of an image in no list file"
SKIP_INVALID_FACE = "invalid face (invalid=1)"
SKIP_NO_CAPTIONS = "no captions"
SKIP_NO_CAPTION_FILE = "no caption file"
SKIP_UNSPLIT_FILE = "annotation file outside train/val ignored"
SKIP_OTHER_YEAR = "annotation file of an older COCO year ignored"

# the reasons that count boxes; the others count images or records (files, annotations, list lines)
BOX_SKIPS = (SKIP_CROWD, SKIP_DEGENERATE, SKIP_OUTSIDE, SKIP_INVALID_FACE)

WARN_SIZE = "annotation's image size differs from the file's (boxes read in the annotation's)"
WARN_REENCODED = "image re-encoded as PNG (a format YOLO training does not read)"
WARN_OUTSIDE = "image outside the source folder (linked or copied in as given)"
WARN_CAPTION_CUT = f"caption over {MAX_CAPTION:,} characters, cut to that"
WARN_ORIENTATION = "image re-encoded as PNG without its EXIF orientation (boxes are in its stored pixels)"

EXAMPLES = 5  # skipped (or warned) files named per reason in the report


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
    skipped_files: dict = field(default_factory=dict)  # reason -> the first EXAMPLES files
    warnings: Counter = field(default_factory=Counter)
    warned_files: dict = field(default_factory=dict)  # reason -> the first EXAMPLES files
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

    def skip(self, reason: str, n: int = 1, file: str | os.PathLike | None = None) -> None:
        """Count n skipped records; `file` names the one skipped, so the user can find it."""
        if n:
            self.skipped[reason] += n
        if file is not None:
            _example(self.skipped_files, reason, file)

    def warn(self, reason: str, file: str | os.PathLike | None = None, n: int = 1) -> None:
        """Count n records written with a caveat; `file` names the one they are in."""
        self.warnings[reason] += n
        if file is not None:
            _example(self.warned_files, reason, file)

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
            "skipped_files": dict(sorted(self.skipped_files.items())),
            "warnings": dict(sorted(self.warnings.items())),
            "warned_files": dict(sorted(self.warned_files.items())),
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
            boxes = sum(n for reason, n in self.skipped.items() if reason in BOX_SKIPS)
            lines.append(f"  skipped: {self.skipped_total} ({boxes} boxes, {self.skipped_total - boxes} images or "
                         "records)")
            for reason, n in sorted(self.skipped.items()):
                files = self.skipped_files.get(reason)
                lines.append(f"    {reason}: {n}" + (f" (first: {files[0]})" if files else ""))
        else:
            lines.append("  skipped: 0")
        for reason, n in sorted(self.warnings.items()):
            files = self.warned_files.get(reason)
            lines.append(f"  warning: {reason}: {n}" + (f" (first: {files[0]})" if files else ""))
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def _example(examples: dict, reason: str, file) -> None:
    listed = examples.setdefault(reason, [])
    if len(listed) < EXAMPLES:
        listed.append(str(file))


# ----------------------------------------------------------------------------- helpers


def progress_iter(iterable: Iterable, progress: bool, desc: str, total: int | None = None):
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


def source_folder(src) -> Path:
    """SRC as a folder, or a ConvertError that says it is missing (before any file inside is looked for)."""
    src = Path(src)
    if not src.exists():
        raise ConvertError("no such folder", src)
    if not src.is_dir():
        raise ConvertError("not a folder", src)
    return src


@dataclass(frozen=True)
class ImageInfo:
    size: tuple[int, int]  # (width, height) of the stored pixels
    format: str  # PIL's name for the data: JPEG, PNG, GIF, ...
    orientation: int = 1  # EXIF orientation: 1 = as stored; 5-8 turn the image a quarter

    @property
    def shown_size(self) -> tuple[int, int]:
        """(width, height) as viewers, and ultralytics, show the image: turned by its orientation."""
        w, h = self.size
        return (h, w) if self.orientation in (5, 6, 7, 8) else (w, h)


def image_info(path: Path) -> ImageInfo | None:
    """What a converter needs of an image PIL can read whole, None otherwise: a text file named .png
    or a truncated download is caught here, not in training. PNGs: verify() checks every chunk's
    CRC. Others (JPEG: verify() reads no pixel data): decoded, at 1/8 scale where the format allows."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            size, fmt = im.size, im.format
            im.verify()  # first thing after open, or it refuses
        with Image.open(path) as im:
            orientation = im.getexif().get(0x0112, 1)  # 0x0112: the EXIF Orientation tag
            if fmt != "PNG":
                im.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
                im.load()
        return ImageInfo(size, fmt, orientation if orientation in range(1, 9) else 1)
    except Exception:  # noqa: BLE001 - PIL raises many types
        return None


def load_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConvertError(f"not UTF-8 text ({e.reason} at byte {e.start})", path) from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConvertError(f"invalid JSON: {e.msg} (column {e.colno})", path, line=e.lineno) from e


def escapes(name: str) -> bool:
    """Whether a path a dataset file gives for one of its images (relative to its folder) leads out of
    that folder: absolute, or up through "..". Such a file went into a dataset, or a zip, unasked."""
    name = posixpath.normpath(name.replace("\\", "/"))
    return posixpath.isabs(name) or re.match(r"[A-Za-z]:/", name) is not None or name == ".." or name.startswith("../")


def read_lines(path: Path) -> list[str]:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig").splitlines()  # -sig: a byte-order mark (Notepad's) is not text
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConvertError(f"not UTF-8 text ({e.reason})", path, line=line) from e


def number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return None
