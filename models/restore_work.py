"""Rebuild a demo build's records in its work folder from the committed model card, on a machine
whose runs/ is gone, so that models.build_demo can go on from the shipped bundle (a new training
round, then its evaluation, speed and card) without redoing 13 hours of stages.

    python -m models.restore_work                       # models/demo/README.md -> runs/demo_cpu/
    python -m models.restore_work --card CARD --work DIR

It writes what models.model_card reads and models.build_demo checks: the scenes folders' meta.json
(only the fields the card prints; no images), every round's config, build.log's commands, the
stage times, the judge validation and tokenizer ceiling, the detectors (the bundle's weights and
metrics) and their GPU speed lines, and the build's notes. Not the evaluation or the sampling
speed: those belong to a generator and are measured again. The generator rounds' weights are not
in a card: copy the bundle's generator to the last round's `pipeline/` to train from it.
"""

from __future__ import annotations

import gendet_env  # noqa: F401

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

ROOT = gendet_env.ROOT


def _dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))


def _find(pattern: str, text: str, what: str, flags: int = 0) -> re.Match:
    m = re.search(pattern, text, flags)
    if m is None:
        raise ValueError(f"the card has no {what} (a card written by models.model_card?)")
    return m


def restore(card_path: Path, work: Path, bundle: Path | None = None) -> list[str]:
    """Write the records; returns the paths written, relative to `work`."""
    card = card_path.read_text()
    bundle = bundle or card_path.parent
    note = f"restored from {card_path} by models.restore_work"
    written = []

    def dump(rel: str, obj) -> None:
        _dump(work / rel, obj)
        written.append(rel)

    m = _find(r"`datasets.scenes` (\S+)(?: \(its drawing version, meta.json's `generator`\))?, seed (\d+), (\d+) images "
              r"at (\d+)x\d+ \(train (\d+), val (\d+)\)", card,
              "Data line")
    version, (seed, n, size, train, val) = m.group(1), map(int, m.groups()[1:])
    scenes = {"generator": version, "seed": seed, "n": n, "size": size, "splits": {"train": train, "val": val},
              "restored": note}
    dump("scenes/meta.json", scenes)
    m = re.search(r"drawn on (.+?) backgrounds only \(`--backgrounds[^`]*`\)(?:, every object at least ([\d.]+))?", card)
    if m:
        dump("generator_scenes/meta.json", {**scenes, "backgrounds": m.group(1).split(" and "),
                                            "min_object": float(m.group(2) or 0)})
    for m in re.finditer(r"learns? (\d+) more of those scenes \(seed (\d+): train (\d+), val (\d+); `(\w+)`"
                         r"(?:; drawn by ([\w-]+))?\)", card):
        n_more, seed_more, train_more, val_more = map(int, m.groups()[:4])
        dump(f"{m.group(5)}/meta.json", {"generator": m.group(6) or version, "seed": seed_more, "n": n_more,
                                         "size": size, "splits": {"train": train_more, "val": val_more},
                                         "restored": note})

    # the configs, with the work folder's paths as the build writes them (the card prints them
    # repository-relative)
    relative = "runs/" + work.name
    for m in re.finditer(r"\(`(t2i\w*)\.yaml`, written by models.build_demo\):\n\n```yaml\n(.*?)```", card, re.S):
        text = re.sub(rf"(?m)^(\w+): {re.escape(relative)}(?=/)", lambda g: f"{g.group(1)}: {work}", m.group(2))
        (work / f"{m.group(1)}.yaml").write_text(text)
        written.append(f"{m.group(1)}.yaml")

    commands = _find(r"## Commands\n\n```\n(.*?)```", card, "Commands section", re.S).group(1).strip().splitlines()
    (work / "build.log").write_text("".join(f"$ {c}\n" for c in commands))
    written.append("build.log")
    times = _find(r"## Training time\n(.*)", card, "Training time section", re.S).group(1)
    # the evaluation and speed are the old generator's: a build measures them again
    dump("times.json", {k: float(v) for k, v in re.findall(r"(?m)^\| (\w+) \| (\d+) \|$", times)
                        if k not in ("evaluation", "speed")})

    if (bundle / "judge_validation.json").is_file():
        shutil.copy2(bundle / "judge_validation.json", work / "judge_validation.json")
        written.append("judge_validation.json")
    for task in ("catdog", "face"):
        if not (bundle / f"{task}.pt").is_file():
            continue
        (work / task).mkdir(parents=True, exist_ok=True)
        shutil.copy2(bundle / f"{task}.pt", work / task / "best.pt")
        shutil.copy2(bundle / f"{task}.metrics.json", work / task / "metrics.json")
        written += [f"{task}/best.pt", f"{task}/metrics.json"]
        m = re.search(rf"- {task} detector .*\n  - inference \(`Detector.detect`, imgsz (\d+)\) on ([^:]+): (.+)", card)
        if m:
            rates = re.findall(r"batch (\d+) (\d+) images/s", m.group(3))
            dump(f"{task}/speed.json", [{"gpu": m.group(2), "imgsz": int(m.group(1)), "batch": int(b),
                                         "images_per_s": float(r), "restored": note} for b, r in rates])

    part = card.split("Tokenizer ceiling:", 1)
    if len(part) == 2:
        psnr = float(_find(r"mean PSNR ([\d.]+) dB", part[1], "tokenizer ceiling PSNR").group(1))
        table, _, by_size = part[1].partition("Objects the detectors find")
        rows = re.findall(r"(?m)^\| (\w+) \| ([\d.]+) \| ([\d.]+) \|$", table)
        sizes = re.findall(r"(?m)^\| ([\d.]+-[\d.]+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \|$", by_size)
        # the card prints passed = 1 - failed, to 3 decimals
        dump("tokenizer_ceiling.json", {
            "true_captions_failed": {c: round(1 - float(r), 3) for c, _, r in rows},
            "recall_by_size": {k: {"recall": float(r)} for k, _, _, r in sizes},
            "through_vqvae": {"psnr": psnr,
                              "originals_true_captions_failed": {c: round(1 - float(o), 3) for c, o, _ in rows},
                              "originals_recall_by_size": {k: {"objects": int(n), "recall": float(o)}
                                                           for k, n, o, _ in sizes}},
            "restored": note})

    notes = re.search(r"## How this build was made\n\n(.*?)\n## ", card, re.S)
    if notes:
        (work / "NOTES.md").write_text(notes.group(1).strip() + "\n")
        written.append("NOTES.md")
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.restore_work", description=__doc__.split("\n\n")[0])
    ap.add_argument("--card", default=str(ROOT / "models" / "demo" / "README.md"), help="the bundle's model card (default models/demo/README.md)")
    ap.add_argument("--work", default=str(ROOT / "runs" / "demo_cpu"), help="the build's work folder (default runs/demo_cpu)")
    ap.add_argument("--force", action="store_true", help="overwrite a work folder that has records")
    args = ap.parse_args(argv)
    card, work = Path(args.card), Path(args.work).resolve()
    if not card.is_file():
        print(f"error: no model card at {card}", file=sys.stderr)
        return 2
    if (work / "times.json").is_file() and not args.force:
        print(f"error: {work} already holds a build's records (times.json); --force overwrites them", file=sys.stderr)
        return 2
    try:
        written = restore(card, work)
    except ValueError as e:
        print(f"error: {card}: {e}", file=sys.stderr)
        return 2
    print(f"restored {len(written)} records into {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
