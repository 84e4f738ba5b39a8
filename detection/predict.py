"""Run a detector on image files: boxes drawn on a copy of each image, and JSON next to it.

    python -m detection.predict --model runs/catdog/best.pt photo1.jpg photo2.png --out runs/predict
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


def predict(model, images: list[str | Path], out: str | Path, conf: float | None = None, iou: float | None = None,
            device: str | None = None, progress: bool = True) -> list[Path]:
    det = Detector.load(model, device=device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in tqdm([Path(p) for p in images], desc="predict", unit="img", disable=not progress):
        try:
            with Image.open(path) as im:
                pil = im.convert("RGB")
        except Exception as e:  # noqa: BLE001 - PIL raises many types
            raise UsageError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
        dets = det.detect([pil], conf=conf, iou=iou)[0]
        stem = out / path.stem
        draw_detections(pil, dets).save(stem.with_suffix(".png"))
        record = {"image": str(path), "model": str(model), "names": det.names} | dets.to_dict()
        stem.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
        written.append(stem.with_suffix(".png"))
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m detection.predict", description=__doc__.split("\n\n")[0])
    ap.add_argument("images", nargs="+", help="image files (PNG, JPEG, WebP, ...)")
    ap.add_argument("--model", required=True, help="a detector .pt")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--conf", type=float, default=None, help="confidence threshold (default 0.25)")
    ap.add_argument("--iou", type=float, default=None, help="NMS IoU (default 0.7)")
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)
    for p in predict(args.model, args.images, args.out, args.conf, args.iou, args.device):
        print(p)
    return 0


if __name__ == "__main__":
    run_cli(main)
