"""Run a detector on image files: boxes drawn on a copy of each image, and JSON next to it.

    python -m detection.predict photo1.jpg photo2.png --out runs/predict                 # demo cat/dog detector
    python -m detection.predict photos/ --out runs/predict                               # every image in a folder
    python -m detection.predict --model face photo.jpg --out runs/predict                # demo face detector
    python -m detection.predict --model runs/catdog/best.pt photo1.jpg --out runs/predict
"""

from __future__ import annotations

import gendet_env  # noqa: F401

import argparse
import io
import json
import sys
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo
from tqdm import tqdm

from datasets.images import open_as_seen
from detection._common import IMAGE_SUFFIXES, UsageError, out_folder, resolve_model, run_cli
from detection.detector import Detector
from detection.draw import draw_detections
from generation.files import atomic_write_bytes, atomic_write_json


def expand(images: list[str | Path]) -> list[tuple[Path, bool]]:
    """(file, found in a folder) pairs: files as given; a folder stands for the image files directly
    in it (by suffix, sorted)."""
    paths = []
    for item in map(Path, images):
        if item.is_dir():
            found = sorted(f for f in item.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UsageError(f"{item}: a folder with no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
            paths += [(f, True) for f in found]
            inside = sorted(f.name for f in item.iterdir() if f.is_dir())
            if inside:  # not read: said, so no image is left out unseen
                print(f"warning: {item}: {len(inside)} subfolder(s) not read ({', '.join(inside[:3])}"
                      f"{', ...' if len(inside) > 3 else ''}); name them to include their images", file=sys.stderr)
        else:
            paths.append((item, False))
    return paths


def unreadable(path: Path) -> str | None:
    """Why PIL cannot read the file (header and, for PNG, the chunks' checksums; no decoding), or None."""
    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as e:  # noqa: BLE001 - PIL raises many types
        return f"{path}: not a readable image ({type(e).__name__}: {e})"
    return None


def open_rgb(path: Path) -> Image.Image:
    """The image as viewers show it: upright by its EXIF orientation (as ultralytics reads a path),
    transparent parts on white (as the app shows an upload)."""
    try:
        return open_as_seen(path)
    except Exception as e:  # noqa: BLE001 - PIL raises many types
        raise UsageError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None


MARK = "gendet detection.predict"  # the PNGs' Software text: one whose JSON was deleted is still known as ours


def _marked(png: Path) -> bool:
    try:
        with Image.open(png) as im:
            return im.info.get("Software") == MARK  # read with the header: the text comes before the pixels
    except Exception:  # noqa: BLE001 - not an image, unreadable: not ours
        return False


def not_ours(out: Path, stem: str) -> Path | None:
    """OUT/<stem>.png or .json when it is there and an earlier predict did not write it (the user's
    own files are never written over; an earlier run's are, as a rerun should)."""
    png, record = out / f"{stem}.png", out / f"{stem}.json"
    if not png.exists() and not record.exists():
        return None
    if not record.exists():
        return None if _marked(png) else png
    try:
        ours = {"image", "model", "names"} <= set(json.loads(record.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):  # unreadable, not JSON, not an object
        ours = False
    return None if ours else record


def predict(model, images: list[str | Path], out: str | Path, conf: float | None = None, iou: float | None = None,
            device: str | None = None, progress: bool = True, batch: int = 16, imgsz: int | None = None) -> list[Path]:
    """Detect in each image file (a folder: the images in it); write OUT/<stem>.png (boxes drawn) and
    OUT/<stem>.json beside it.

    Every file is checked first (its header read), so an unreadable one named on the command line fails
    before any model time is spent; one found in a folder is skipped with a warning on stderr. The pixels
    are decoded a batch at a time, so a large folder does not fill the memory.
    """
    out = out_folder(out)
    model = resolve_model(model)
    paths, skipped = [], 0
    for path, in_folder in expand(images):
        problem = unreadable(path)
        if problem and not in_folder:
            raise UsageError(problem)
        if problem:
            print(f"warning: {problem}; skipped", file=sys.stderr)
            skipped += 1
        else:
            paths.append((path, in_folder))
    if not paths:
        raise UsageError("no readable images" if skipped else "no images given")
    stems = [p.stem for p, _ in paths]
    if len(set(stems)) != len(stems):
        dup = sorted({s for s in stems if stems.count(s) > 1})
        raise UsageError(f"several images share the name stem {dup[0]!r}; their outputs would overwrite each other")
    # OUT/<stem>.png and .json must never be an input (predict inplace --out inplace drew over a.png)
    inputs = {p.resolve() for p, _ in paths}
    taken = [out / f"{stem}{ext}" for stem in stems for ext in (".png", ".json")]
    if any(t.resolve() in inputs for t in taken):
        raise UsageError(f"--out {out}: its results would write over input images there; choose another folder")
    theirs = next((f for stem in stems if (f := not_ours(out, stem))), None)
    if theirs:
        raise UsageError(f"--out {out}: {theirs.name} there is not an earlier detection.predict output and would be "
                         "written over; choose another folder")
    det = Detector.load(model, device=device)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tqdm(total=len(paths), desc="predict", unit="img", disable=not progress) as bar:
        for start in range(0, len(paths), batch):
            chunk = []
            for path, in_folder in paths[start:start + batch]:
                try:
                    chunk.append((path, open_rgb(path)))
                except UsageError as e:  # verify() passed, decoding did not (a JPEG cut short)
                    if not in_folder:
                        raise
                    tqdm.write(f"warning: {e}; skipped", file=sys.stderr)
                    skipped += 1
            results = det.detect([p for _, p in chunk], conf=conf, iou=iou, imgsz=imgsz) if chunk else []
            for (path, pil), dets in zip(chunk, results):
                # the names checked above (with_suffix cut "photo.v2" to "photo": over the user's photo.png)
                png, record_path = out / f"{path.stem}.png", out / f"{path.stem}.json"
                record = {"image": str(path), "model": str(model), "names": det.names,
                          "imgsz": -(-int(imgsz or det.imgsz) // 32) * 32} | dets.to_dict()  # as ultralytics ran
                atomic_write_json(record, record_path)  # first: a PNG is never there without the JSON that owns it
                drawn = io.BytesIO()
                marked = PngInfo()
                marked.add_text("Software", MARK)
                draw_detections(pil, dets).save(drawn, format="PNG", pnginfo=marked)
                atomic_write_bytes(drawn.getvalue(), png)  # a Ctrl-C never leaves half a PNG
                written.append(png)
            bar.update(len(paths[start:start + batch]))
    if skipped:
        print(f"skipped {skipped} unreadable file(s) found in folders; see the warnings above", file=sys.stderr)
    if not written:
        raise UsageError("no readable images")
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m detection.predict", description=__doc__.split("\n\n")[0])
    ap.add_argument("images", nargs="+", help="image files (PNG, JPEG, WebP, ...) or folders of them")
    ap.add_argument("--model", default="catdog",
                    help="a detector .pt, or catdog / face for the demo bundle's (default: catdog)")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--conf", type=float, default=None, help="confidence threshold (default 0.25)")
    ap.add_argument("--iou", type=float, default=None, help="NMS IoU (default 0.7)")
    ap.add_argument("--imgsz", type=int, default=None,
                    help="the size images are scaled to for the model (default: the size it was trained at)")
    ap.add_argument("--device", type=gendet_env.device_arg, default=None,
                    help="cpu, cuda, cuda:N, N or mps (default: cuda:0 when available)")
    args = ap.parse_args(argv)
    for flag, value in (("--conf", args.conf), ("--iou", args.iou)):
        if value is not None and not 0 <= value <= 1:
            ap.error(f"{flag} must be in [0, 1], got {value}")
    if args.imgsz is not None and args.imgsz < 32:  # as detection.train and evaluate
        ap.error(f"--imgsz must be >= 32, got {args.imgsz}")
    for p in predict(args.model, args.images, args.out, args.conf, args.iou, args.device, imgsz=args.imgsz):
        print(p)
    return 0


if __name__ == "__main__":
    run_cli(main)
