"""Captions datasets: COCO captions JSON, the CUB-200 / Oxford-102 text layout, a folder with captions.jsonl."""

from __future__ import annotations

import json
import posixpath
from pathlib import Path

from datasets.convert.coco import coco_sources, load_coco
from datasets.convert.common import (
    IMAGE_EXTS, MAX_CAPTION, SKIP_MISSING_IMAGE, SKIP_NO_CAPTION_FILE, SKIP_UNKNOWN_IMAGE_ID, SPLITS, WARN_CAPTION_CUT,
    WARN_OUTSIDE, ConvertError, ConvertReport, escapes, progress_iter, read_lines, source_folder, split_keys)
from datasets.convert.writers import CaptionsWriter


def convert_coco_captions(src, out, *, images=None, val_fraction: float = 0.1, seed: int = 0,
                          copy: bool = False, overwrite: bool = False, progress: bool = False) -> ConvertReport:
    """COCO captions_*.json -> captions dataset."""
    report = ConvertReport("coco-captions", str(src), str(out), "captions")
    sources, has_split = coco_sources(src, images, "captions", report)
    entries = []
    for path, split, img_dir in sources:
        coco = load_coco(path, captions=True)
        for ann in coco.dataset["annotations"]:
            if ann["image_id"] not in coco.imgs:
                report.skip(SKIP_UNKNOWN_IMAGE_ID, file=f"{path} (annotation id={ann.get('id')})")
        for image_id in sorted(coco.getImgIds(), key=str):
            caps = [a["caption"] for a in coco.imgToAnns.get(image_id, [])]
            entries.append((f"{path.name}:{image_id}", split if has_split else None,
                            img_dir / coco.imgs[image_id]["file_name"], caps))
    if not has_split:
        assign = split_keys([e[0] for e in entries], val_fraction, seed)
    with CaptionsWriter(out, report, copy=copy, overwrite=overwrite) as writer:
        for key, split, image, caps in progress_iter(entries, progress, "coco-captions", len(entries)):
            writer.add(split or assign[key], image, caps)
        return writer.finish()


IMAGE_FOLDERS = ("images", "jpg", "CUB_200_2011/images", "../CUB_200_2011/images", "../jpg")  # CUB, Oxford-102
TEXT_FOLDERS = ("text_c10", "text", "cvpr2016_cub/text_c10", "cvpr2016_flowers/text_c10")  # Reed et al., AttnGAN


def _first_folder_with(src: Path, names, suffixes) -> Path | None:
    for name in names:
        folder = src / name
        if folder.is_dir() and any(p.suffix.lower() in suffixes for p in folder.rglob("*")):
            return folder.resolve()
    return None


def _class_split(text_dir: Path, src: Path) -> tuple[dict[str, str], Path] | tuple[None, None]:
    """{class folder: split} from Reed et al.'s trainvalclasses.txt / testclasses.txt, where given."""
    for root in (text_dir.parent, src):
        trainval, test = root / "trainvalclasses.txt", root / "testclasses.txt"
        if trainval.is_file() and test.is_file():
            split = {c.strip(): "train" for c in read_lines(trainval) if c.strip()}
            split.update({c.strip(): "val" for c in read_lines(test) if c.strip()})
            return split, root
    return None, None


def convert_cub(src, out, *, images=None, val_fraction: float = 0.1, seed: int = 0, copy: bool = False,
                overwrite: bool = False, progress: bool = False) -> ConvertReport:
    """CUB-200 / Oxford-102 captions (Reed et al.'s text_c10/<class>/<name>.txt, or AttnGAN's
    text/, one caption a line) with their images -> captions dataset. The images are found in
    images/ (CUB: images/<class>/<name>.jpg), jpg/ (Oxford-102: flat jpg/<name>.jpg) or
    CUB_200_2011/images in or beside SRC, or given as ``images``; a caption file matches the image
    at the same path, else the one of the same name. With trainvalclasses.txt and testclasses.txt
    (Reed et al.) the split is by class, as the benchmark's; otherwise by ``val_fraction``."""
    src = source_folder(src)
    text_dir = _first_folder_with(src, TEXT_FOLDERS, (".txt",))
    if text_dir is None:
        raise ConvertError(f"no caption folder: looked for {', '.join(n + '/' for n in TEXT_FOLDERS)} "
                           "holding <class>/<name>.txt", src)
    img_dir = Path(images).resolve() if images is not None else _first_folder_with(src, IMAGE_FOLDERS, IMAGE_EXTS)
    if img_dir is None or not img_dir.is_dir():
        raise ConvertError("no image folder: looked for " + ", ".join(n + "/" for n in IMAGE_FOLDERS)
                           + "; pass --images DIR (e.g. CUB_200_2011/images or Oxford-102's jpg/)",
                           images if images is not None else src)
    report = ConvertReport("cub", str(src), str(out), "captions")
    found = {p.relative_to(img_dir).with_suffix("").as_posix(): p
             for p in img_dir.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file()}
    stems: dict[str, Path | None] = {}
    for p in found.values():  # a flat folder (Oxford-102's jpg/): matched by name; a name twice: ambiguous
        stems[p.stem] = None if p.stem in stems else p
    texts = {p.relative_to(text_dir).with_suffix("").as_posix(): p for p in text_dir.rglob("*.txt")}
    matched = {key: found.get(key) or stems.get(Path(key).name) for key in texts}
    used = {p for p in matched.values() if p is not None}
    for p in sorted(set(found.values()) - used):
        report.skip(SKIP_NO_CAPTION_FILE, file=p)
    by_class, split_root = _class_split(text_dir, src)
    if by_class is not None:
        report.notes.append(f"split by class: {split_root / 'trainvalclasses.txt'} -> train, testclasses.txt -> val")
        unlisted = sorted({k.split("/")[0] for k in texts} - set(by_class))
        if unlisted:
            raise ConvertError(f"classes in neither trainvalclasses.txt nor testclasses.txt: {', '.join(unlisted[:3])}"
                               + (" ..." if len(unlisted) > 3 else ""), split_root)
        assign = {k: by_class[k.split("/")[0]] for k in texts}
    else:
        assign = split_keys(texts, val_fraction, seed)
    with CaptionsWriter(out, report, copy=copy, overwrite=overwrite) as writer:
        for key in progress_iter(sorted(texts), progress, "cub", len(texts)):
            if matched[key] is None:
                report.skip(SKIP_MISSING_IMAGE, file=img_dir / f"{key}.jpg")  # the layout's name for it
                continue
            writer.add(assign[key], matched[key], read_lines(texts[key]))
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
        # one image however its path is written ("./a.jpg", "pics/../a.jpg", "a.jpg")
        image = posixpath.normpath(row["image"].replace("\\", "/"))
        if escapes(image):  # the user's own list may point anywhere; a dataset from elsewhere should not
            report.warn(WARN_OUTSIDE, file=f"{path}:{lineno}")
        if any(len(c) > MAX_CAPTION for c in caps):  # 300,000 characters stalled tokenizer training
            report.warn(WARN_CAPTION_CUT, file=f"{path}:{lineno}")
            caps = [c[:MAX_CAPTION] for c in caps]
        entry = rows.setdefault(image, {"captions": [], "split": split, "line": lineno})
        if entry["captions"]:
            report.warn("rows naming the same image (captions merged)", file=f"{path}:{lineno}")
        if split is not None and entry["split"] not in (None, split):
            raise ConvertError(f"{image!r} is in split {split!r} here but {entry['split']!r} on line {entry['line']}",
                               path, line=lineno)
        entry["captions"] += [c for c in caps if c not in entry["captions"]]
        entry["split"] = entry["split"] or split
    assign = None if any_split else split_keys(rows, val_fraction, seed)
    with CaptionsWriter(out, report, copy=copy, overwrite=overwrite) as writer:
        for image, entry in progress_iter(list(rows.items()), progress, "folder", len(rows)):
            split = (entry["split"] or "train") if any_split else assign[image]
            writer.add(split, root / image, entry["captions"])
        return writer.finish()
