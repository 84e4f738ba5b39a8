"""Inference speed of a Detector: images/s through `Detector.detect` at several batch sizes, on
real scene images (or random noise when no data is given), after a warm-up, best of N repeats.

    python -m benchmarks.detection_speed --model models/demo/catdog.pt --batch 1 32
    python -m benchmarks.detection_speed --model runs/x/best.pt --data runs/scenes --device 0

The timed call is the whole public path a caller pays for: numpy images in, pre-processing,
the network, NMS, boxes mapped back to input pixels. Prints one JSON line per batch size; copy
the figures into benchmarks/RESULTS.md with the machine and this command.
"""

from __future__ import annotations

import gendet_env  # noqa: F401

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks._common import cpu_name, json_out_problem, timed, write_json
from detection._common import UsageError, run_cli
from detection.detector import Detector


def load_images(data: str | None, n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """`n` RGB images: the val split of a scenes/YOLO folder when given (cycled), else noise."""
    if data is None:
        rng = np.random.default_rng(seed)
        return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]
    root = Path(data)
    files = val_files(root)
    if not files:
        raise UsageError(f"{root}: no val images (.png/.jpg under a 'val' folder) for --data")
    return [np.asarray(Image.open(files[i % len(files)]).convert("RGB")) for i in range(n)]


def val_files(root: Path) -> list[Path]:
    """The val images under `root`, each once. A scenes root's catdog/ and face/ folders hold its
    images/val again (links to the same files): a folder with an images/val of its own (a scenes
    root, a YOLO task folder) is read there alone; any other, every file under a 'val' folder (or
    all of it, when it is one)."""
    own = root / "images" / "val"
    base = own if own.is_dir() else root
    return sorted(p for p in base.rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"}
                  and "val" in (root.name, *p.relative_to(root).parts[:-1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.detection_speed", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/demo/catdog.pt", help="detector .pt (default: the demo cat/dog one)")
    ap.add_argument("--data", default=None, help="scenes root or YOLO folder whose val images are used "
                                                 "(default: random images of --size)")
    ap.add_argument("--size", type=int, default=None,
                    help="image side for random images, without --data (default: the detector's own training "
                         "size)")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 32], help="batch sizes to time (default 1 32)")
    ap.add_argument("--device", type=gendet_env.device_arg, default="0" if torch.cuda.is_available() else "cpu",
                    help="cpu, cuda, cuda:N, N or mps (default: cuda:0 when a GPU is there)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per batch size, the best kept (default 3)")
    ap.add_argument("--json-out", default=None, help="also write the results as a JSON list here")
    args = ap.parse_args(argv)
    if any(b < 1 for b in args.batch) or args.repeats < 1:
        ap.error("--batch sizes and --repeats must be >= 1")
    if args.size is not None and args.size < 1:
        ap.error(f"--size must be >= 1 (got {args.size})")
    if args.size is not None and args.data is not None:
        ap.error("--size is for the random images; with --data the images keep their own size")
    problem = json_out_problem(args.json_out)
    if problem:
        ap.error(problem)
    model = Path(args.model)
    det = Detector.load(model, device=args.device)  # a missing or bad .pt: a UsageError naming it
    images = load_images(args.data, max(args.batch), args.size or det.imgsz)
    det.detect(images[:max(args.batch)], batch=max(args.batch))  # warm-up: lazy init, allocator, kernel choice
    gpu = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else None
    results = []
    for batch in args.batch:
        # one forward pass per call
        best = min(timed(lambda: det.detect(images[:batch], batch=batch), args.device) for _ in range(args.repeats))
        results.append({"model": str(model), "imgsz": det.imgsz, "input": f"{images[0].shape[1]}x{images[0].shape[0]}",
                        "device": args.device, "threads": torch.get_num_threads(), "batch": batch,
                        "seconds": round(best, 6), "images_per_s": round(batch / best, 1),  # a batch may take <5 ms
                        "cpu": cpu_name(), "cores": os.cpu_count(), "gpu": gpu})
        print(json.dumps(results[-1]), flush=True)
    if args.json_out:
        write_json(args.json_out, results)
    return 0


if __name__ == "__main__":
    run_cli(main)
