"""Captions datasets: COCO captions JSON, the CUB-200 / Oxford-102 text layout, a folder with captions.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

from datasets.convert.coco import coco_sources, load_coco
from datasets.convert.common import (
    IMAGE_EXTS, SKIP_MISSING_IMAGE, SKIP_NO_CAPTION_FILE, SKIP_UNKNOWN_IMAGE_ID, SKIP_UNSPLIT_FILE, SPLITS,
    ConvertError, ConvertReport, progress_iter, read_lines, source_folder, split_keys)
from datasets.convert.writers import CaptionsWriter


def convert_coco_captions(src, out, *, images=None, val_fraction: float = 0.1, seed: int = 0,
                          copy: bool = False, overwrite: bool = False, progress: bool = False) -> ConvertReport:
    """COCO captions_*.json -> captions dataset."""
    sources, has_split = coco_sources(src, images, "captions")
    report = ConvertReport("coco-captions", str(src), str(out), "captions")
    entries = []
    for path, split, img_dir in sources:
        if has_split and split is None:
            report.skip(SKIP_UNSPLIT_FILE)
            report.notes.append(f"ignored {path.name}: not a train/val file")
            continue
        coco = load_coco(path, captions=True)
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
    for key, split, image, caps in progress_iter(entries, progress, "coco-captions", len(entries)):
        writer.add(split or assign[key], image, caps)
    return writer.finish()


def convert_cub(src, out, *, val_fraction: float = 0.1, seed: int = 0, copy: bool = False,
                overwrite: bool = False, progress: bool = False) -> ConvertReport:
    """CUB-200 / Oxford-102 (Reed et al. layout) -> captions dataset: images/<class>/<name>.jpg
    with text/<class>/<name>.txt (or text_c10/), one caption a line."""
    src = source_folder(src)
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
    for key in progress_iter(keys, progress, "cub", len(keys)):
        if key not in texts:
            report.skip(SKIP_NO_CAPTION_FILE, file=images[key])
            continue
        if key not in images:
            report.skip(SKIP_MISSING_IMAGE, file=img_dir / f"{key}.jpg")  # the layout's name for it
            continue
        writer.add(assign[key], images[key], read_lines(texts[key]))
    return writer.finish()


def convert_folder(src, out, *, val_fraction: float = 0.1, seed: int = 0, copy: bool = False,
                   overwrite: bool = False, progress: bool = False) -> ConvertReport:
    """A folder of images + captions.jsonl -> captions dataset. Rows:
    {"image": path relative to the folder, "captions": [...]} or {"image", "caption": "..."};
    an optional "split" (train|val) is kept when any row has one (rows without it: train),
    otherwise the split comes from ``val_fraction``. Rows naming the same image are merged."""
    src = Path(src)
    if not src.exists():
        raise ConvertError("no such file or folder", src)
    path = src / "captions.jsonl" if src.is_dir() else src
    root = path.parent
    if not path.is_file():
        raise ConvertError("no captions.jsonl", src)
    report = ConvertReport("folder", str(src), str(out), "captions")
    rows: dict[str, dict] = {}
    any_split = False
    for lineno, raw in enumerate(read_lines(path), 1):
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
    for image, entry in progress_iter(list(rows.items()), progress, "folder", len(rows)):
        split = (entry["split"] or "train") if any_split else assign[image]
        writer.add(split, root / image, entry["captions"])
    return writer.finish()
