"""Run a detector on image files: boxes drawn on a copy of each image, and JSON next to it.

    python -m detection.predict photo1.jpg photo2.png --out runs/predict                 # demo cat/dog detector
    python -m detection.predict photos/ --out runs/predict                               # every image in a folder
    python -m detection.predict --model face photo.jpg --out runs/predict                # demo face detector
    python -m detection.predict --model runs/catdog/best.pt photo1.jpg --out runs/predict
"""

from __future__ import annotations

import gendet_env  # noqa: F401

import argparse
import json
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from detection._common import UsageError, run_cli
from detection.detector import Detector
from detection.draw import draw_detections

DEMO = gendet_env.ROOT / "models" / "demo"
BUNDLED = ("catdog", "face")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def expand(images: list[str | Path]) -> list[Path]:
    """Files as given; a folder stands for the image files directly in it (by suffix, sorted)."""
    paths = []
    for item in map(Path, images):
        if item.is_dir():
            found = sorted(f for f in item.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UsageError(f"{item}: a folder with no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
            paths += found
        else:
            paths.append(item)
    return paths


def open_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except Exception as e:  # noqa: BLE001 - PIL raises many types
        raise UsageError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None


def resolve_model(model: str | Path) -> Path:
    """A detector .pt, or the name of a bundled demo detector (catdog, face)."""
    if str(model) in BUNDLED:
        path = DEMO / f"{model}.pt"
        if not path.is_file():
            raise UsageError(f"the demo {model} detector {path} is not built yet: run `make demo-models`, "
                             "or pass --model PATH.pt")
        return path
    return Path(model)


def predict(model, images: list[str | Path], out: str | Path, conf: float | None = None, iou: float | None = None,
            device: str | None = None, progress: bool = True, batch: int = 16) -> list[Path]:
    """Detect in each image file (a folder: the images in it); write OUT/<stem>.png (boxes drawn) and
    OUT/<stem>.json beside it.

    Every file is checked first (its header read), so an unreadable one fails before any model time is
    spent; the pixels are decoded a batch at a time, so a large folder does not fill the memory.
    """
    paths = expand(images)
    if not paths:
        raise UsageError("no images given")
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        dup = sorted({s for s in stems if stems.count(s) > 1})
        raise UsageError(f"several images share the name stem {dup[0]!r}; their outputs would overwrite each other")
    for path in paths:
        try:
            with Image.open(path) as im:
                im.verify()  # the header and, for PNG, the chunks' checksums; no decoding
        except Exception as e:  # noqa: BLE001 - PIL raises many types
            raise UsageError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
    model = resolve_model(model)
    det = Detector.load(model, device=device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tqdm(total=len(paths), desc="predict", unit="img", disable=not progress) as bar:
        for start in range(0, len(paths), batch):
            chunk = [(path, open_rgb(path)) for path in paths[start:start + batch]]
            for (path, pil), dets in zip(chunk, det.detect([p for _, p in chunk], conf=conf, iou=iou)):
                stem = out / path.stem
                draw_detections(pil, dets).save(stem.with_suffix(".png"))
                record = {"image": str(path), "model": str(model), "names": det.names} | dets.to_dict()
                stem.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
                written.append(stem.with_suffix(".png"))
            bar.update(len(chunk))
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m detection.predict", description=__doc__.split("\n\n")[0])
    ap.add_argument("images", nargs="+", help="image files (PNG, JPEG, WebP, ...) or folders of them")
    ap.add_argument("--model", default="catdog",
                    help="a detector .pt, or catdog / face for the demo bundle's (default: catdog)")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--conf", type=float, default=None, help="confidence threshold (default 0.25)")
    ap.add_argument("--iou", type=float, default=None, help="NMS IoU (default 0.7)")
    ap.add_argument("--device", default=None, help="cpu, 0, ... (default: cuda:0 when available)")
    args = ap.parse_args(argv)
    for flag, value in (("--conf", args.conf), ("--iou", args.iou)):
        if value is not None and not 0 <= value <= 1:
            ap.error(f"{flag} must be in [0, 1], got {value}")
    for p in predict(args.model, args.images, args.out, args.conf, args.iou, args.device):
        print(p)
    return 0


if __name__ == "__main__":
    run_cli(main)
