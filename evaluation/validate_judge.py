"""How far can the judge be trusted? Run it on real scene images whose contents are known.

    python -m evaluation.validate_judge --data data/demo_scenes \\
        --detectors catdog=runs/catdog/best.pt,face=runs/face/best.pt --out runs/catdog

For every image of the split, the detectors run once; then every prompt of the
suite, and every caption of the image itself, is judged twice: on the
detections, and on the image's ground-truth objects (confidence 1, true
colours). Agreement is the share of (image, prompt) pairs where the two
verdicts are the same, per category; the image's own captions are all true, so
they also measure how often a right image is failed. Writes
`judge_validation.json` (and prints a table); written beside a detector (--out), it is
what evaluation.run quotes as the judge's agreement on every run with those detectors.

With `--through-vqvae DIR` every image first goes through a VQ-VAE (encode to
tokens, decode): the same table then measures what the tokenizer keeps of the
scenes in the judge's eyes, the ceiling of any generator drawing with it (a
generator that samples the training images perfectly still passes its true
captions no more often than their reconstructions do). Writes
`tokenizer_ceiling.json`, with the originals' figures beside it. Both reports also give the
share of true objects found (same label, IoU >= 0.5) per object size: what a tokenizer loses
first is small objects.

With `--through-generator DIR --filter-ratio R` every image is instead tokenised, noised to
depth R (about R of its tokens masked, as the generator's editing does) and completed by the
generator from its own first caption: where along the noise the generator loses the objects
(`completion_r0.5.json`; R = 1 starts from all-[MASK], plain generation from a true caption).
"""

from __future__ import annotations

import gendet_env

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from datasets.scenes import iou, read_objects as scenes_objects
from evaluation.detectors import JudgeDetectors
from evaluation.judge import DEFAULT_RULES, VERSIONS, judge
from evaluation.run import DEFAULT_DETECTORS
from evaluation.prompts import parse_prompt
from evaluation.suite import load_suite
from evaluation.summary import accuracy_block, write_json
from generation.vqvae import VQVAE


def read_objects(root: Path, split: str) -> list[dict]:
    path = root / "objects.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{root} has no objects.jsonl: --data must be a datasets.scenes root")
    return [row for row in scenes_objects(path) if row.get("split", "train") == split]


# images, and each image's own first caption -> the images the detectors see
ImageMap = Callable[[list[np.ndarray], list[str]], list[np.ndarray]]
# object size buckets for the recall report: the longer box side over the image side
SIZE_BUCKETS = ((0.0, 0.25), (0.25, 0.375), (0.375, 0.5), (0.5, 1.01))


def size_bucket(box, image_side: int) -> str:
    side = max(box[2] - box[0], box[3] - box[1]) / image_side
    lo, hi = next(b for b in SIZE_BUCKETS if b[0] <= side < b[1])
    return f"{lo:g}-{min(hi, 1):g}"


class VQRoundTrip:
    """uint8 RGB images -> the same images encoded to tokens and decoded by a VQ-VAE; keeps the
    mean PSNR of what it has seen."""

    def __init__(self, path: str | Path, device=None):
        path = Path(path)
        if (path / "vqvae").is_dir():  # a TextToImage folder: use its tokenizer
            path = path / "vqvae"
        self.path = path
        self.vqvae = VQVAE.from_pretrained(path, device=device).eval()
        self.psnr: list[float] = []

    def __call__(self, images: list[np.ndarray], captions: list[str] | None = None) -> list[np.ndarray]:
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255)
        x = x.to(next(self.vqvae.parameters()).device)
        with torch.no_grad():
            y = self.vqvae.decode(self.vqvae.encode(x), grid=self.vqvae.token_grid(tuple(x.shape[2:])))
        out = (y * 255).round().byte()
        mse = (out.float().div(255) - x).pow(2).mean(dim=(1, 2, 3)).clamp_min(1e-10)
        self.psnr += (-10 * torch.log10(mse)).tolist()
        return list(out.permute(0, 2, 3, 1).cpu().numpy())

    def info(self) -> dict:
        return {"vqvae": str(self.path), "images": len(self.psnr), "psnr": float(np.mean(self.psnr))}


class GeneratorCompletion:
    """uint8 RGB images -> the generator's completion of each from its tokens noised to depth
    `filter_ratio`, conditioned on the image's own caption (sampling seed 0, the model's
    sampling defaults otherwise)."""

    def __init__(self, path: str | Path, filter_ratio: float, device=None, steps: int | None = None):
        from generation.pipeline import TextToImage

        self.path, self.filter_ratio, self.steps = Path(path), float(filter_ratio), steps
        self.pipe = TextToImage.from_pretrained(path, device=device)
        self.pipe.diffusion.start_t_for_filter_ratio(self.filter_ratio)  # a bad ratio fails here, not mid-run
        self.images = 0

    def __call__(self, images: list[np.ndarray], captions: list[str]) -> list[np.ndarray]:
        out = []
        for image, caption in zip(images, captions):
            x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255)
            y = self.pipe(caption, seed=0, steps=self.steps, init_image=x, filter_ratio=self.filter_ratio).images[0]
            out.append((y * 255).round().byte().permute(1, 2, 0).cpu().numpy())
        self.images += len(out)
        return out

    def info(self) -> dict:
        return {"generator": str(self.path), "filter_ratio": self.filter_ratio, "images": self.images,
                "settings": {**self.pipe.defaults, "steps": self.steps or self.pipe.defaults["steps"], "seed": 0}}


def validate(root, eyes: JudgeDetectors, suite="default", split: str = "val", limit: int | None = None,
             batch: int = 16, progress: bool = True, image_map: ImageMap | None = None) -> dict:
    """`image_map`, when given, changes every batch of images before the detectors see them
    (VQRoundTrip: the tokenizer ceiling); the ground truth stays that of the original image."""
    root = Path(root)
    rows = read_objects(root, split)[:limit]
    if not rows:
        raise ValueError(f"{root}: no images in split {split!r}")
    specs = list(load_suite(suite).prompts)
    own_captions = read_captions(root)
    agree: dict[str, list[bool]] = {}
    truth_pass: dict[str, list[bool]] = {}
    missed_true: dict[str, list[bool]] = {}  # own captions: failed although true
    found_by_size: dict[str, list[bool]] = {}  # each true object: a detection of its label at IoU >= 0.5?
    examples = []
    for start in tqdm(range(0, len(rows), batch), desc="judge validation", unit="batch", disable=not progress):
        chunk = rows[start:start + batch]
        images = [np.asarray(Image.open(root / r["image"]).convert("RGB")) for r in chunk]
        if image_map is not None:
            images = image_map(images, [(own_captions.get(r["image"]) or [""])[0] for r in chunk])
        found = eyes.detect(images)
        for row, image, dets in zip(chunk, images, found):
            gt = [{"label": o["label"], "confidence": 1.0, "box": o["box"], "color": o["color"]}
                  for o in row["objects"]]
            size = (row["width"], row["height"])
            for o in row["objects"]:
                found_by_size.setdefault(size_bucket(o["box"], max(size)), []).append(
                    any(d["label"] == o["label"] and iou(d["box"], o["box"]) >= 0.5 for d in dets))
            captions = own_captions.get(row["image"], [])
            for spec, own in [(s, False) for s in specs] + [(parse_prompt(c), True) for c in captions]:
                reference = judge(spec, gt, size, eyes.rules).passed
                verdict = judge(spec, dets, size, eyes.rules, image=image)
                same = verdict.passed == reference
                agree.setdefault(spec.category, []).append(same)
                truth_pass.setdefault(spec.category, []).append(reference)
                if own:
                    missed_true.setdefault(spec.category, []).append(not verdict.passed)
                if not same and len(examples) < 50:
                    examples.append({"image": row["image"], "prompt": spec.prompt, "truth": reference,
                                     "judged": verdict.passed, "reason": verdict.reason})
    all_agree = [a for v in agree.values() for a in v]
    return {
        "data": str(root), "split": split, "images": len(rows), "suite": str(suite),
        "judge": eyes.rules.to_dict(), "detectors": eyes.info(),
        "overall": accuracy_block(all_agree),
        "categories": {c: accuracy_block(v) | {"truth_pass_rate": float(np.mean(truth_pass[c]))}
                       for c, v in sorted(agree.items())},
        "true_captions_failed": {c: float(np.mean(v)) for c, v in sorted(missed_true.items())},
        "recall_by_size": {b: {"recall": float(np.mean(v)), "objects": len(v)}
                           for b, v in sorted(found_by_size.items())},
        "disagreements": examples,
    }


def read_captions(root: Path) -> dict[str, list[str]]:
    """image path -> its own captions (captions.jsonl)."""
    path = root / "captions.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{root} has no captions.jsonl: --data must be a datasets.scenes root")
    with open(path) as fh:
        return {r["image"]: r["captions"] for r in map(json.loads, filter(str.strip, fh))}


def format_table(report: dict) -> str:
    # through a model, the truth is still the original image's objects
    what = ("with the originals' ground truth, on the generator's completions" if "through_generator" in report else
            "with the originals' ground truth, on the VQ-VAE's reconstructions" if "through_vqvae" in report else
            "with ground truth")
    lines = [f"judge agreement {what} ({report['images']} {report['split']} images of {report['data']})",
             f"{'category':<14} {'agreement':>9} {'95% CI':>15} {'pairs':>7} {'true caps failed':>17}"]
    for c, b in [*report["categories"].items(), ("overall", report["overall"])]:
        failed = report["true_captions_failed"].get(c)
        lines.append(f"{c:<14} {b['accuracy']:>9.3f} {b['ci95'][0]:>7.3f}-{b['ci95'][1]:.3f} {b['n']:>7} "
                     f"{'' if failed is None else f'{failed:.3f}':>17}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m evaluation.validate_judge", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="a datasets.scenes root")
    ap.add_argument("--detectors", default=DEFAULT_DETECTORS, help="catdog=PATH,face=PATH (default: the demo's)")
    ap.add_argument("--suite", default="default", help="suite name or YAML file (default: default)")
    ap.add_argument("--split", default="val", choices=("train", "val"), help="split to judge (default val)")
    ap.add_argument("--limit", type=int, default=None, help="at most this many images")
    ap.add_argument("--device", type=gendet_env.device_arg, default=None,
                    help="cpu, 0, ... (default: cuda:0 if available)")
    ap.add_argument("--through-vqvae", type=Path, default=None, metavar="DIR",
                    help="a VQ-VAE (or generator) folder: judge its reconstructions instead, the tokenizer "
                         "ceiling (writes tokenizer_ceiling.json)")
    ap.add_argument("--through-generator", type=Path, default=None, metavar="DIR",
                    help="a generator folder: judge its completions of the images from their tokens noised to "
                         "--filter-ratio, each from its own caption (writes completion_rR.json)")
    ap.add_argument("--filter-ratio", type=float, default=None,
                    help="with --through-generator: noise depth, 1/T..1 (1: from all-[MASK]; default 0.5)")
    ap.add_argument("--steps", type=int, default=None,
                    help="with --through-generator: sampling steps (default: the model's)")
    ap.add_argument("--judge", choices=sorted(VERSIONS), default=DEFAULT_RULES.version,
                    help=f"the judge's rules (default {DEFAULT_RULES.version}; judge-1: as runs before it)")
    ap.add_argument("--out", type=Path, default=None,
                    help="folder for the JSON report (default: runs/judge_val/ and --data's folder name); "
                         "a detector's own folder, and evaluation.run quotes the agreement for those detectors")
    args = ap.parse_args(argv)
    if args.through_vqvae and args.through_generator:
        ap.error("give --through-vqvae or --through-generator, not both")
    if args.limit is not None and args.limit < 1:
        ap.error(f"--limit must be >= 1, got {args.limit}")
    for flag, value in (("--filter-ratio", args.filter_ratio), ("--steps", args.steps)):
        if value is not None and args.through_generator is None:
            ap.error(f"{flag} only applies with --through-generator")
    if args.filter_ratio is None:
        args.filter_ratio = 0.5
    out = args.out or gendet_env.ROOT / "runs" / "judge_val" / args.data.resolve().name
    problem = gendet_env.unwritable(out)
    if problem:  # said now, not after the whole validation
        ap.error(problem)
    try:
        eyes = JudgeDetectors.load(args.detectors, device=args.device, rules=VERSIONS[args.judge])
        eyes.warn_unseen()  # prompts that expect such an object cannot pass: say so before the numbers
        trip = (VQRoundTrip(args.through_vqvae, device=args.device) if args.through_vqvae else
                GeneratorCompletion(args.through_generator, args.filter_ratio, device=args.device, steps=args.steps)
                if args.through_generator else None)
        report = validate(args.data, eyes, args.suite, args.split, args.limit, image_map=trip)
        if trip is not None:  # the same images as drawn, for the side-by-side the ceiling is read against
            plain = validate(args.data, eyes, args.suite, args.split, args.limit, progress=False)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if trip is not None:
        key = "through_vqvae" if args.through_vqvae else "through_generator"
        report[key] = trip.info() | {"originals_true_captions_failed": plain["true_captions_failed"],
                                     "originals_recall_by_size": plain["recall_by_size"]}
    out.mkdir(parents=True, exist_ok=True)
    name = ("tokenizer_ceiling.json" if args.through_vqvae else
            f"completion_r{args.filter_ratio:g}.json" if args.through_generator else "judge_validation.json")
    write_json(report, out / name)
    if args.through_vqvae:
        print(f"images through the VQ-VAE {trip.path}: mean PSNR {report['through_vqvae']['psnr']:.2f} dB")
        print("tokenizer ceiling (true captions still passed after the round trip): "
              + ", ".join(f"{c} {1 - v:.3f}" for c, v in report["true_captions_failed"].items()))
    elif args.through_generator:
        print(f"images completed by {trip.path} from {args.filter_ratio:g} of the noise; own captions passed: "
              + ", ".join(f"{c} {1 - v:.3f}" for c, v in report["true_captions_failed"].items()))
    print(format_table(report))
    print("true caps failed: the share of the images' own (true) captions the judge did not pass")
    print("objects found (IoU 0.5) by longer side / image side: " + ", ".join(
        f"{k} {v['recall']:.2f} of {v['objects']}" for k, v in report["recall_by_size"].items()))
    print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
