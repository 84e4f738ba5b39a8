"""Accuracy with bootstrap confidence intervals, per category and overall, from result rows.

A row is one judged image: at least {"category": str, "verdict": {"passed": bool}}.
The interval is the percentile bootstrap over images (resampled within each
category, and over all images for the overall figure), seeded, so the same rows
always give the same numbers. Where every image passed, or none did, the bootstrap
has no spread to resample ("1.000-1.000" from 100 passes, or from one): there the
interval is the exact (Clopper-Pearson) one, which for n of n passes is
[(0.025)^(1/n), 1]: 0.964-1 for 100 images, 0.025-1 for one.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0


def bootstrap_ci(passed, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of 0/1 outcomes; the exact binomial interval
    where all outcomes are equal (the bootstrap would give a width of zero)."""
    x = np.asarray(passed, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no outcomes to bootstrap")
    if x.min() == x.max():  # Clopper-Pearson at 0 or n successes has this closed form
        edge = float(((1 - level) / 2) ** (1 / x.size))
        return (edge, 1.0) if x[0] == 1 else (0.0, 1.0 - edge)
    rng = np.random.default_rng(seed)
    # the mean of a resample of n Bernoulli outcomes is Binomial(n, p_hat) / n
    means = rng.binomial(x.size, x.mean(), size=samples) / x.size
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def accuracy_block(passed) -> dict:
    lo, hi = bootstrap_ci(passed)
    return {"accuracy": float(np.mean(passed)), "ci95": [lo, hi], "n": int(len(passed))}


def summarize(rows: list[dict]) -> dict:
    """{"overall": {...}, "categories": {name: {...}}} over judged rows (rows without a
    verdict, e.g. prompts the judge could not read, are counted under "not_judged")."""
    judged = [r for r in rows if r.get("verdict") is not None]
    if not judged:
        raise ValueError("no judged rows to summarise")
    by_cat: dict[str, list[bool]] = {}
    for r in judged:
        by_cat.setdefault(r["category"], []).append(bool(r["verdict"]["passed"]))
    out = {"overall": accuracy_block([p for v in by_cat.values() for p in v]),
           "categories": {c: accuracy_block(v) for c, v in sorted(by_cat.items())}}
    if len(judged) != len(rows):
        out["not_judged"] = len(rows) - len(judged)
    return out


def accuracy_by_block(rows: list[dict], per_block: int) -> list[float]:
    """Overall accuracy of each block of `per_block` images per prompt (image_index // per_block),
    over judged rows. Under the runner's seed rule a run at seed 0 with n * per_block images per
    prompt holds, in block b, exactly the images a run at seed b with per_block draws: the blocks
    are that many independent repeats, and their spread is the noise of one such run."""
    if per_block < 1:
        raise ValueError(f"per_block must be >= 1, got {per_block}")
    blocks: dict[int, list[bool]] = {}
    for r in rows:
        if r.get("verdict") is not None:
            blocks.setdefault(r["image_index"] // per_block, []).append(bool(r["verdict"]["passed"]))
    return [float(np.mean(blocks[b])) for b in sorted(blocks)]


def write_csv(summary: dict, path: str | Path) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["category", "accuracy", "ci95_low", "ci95_high", "n"])
        for name, b in [("overall", summary["overall"]), *summary["categories"].items()]:
            w.writerow([name, f"{b['accuracy']:.4f}", f"{b['ci95'][0]:.4f}", f"{b['ci95'][1]:.4f}", b["n"]])


def markdown_table(summary: dict) -> str:
    """The summary as a Markdown table (README, model cards)."""
    lines = ["| category | accuracy | 95% CI | images |", "|---|---|---|---|"]
    for name, b in [*summary["categories"].items(), ("**overall**", summary["overall"])]:
        lines.append(f"| {name} | {b['accuracy']:.3f} | {b['ci95'][0]:.3f}-{b['ci95'][1]:.3f} | {b['n']} |")
    return "\n".join(lines)


def describe_agreement(agreement: dict) -> str:
    """A summary's judge_validation ({"overall": 0.987, category: accuracy, ...}) in words."""
    rest = ", ".join(f"{c} {a:.1%}" for c, a in agreement.items() if c != "overall")
    overall = f"{agreement['overall']:.1%} overall" if "overall" in agreement else ""
    return f"{overall} ({rest})" if overall and rest else overall or rest


def write_json(obj, path: str | Path) -> None:
    """Atomic JSON write: a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    tmp.replace(path)
