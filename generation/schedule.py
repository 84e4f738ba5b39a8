"""The learning-rate curve both trainers use: linear warm-up, then cosine down to a tenth.

A function of the step alone, so a resumed run follows the same curve as an uninterrupted one;
except with `--schedule-by-time`, where the share of a time limit used can move it on (a machine
lent for minutes: the run still ends on the low rate, wherever the clock stops it).
"""

from __future__ import annotations

import math


def cosine_lr(step: int, lr: float, steps: int, warmup: int = 0, elapsed: float = 0.0) -> float:
    """lr at 0-based `step`: (step + 1) / warmup * lr during warm-up, then cosine from lr to lr / 10
    at `steps`, and lr / 10 after. `elapsed` (0..1), the share of a time limit used: the cosine
    then follows whichever of the steps and the time is further along."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = max((step - warmup) / max(1, steps - warmup), elapsed)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))
