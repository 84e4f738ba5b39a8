"""Rejection sampling: generate N candidates for a prompt, keep those the judge passes.

    from evaluation.checked import generate_checked
    best = generate_checked(pipe, eyes, "two black cats", n_candidates=8, seed=0, steps=25)
    best[0].image, best[0].verdict.reason

`pipe` is a `generation.pipeline.TextToImage` (called with `seeds=` and the
sampling settings) or any `generate(prompt, seeds) -> images` function.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


def generate_checked(pipe, eyes: JudgeDetectors, prompt: str | PromptSpec, n_candidates: int = 8,
                     seed: int = 0, keep_failed: bool = False, **settings) -> list[Candidate]:
    """Candidates (seeds seed..seed+n-1) that pass, best first; with keep_failed=True all of
    them, passing ones first. A prompt the judge cannot read raises evaluation.prompts.ParseError."""
    if n_candidates < 1:
        raise ValueError(f"n_candidates must be >= 1, got {n_candidates}")
    spec = prompt if isinstance(prompt, PromptSpec) else parse_prompt(prompt)
    seeds = list(range(seed, seed + n_candidates))
    if hasattr(pipe, "generate_for_judge"):
        batch = pipe.generate_for_judge(spec.prompt, seeds, **settings)
    else:
        batch = pipe(spec.prompt, seeds, **settings)
    images = to_uint8_images(batch)
    found = eyes.detect(images)
    out = []
    for s, image, dets in zip(seeds, images, found):
        h, w = image.shape[:2]
        verdict = judge(spec, dets, (w, h), eyes.rules, image=image)
        out.append(Candidate(image, s, dets, verdict, _score(spec, dets)))
    out.sort(key=lambda c: (not c.verdict.passed, -c.score, c.seed))
    return out if keep_failed else [c for c in out if c.verdict.passed]
