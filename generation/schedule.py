"""The learning-rate curve both trainers use: linear warm-up, then cosine down to a tenth.

A function of the step alone, so a resumed run follows the same curve as an uninterrupted one.
"""

from __future__ import annotations

import math


def cosine_lr(step: int, lr: float, steps: int, warmup: int = 0) -> float:
    """lr at 0-based `step`: (step + 1) / warmup * lr during warm-up, then cosine from lr to lr / 10
    at `steps`, and lr / 10 after."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))
