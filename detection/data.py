"""YOLO datasets on disk (datasets/FORMATS.md): find, validate, hash, read ground truth.

Everything here runs before ultralytics sees the data, so a bad dataset fails
with one line naming the file (and line) instead of a traceback or a silently
skipped "corrupt" image deep inside ultralytics.
"""

from __future__ import annotations

import gendet_env  # noqa: F401

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from datasets.convert.common import YOLO_FORMATS
from detection._common import IMAGE_SUFFIXES, TASKS, DataError, names_list, task_for_names


@dataclass
class YoloDataset:
    """A validated YOLO dataset: its data.yaml, root folder, task and per-split image lists."""

    yaml_path: Path
    root: Path
    task: str
    names: list[str]
    config: dict
    images: dict[str, list[Path]] = field(default_factory=dict)

    def split_folders(self) -> list[Path]:
        """The image folders the splits name (resolved), wherever they lie: absolute ones may be
        outside the root, and ultralytics reads every image under them."""
        entries = [e for split in ("train", "val", "test") if self.config.get(split) is not None
                   for e in (self.config[split] if isinstance(self.config[split], list) else [self.config[split]])]
        folders = [p if p.is_absolute() else self.root / p for p in map(Path, map(str, entries))]
        return [p.resolve() for p in folders if p.is_dir()]

    def label_path(self, image: Path) -> Path:
        return label_path_for(image)

    def label_files(self) -> list[Path]:
        return sorted({self.label_path(im) for ims in self.images.values() for im in ims if self.label_path(im).exists()})

    def data_hash(self) -> str:
        """sha256 over data.yaml and every image and label file of the loaded splits (relative path +
        bytes, sorted), so a model card pins the exact data: regenerated images with identical
        labels get a new hash too."""
        h = hashlib.sha256()
        h.update(b"data.yaml\0" + self.yaml_path.read_bytes() + b"\0")
        images = sorted({im for ims in self.images.values() for im in ims})
        for f in images + self.label_files():
            try:
                rel = f.resolve().relative_to(self.root.resolve()).as_posix()
            except ValueError:
                rel = f.as_posix()
            h.update(rel.encode() + b"\0" + f.read_bytes() + b"\0")
        return h.hexdigest()

    def write_resolved_yaml(self, path: Path) -> Path:
        """A copy of data.yaml with an absolute `path:` (ultralytics then never falls back to its own
        datasets dir) and no `download:`. A split given as a list file becomes a list of the absolute image paths this
        check read: ultralytics reads a list's relative lines from the working directory, not the
        dataset's root, and found none of them."""
        # `download:` is a script ultralytics runs (exec, or a shell) when it misses the images: dropped
        cfg = {k: v for k, v in self.config.items() if k not in ("path", "download")}
        cfg = {"path": str(self.root.resolve()), **cfg, "names": dict(enumerate(self.names))}
        path.parent.mkdir(parents=True, exist_ok=True)
        for key in ("train", "val"):  # ultralytics wants both keys, though it reads only the split it runs on
            if not cfg.get(key) and self.images:
                cfg[key] = cfg[next(iter(self.images))]
        for split, images in self.images.items():
            entries = cfg[split] if isinstance(cfg[split], list) else [cfg[split]]
            if any(str(e).endswith(".txt") for e in entries):
                listed = path.with_name(f"{path.stem}.{split}.txt")
                listed.write_text("".join(f"{im.resolve()}\n" for im in images))
                cfg[split] = str(listed)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # torchrun ranks may all write it
        tmp.write_text(yaml.safe_dump(cfg, sort_keys=False))
        tmp.replace(path)
        return path

    def ground_truth(self, split: str) -> list[tuple[Path, int, int, list[tuple[int, float, float, float, float]]]]:
        """Per image of `split`: (image, width, height, [(cls, x1, y1, x2, y2) in pixels])."""
        from PIL import Image

        out = []
        for im in self.images[split]:
            with Image.open(im) as pil:
                w, h = pil.size
                if pil.getexif().get(0x0112) in (5, 6, 7, 8):  # ultralytics sees it turned a quarter
                    w, h = h, w
            boxes = []
            for cls, cx, cy, bw, bh in read_labels(self.label_path(im), len(self.names)):
                boxes.append((cls, (cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h))
            out.append((im, w, h, boxes))
        return out


def label_path_for(image: Path) -> Path:
    """ultralytics' rule: the last /images/ becomes /labels/, the suffix becomes .txt."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    s = str(image)
    if sa not in s:
        return image.with_suffix(".txt")
    return Path(sb.join(s.rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt")


def find_data_yaml(path: str | Path, task: str | None = None) -> Path:
    """PATH is a data.yaml, a YOLO dataset folder holding one, or a scenes root (then PATH/<task>/data.yaml)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{path}: no such file or folder")
    if p.is_file():
        if p.suffix not in (".yaml", ".yml"):
            raise DataError(f"{path}: expected a data.yaml, a YOLO dataset folder or a scenes root")
        return p
    if (p / "data.yaml").is_file():
        return p / "data.yaml"
    if task and (p / task / "data.yaml").is_file():
        return p / task / "data.yaml"
    where = f"{p}/data.yaml" + (f" and {p}/{task}/data.yaml" if task else "")
    raise DataError(f"{path}: missing data.yaml (looked for {where})")


def read_labels(path: Path, nc: int) -> list[tuple[int, float, float, float, float]]:
    """Parse and check one YOLO label file; a missing file means no objects."""
    if not path.exists():
        return []
    boxes = []
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text label file") from None
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        where = f"{path}:{n}"
        if len(parts) != 5:
            raise DataError(f"{where}: expected 5 columns 'cls cx cy w h', got {len(parts)}: {line.strip()!r}")
        try:
            cls_f = float(parts[0])
            vals = [float(x) for x in parts[1:]]
        except ValueError:
            raise DataError(f"{where}: not numbers: {line.strip()!r}") from None
        if not cls_f.is_integer():
            raise DataError(f"{where}: class id {parts[0]!r} is not an integer")
        cls = int(cls_f)
        if not 0 <= cls < nc:
            raise DataError(f"{where}: class id {cls} out of range for {nc} class(es) (0..{nc - 1})")
        if not all(math.isfinite(v) and -1e-6 <= v <= 1 + 1e-6 for v in vals):
            raise DataError(f"{where}: box values must be normalised to [0, 1]: {line.strip()!r}")
        if vals[2] <= 0 or vals[3] <= 0:
            raise DataError(f"{where}: box width and height must be > 0: {line.strip()!r}")
        boxes.append((cls, *vals))
    return boxes


def _split_images(root: Path, yaml_path: Path, split: str, value) -> list[Path]:
    entries = value if isinstance(value, list) else [value]
    images: list[Path] = []
    for entry in entries:
        p = Path(str(entry))
        p = p if p.is_absolute() else root / p
        if p.is_dir():
            images += sorted(x for x in p.rglob("*") if x.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file() and p.suffix == ".txt":  # a list of image paths, relative to the root
            for line in p.read_text().splitlines():
                if line.strip():
                    q = Path(line.strip())
                    images.append(q if q.is_absolute() else root / q)
        else:
            raise DataError(f"{yaml_path}: '{split}: {entry}' -> {p} is missing (no such image folder)")
    return images


def check_image_format(image: Path) -> None:
    """What ultralytics' scan would skip as "corrupt" (a format it does not train on, a side under
    10 px, a file PIL's verify() rejects, a JPEG cut short), said before training. Cheap: the header
    and verify(); only a JPEG without its end marker is decoded (ultralytics would rewrite it)."""
    from PIL import Image

    try:
        with Image.open(image) as pil:
            fmt, size = pil.format, pil.size
            pil.verify()
    except Exception as e:  # noqa: BLE001 - PIL's errors, or ultralytics' patched open failing on a HEIF plugin
        raise DataError(f"{image}: not an image PIL can read ({type(e).__name__})") from None
    if fmt not in YOLO_FORMATS:
        raise DataError(f"{image}: {fmt} data, which YOLO training does not read ({', '.join(YOLO_FORMATS)}); "
                        "save it as PNG (python -m datasets.convert re-encodes such images)")
    if min(size) < 10:
        raise DataError(f"{image}: {size[0]}x{size[1]} px; YOLO training skips images under 10 px a side")
    if fmt == "JPEG":
        with open(image, "rb") as fh:
            fh.seek(-2, 2)
            whole = fh.read() == b"\xff\xd9"
        if not whole:
            try:
                with Image.open(image) as pil:
                    pil.load()
            except Exception as e:  # noqa: BLE001
                raise DataError(f"{image}: a JPEG cut short ({e}); YOLO training would skip it") from None


def load_dataset(path: str | Path, task: str | None = None, splits=("train", "val"), check_labels: bool = True) -> YoloDataset:
    """Find, parse and validate a YOLO dataset; raise DataError with the offending file/line."""
    yaml_path = find_data_yaml(path, task).resolve()
    try:
        config = yaml.safe_load(yaml_path.read_text())
    except yaml.YAMLError as e:
        raise DataError(f"{yaml_path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise DataError(f"{yaml_path}: expected a mapping with train/val/names")
    if "names" not in config:
        raise DataError(f"{yaml_path}: missing field 'names'")
    try:
        names = names_list(config["names"])
    except Exception:
        raise DataError(f"{yaml_path}: field 'names' must be a list or {{id: name}} mapping") from None
    found = task_for_names(names)
    if task is None:
        task = config.get("task_name") or found
        if task not in TASKS:
            raise DataError(f"{yaml_path}: names {names} match no task ({', '.join(f'{t}: {n}' for t, n in TASKS.items())})")
    if task not in TASKS:
        raise DataError(f"unknown task {task!r} (choose from {', '.join(TASKS)})")
    if names != TASKS[task]:
        raise DataError(f"{yaml_path}: names {names} do not match task {task!r} (expected {TASKS[task]})")
    if config.get("task_name") not in (None, task):
        raise DataError(f"{yaml_path}: task_name {config['task_name']!r} does not match task {task!r}")
    if "nc" in config and str(config["nc"]).strip() != str(len(names)):
        raise DataError(f"{yaml_path}: nc {config['nc']!r} does not match {len(names)} names")

    root = Path(config["path"]) if config.get("path") else yaml_path.parent
    if not root.is_absolute():
        # ultralytics resolves a relative `path:` against its own datasets dir; be explicit about ours.
        root = (yaml_path.parent / root).resolve()
    ds = YoloDataset(yaml_path=yaml_path, root=root, task=task, names=names, config=config)
    for split in splits:
        if not config.get(split):
            raise DataError(f"{yaml_path}: missing field '{split}'")
        images = _split_images(root, yaml_path, split, config[split])
        if not images:
            raise DataError(f"{yaml_path}: '{split}: {config[split]}' holds no images")
        for im in images:
            if not im.is_file():
                raise DataError(f"{im}: image listed for split '{split}' is missing")
        ds.images[split] = images
        if not any(label_path_for(im).exists() for im in images):
            raise DataError(f"{yaml_path}: no label files for split '{split}' (expected e.g. {label_path_for(images[0])})")
        if check_labels:
            for im in images:
                read_labels(label_path_for(im), len(names))
                check_image_format(im)
    return ds
