"""models/demo/README.md: the bundle's model card, written from the build's own measurements."""

from __future__ import annotations

import json
from pathlib import Path

from evaluation.summary import markdown_table


def _load(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def _mb(path: Path) -> float:
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files) / 1e6


def write_card(work: Path, bundle: Path, profile: str, times: dict) -> Path:
    meta = _load(work / "scenes" / "meta.json") or {}
    vq = _load(work / "vqvae" / "metrics.json") or {}
    lines = [f"# gendet demo bundle ({profile} profile)", "",
             "Small models of our own, trained on the procedural scenes world; rebuilt from nothing with "
             f"`python -m models.build_demo --profile {profile}` (work folder `runs/demo_{profile}/`, "
             "commands in its build.log).", "",
             "## Data", "",
             f"- `datasets.scenes` {meta.get('generator')}, seed {meta.get('seed')}, {meta.get('n')} images at "
             f"{meta.get('size')}x{meta.get('size')} (train {meta.get('splits', {}).get('train')}, "
             f"val {meta.get('splits', {}).get('val')})", "",
             "## Contents", "", "| file | what | MB |", "|---|---|---|",
             f"| generator/ | VQ-VAE + scratch text encoder + diffusion transformer (EMA weights), safetensors | "
             f"{_mb(bundle / 'generator'):.1f} |",
             f"| catdog.pt | YOLO cat/dog detector (ultralytics) | {_mb(bundle / 'catdog.pt'):.1f} |",
             f"| face.pt | YOLO face detector (ultralytics) | {_mb(bundle / 'face.pt'):.1f} |", "",
             "## Measured", "",
             f"- VQ-VAE: val PSNR {vq.get('val_psnr', float('nan')):.2f} dB, {vq.get('codes_used')} codes used, "
             f"perplexity {vq.get('perplexity', float('nan')):.1f}"]
    for task in ("catdog", "face"):
        m = _load(bundle / f"{task}.metrics.json") or {}
        per = ", ".join(f"{c} {v['AP50']:.3f}/{v['AP50-95']:.3f}" for c, v in m.get("per_class", {}).items())
        lines.append(f"- {task} detector (scenes val): mAP50 {m.get('mAP50', float('nan')):.3f}, "
                     f"mAP50-95 {m.get('mAP50-95', float('nan')):.3f}; per class AP50/AP50-95: {per}")
    jv = _load(work / "judge_validation.json")
    if jv:
        lines += ["", "Judge agreement with ground truth on scenes val (`evaluation.validate_judge`):", "",
                  "| category | agreement | 95% CI | pairs |", "|---|---|---|---|"]
        for c, b in [*jv["categories"].items(), ("overall", jv["overall"])]:
            lines.append(f"| {c} | {b['accuracy']:.3f} | {b['ci95'][0]:.3f}-{b['ci95'][1]:.3f} | {b['n']} |")
    ev = _load(work / "eval" / "summary.json")
    if ev:
        lines += ["", f"Default suite, {ev['images_per_prompt']} images per prompt, seed {ev['seed']}, "
                  f"settings {ev['settings']} (`evaluation.run`):", "", markdown_table(ev)]
    lines += ["", "## Training time", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in times.items()]
    path = bundle / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path
