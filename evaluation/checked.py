"""Rejection sampling: generate N candidates for a prompt, keep those the judge passes.

    python -m evaluation.checked "two black cats" --candidates 8 --keep 2 --out out/
    python -m evaluation.checked "a dog" --avoid face --model runs/t2i/pipeline --detectors catdog=A.pt,face=B.pt

    from evaluation.checked import generate_checked
    best = generate_checked(pipe, eyes, "two black cats", n_candidates=8, seed=0, steps=25)
    best[0].image, best[0].verdict.reason

`pipe` is a `generation.pipeline.TextToImage` (called with `seeds=` and the
sampling settings) or any `generate(prompt, seeds) -> images` function.

The command line writes the passing images, best first (the expected objects' mean confidence),
as OUT/<prompt>_<seed>.png with the settings and verdict in the PNG (never over another image:
then -2, -3, ...), and appends every candidate's verdict and detections to OUT/checked.jsonl. It exits 0 when an image passed, 1 when none did
(for scripts: try more candidates or another seed), 2 on bad input. Ctrl-C stops the drawing: the batches
already drawn are ranked and written as above, and it exits 130.
"""

from __future__ import annotations

import gendet_env

import argparse
import json
import time
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from evaluation.detectors import JudgeDetectors
from evaluation.judge import Verdict, judge
from evaluation.prompts import parse_prompt
from evaluation.runner import to_uint8_images
from evaluation.spec import PromptSpec


@dataclass
class Candidate:
    image: np.ndarray     # HxWx3 uint8 RGB
    seed: int
    detections: list[dict]
    verdict: Verdict
    score: float          # mean confidence of the expected objects: how clearly the image shows them


def _score(spec: PromptSpec, detections: list[dict]) -> float:
    wanted = {c for c, r in spec.expect.items() if r.get("count", 1) > 0}
    conf = [d["confidence"] for d in detections if d["label"] in wanted]
    return float(np.mean(conf)) if conf else 0.0


def draw_candidates(pipe, eyes: JudgeDetectors, spec: PromptSpec, seeds: list[int], batch: int | None = None,
                    **settings):
    """Yield each seed's judged Candidate, in seed order, `batch` drawn at a time (default: all at
    once): a caller interrupted midway keeps the batches already drawn."""
    generate = pipe.generate_for_judge if hasattr(pipe, "generate_for_judge") else pipe
    step = batch or len(seeds)
    for i in range(0, len(seeds), step):
        images = to_uint8_images(generate(spec.prompt, seeds[i:i + step], **settings))
        for s, image, dets in zip(seeds[i:i + step], images, eyes.detect(images)):
            h, w = image.shape[:2]
            verdict = judge(spec, dets, (w, h), eyes.rules, image=image)
            yield Candidate(image, s, dets, verdict, _score(spec, dets))


def best_first(candidates: list[Candidate], keep_failed: bool = False) -> list[Candidate]:
    """Passing candidates first, each group by score (ties by seed); the failed ones only if asked."""
    ranked = sorted(candidates, key=lambda c: (not c.verdict.passed, -c.score, c.seed))
    return ranked if keep_failed else [c for c in ranked if c.verdict.passed]


def generate_checked(pipe, eyes: JudgeDetectors, prompt: str | PromptSpec, n_candidates: int = 8,
                     seed: int = 0, keep_failed: bool = False, batch: int | None = None,
                     **settings) -> list[Candidate]:
    """Candidates (seeds seed..seed+n-1) that pass, best first; with keep_failed=True all of
    them, passing ones first. `batch`: at most this many drawn at once (default: all), the same
    images either way. A prompt the judge cannot read raises evaluation.prompts.ParseError."""
    if n_candidates < 1:
        raise ValueError(f"n_candidates must be >= 1, got {n_candidates}")
    if batch is not None and batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    spec = prompt if isinstance(prompt, PromptSpec) else parse_prompt(prompt)
    seeds = list(range(seed, seed + n_candidates))
    return best_first(list(draw_candidates(pipe, eyes, spec, seeds, batch, **settings)), keep_failed)


def main(argv=None) -> int:
    from evaluation.prompts import ParseError
    from evaluation.run import DEFAULT_DETECTORS, DEMO
    from generation.sampling_options import add_sampling_options, clean_prompt, sampling_settings

    ap = argparse.ArgumentParser(prog="python -m evaluation.checked", description=__doc__.split("\n\n")[0],
                                 epilog="Exit status: 0 when an image passed, 1 when none did, 2 on bad input, 130 "
                                        "on Ctrl-C (the batches drawn by then are ranked and written).")
    ap.add_argument("prompt", help='what to draw, in words the judge reads, e.g. "two black cats"')
    ap.add_argument("--candidates", type=int, default=8, help="images drawn, seeds SEED to SEED+N-1 (default 8)")
    ap.add_argument("--keep", type=int, default=None, help="write at most this many passing images (default: all)")
    ap.add_argument("--avoid", default=None, metavar="CLASSES",
                    help="comma-separated classes that must not appear (cat, dog, face); also for prompts the "
                         "judge cannot otherwise read")
    ap.add_argument("--seed", type=int, default=0, help="seed of the first candidate (default 0)")
    ap.add_argument("--batch", type=int, default=8,
                    help="candidates drawn at once (default 8); the images are the same whatever the batch")
    ap.add_argument("--model", default=str(DEMO / "generator"), help="a saved pipeline folder (default: the demo's)")
    ap.add_argument("--detectors", default=DEFAULT_DETECTORS, help="catdog=PATH,face=PATH (default: the demo's)")
    add_sampling_options(ap)
    ap.add_argument("--device", type=gendet_env.device_arg, default=None,
                    help="cpu, cuda, cuda:1 (default: cuda when available)")
    ap.add_argument("--out", default="out", help="output folder (default ./out)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    args.prompt = clean_prompt(args.prompt)  # recorded in the PNGs and checked.jsonl as meant
    from generation.pipeline import DEFAULTS, TextToImage
    from generation.png_info import save_png
    from generation.sample import free_path

    # everything that can be wrong with the command is found before a model loads
    for flag, value in (("--candidates", args.candidates), ("--batch", args.batch)):
        if value < 1:
            ap.error(f"{flag} must be >= 1, got {value}")
    if args.keep is not None and args.keep < 1:
        ap.error(f"--keep must be >= 1, got {args.keep}")
    if args.seed < 0:
        ap.error(f"--seed must be >= 0, got {args.seed}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        ap.error(f"--out {args.out}: exists and is not a folder")
    avoid = [c.strip() for c in args.avoid.split(",") if c.strip()] if args.avoid else []
    unknown = sorted(set(avoid) - {"cat", "dog", "face"})
    if unknown:
        ap.error(f"--avoid: {', '.join(unknown)} is not one of cat, dog, face")
    try:
        spec = parse_prompt(args.prompt)
    except ParseError as e:
        if not avoid:
            ap.error(f"{e}; prompts the judge reads: 'a cat', 'two black dogs', 'a dog to the left of a face' "
                     "(or give --avoid)")
        spec = PromptSpec.absent(args.prompt, avoid)
    else:
        asked = [c for c in avoid if spec.expect.get(c, {}).get("count", 1) > 0]
        if asked:
            ap.error(f"--avoid {','.join(asked)} contradicts the prompt {args.prompt!r}, which asks for "
                     f"{' and '.join(asked)}")
        spec = spec.excluding(avoid) if avoid else spec
    settings = sampling_settings(ap, args)
    problem = gendet_env.unwritable(args.out)
    if problem:  # said now, not after every candidate is drawn
        ap.error(problem)
    try:
        pipe = TextToImage.from_pretrained(args.model, device=args.device)
        eyes = JudgeDetectors.load(args.detectors, device=args.device)
        eyes.warn_unseen()
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from tqdm import tqdm

    effective = {**{k: pipe.defaults[k] for k in DEFAULTS}, **settings}
    batches = -(-args.candidates // args.batch)
    seeds = list(range(args.seed, args.seed + args.candidates))
    drawn, stopped = [], False
    try:
        with tqdm(total=effective["steps"] * batches, desc=f"{args.candidates} candidates", unit="step",
                  disable=args.quiet) as bar:
            for candidate in draw_candidates(pipe, eyes, spec, seeds, args.batch, **settings,
                                             callback=lambda i, t, x0: bar.update()):
                drawn.append(candidate)
    except KeyboardInterrupt:  # the batches already drawn are ranked and written; the rest are not drawn
        stopped = True
        if not drawn:
            print(f"\ninterrupted before the first batch of {min(args.batch, args.candidates)} was drawn: nothing "
                  f"written to {args.out}", file=sys.stderr)
            return 130
        seeds_drawn = f"seed {drawn[0].seed}" if len(drawn) == 1 else f"seeds {drawn[0].seed}-{drawn[-1].seed}"
        print(f"\ninterrupted: ranking the {len(drawn)} of {args.candidates} candidates drawn ({seeds_drawn})",
              file=sys.stderr)
    found = best_first(drawn, keep_failed=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")  # which run a row of the appended log came from
    rows, kept = [], 0
    for c in found:
        path = None
        if c.verdict.passed and (args.keep is None or kept < args.keep):
            recorded = {"prompt": args.prompt, "seed": c.seed, **effective, "model": gendet_env.shown_path(args.model),
                        "verdict": c.verdict.reason, "passed": True}
            # never over a file gendet did not write, or an image drawn otherwise (then -2, -3, ...)
            path = save_png(Image.fromarray(c.image), free_path(out, args.prompt, c.seed, recorded), recorded)
            kept += 1
        rows.append({"run": started, "prompt": args.prompt, "seed": c.seed, "passed": c.verdict.passed,
                     "reason": c.verdict.reason, "score": round(c.score, 4), "detections": c.detections,
                     "image": path and path.name})
        print(f"seed {c.seed}: {'pass' if c.verdict.passed else 'fail'} ({c.verdict.reason})"
              + (f" -> {path}" if path else ""))
    with open(out / "checked.jsonl", "a", encoding="utf-8") as fh:  # after the rows of earlier runs
        fh.write("".join(json.dumps(r) + "\n" for r in rows))
    passed = sum(r["passed"] for r in rows)
    print(f"{passed} of {len(rows)} candidate{'s' * (len(rows) != 1)} pass{'es' * (len(rows) == 1)}; {kept} written to {out}")
    return 130 if stopped else 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
