"""WIDER FACE (wider_face_split/*_bbx_gt.txt) -> YOLO face."""

from __future__ import annotations

import re
from pathlib import Path

from datasets.convert.common import (
    SKIP_DEGENERATE, SKIP_INVALID_FACE, SKIP_MISSING_IMAGE, SPLITS, ConvertError, ConvertReport, progress_iter,
    read_lines, source_folder, split_keys)
from datasets.convert.writers import YoloWriter

WIDER_FIELDS = "x1 y1 w h blur expression illumination invalid occlusion pose"
_NUMERIC_LINE = re.compile(r"[-+0-9.\s]+")


def parse_wider_gt(path) -> list[tuple[str, int, list[tuple[int, list[float]]], int]]:
    """Parse a wider_face_*_bbx_gt.txt: [(image rel path, line of the path, [(line, 10 numbers)], count)].
    For a count of 0 the placeholder line of zeros is consumed and no box is returned."""
    path = Path(path)
    lines = read_lines(path)
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
    src = source_folder(src)
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
    with YoloWriter(out, report, "face", copy=copy, overwrite=overwrite) as writer:
        for key, split, image, raw_boxes, count in progress_iter(entries, progress, "wider", len(entries)):
            split = split if has_split else assign[key]
            if not image.is_file():
                report.skip(SKIP_MISSING_IMAGE, file=image)
                continue
            boxes = []
            for _, (x, y, w, h, _blur, _expr, _illum, invalid, _occ, _pose) in raw_boxes:
                if invalid == 1:
                    report.skip(SKIP_INVALID_FACE, file=image)
                    continue
                if w <= 0 or h <= 0:
                    report.skip(SKIP_DEGENERATE, file=image)
                    continue
                boxes.append((0, x, y, x + w, y + h))
            writer.add(split, image, None, None, boxes, negative=count == 0)
        return writer.finish()
