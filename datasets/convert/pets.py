"""Oxford-IIIT Pet (VOC XML head boxes + trainval.txt / test.txt) -> YOLO catdog."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from datasets.convert.common import (
    CATDOG_NAMES, SKIP_DEGENERATE, SKIP_DUPLICATE, SKIP_MISSING_IMAGE, SKIP_NO_XML, SKIP_UNLISTED, SKIP_XML_NO_OBJECTS,
    ConvertError, ConvertReport, progress_iter, read_lines, source_folder, split_keys)
from datasets.convert.writers import YoloWriter


def _parse_pets_list(path: Path) -> list[tuple[str, int, int]]:
    rows = []
    for lineno, raw in enumerate(read_lines(path), 1):
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


def _jpegs_by_stem(folder: Path) -> dict[str, Path]:
    """name -> its image, whatever the case of .jpg / .jpeg (copies of the set re-saved elsewhere
    have .JPG or .jpeg). One listing of the folder, not a lookup per name; name.jpg first."""
    found: dict[str, Path] = {}
    files = sorted(folder.iterdir(), key=lambda p: (p.suffix != ".jpg", p.name)) if folder.is_dir() else []
    for path in files:
        if path.suffix.lower() in (".jpg", ".jpeg") and path.is_file():
            found.setdefault(path.stem, path)
    return found


def convert_pets(src, out, *, val_fraction: float = 0.1, seed: int = 0, copy: bool = False,
                 overwrite: bool = False, progress: bool = False) -> ConvertReport:
    """Oxford-IIIT Pet head boxes -> YOLO ``catdog``. The class comes from the species column
    of the list files (1 = cat, 2 = dog). VOC boxes are 1-based inclusive: pixel box
    [xmin - 1, ymin - 1, xmax, ymax]."""
    src = source_folder(src)
    ann_dir = src / "annotations"
    lists = [ann_dir / n for n in ("trainval.txt", "test.txt") if (ann_dir / n).is_file()]
    if not lists and (ann_dir / "list.txt").is_file():
        lists = [ann_dir / "list.txt"]
    if not lists:
        raise ConvertError("no annotations/trainval.txt, test.txt or list.txt", src)
    report = ConvertReport("pets", str(src), str(out), "catdog")
    entries, seen = [], set()
    for path in lists:
        for name, species, lineno in _parse_pets_list(path):
            if name in seen:
                report.skip(SKIP_DUPLICATE, file=f"{path}:{lineno}")
                continue
            seen.add(name)
            entries.append((name, species))
    # the list files decide the species; an xml they do not name has none, so it is counted, not used
    for xml in sorted((ann_dir / "xmls").glob("*.xml")):
        if xml.stem not in seen:
            report.skip(SKIP_UNLISTED, file=xml)
    assign = split_keys([name for name, _ in entries], val_fraction, seed)
    images = _jpegs_by_stem(src / "images")
    with YoloWriter(out, report, "catdog", copy=copy, overwrite=overwrite) as writer:
        for name, species in progress_iter(entries, progress, "pets", len(entries)):
            xml = ann_dir / "xmls" / f"{name}.xml"
            if not xml.is_file():
                report.skip(SKIP_NO_XML, file=xml)
                continue
            image = images.get(name)
            if image is None:
                report.skip(SKIP_MISSING_IMAGE, file=src / "images" / f"{name}.jpg")
                continue
            width, height, objects = _parse_voc_xml(xml)
            cls = species - 1
            boxes = []
            for obj_name, xmin, ymin, xmax, ymax in objects:
                if obj_name in ("cat", "dog") and obj_name != CATDOG_NAMES[cls]:
                    report.warnings["xml <name> disagrees with the list species (species used)"] += 1
                x1, y1, x2, y2 = xmin - 1, ymin - 1, xmax, ymax
                if x2 <= x1 or y2 <= y1:
                    report.skip(SKIP_DEGENERATE, file=xml)
                    continue
                boxes.append((cls, x1, y1, x2, y2))
            if not objects:
                report.skip(SKIP_XML_NO_OBJECTS, file=xml)
                continue
            writer.add(assign[name], image, width, height, boxes)
        return writer.finish()
