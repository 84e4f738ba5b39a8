"""models/demo/README.md: the bundle's model card, written from the build's own measurements."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from statistics import stdev

import yaml

from evaluation.summary import accuracy_by_block, markdown_table
from generation.sampling_options import describe_settings
from models.build_demo import MORE_ROUNDS, PROFILES, STAGES

# how the card introduces each further training round's config (build_demo.MORE_ROUNDS); which
# scenes a round learned is its config's `data` (and the card's Data section)
ROUND_LABELS = {"generator_more": "Then trained further from its EMA weights",
                "generator_more2": "And once more, from that round's EMA weights",
                "generator_more3": "And a fourth round, from that one's EMA weights",
                "generator_more4": "And a fifth, from the fourth's EMA weights",
                "generator_more5": "And a sixth, from the fifth's EMA weights, its transformer grown to more blocks",
                "generator_more6": "And a seventh, from the sixth's EMA weights",
                "generator_more7": "And an eighth, from the seventh's EMA weights",
                "generator_more8": "And a ninth, from the eighth's EMA weights",
                "generator_more9": "And a tenth, from the ninth's EMA weights, its transformer grown to more blocks"}


BLOCK = 4  # images per prompt in issue 7's bars; a larger evaluation is reported in blocks of this


def _load(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def _rounds_on_own_scenes(work: Path) -> dict[str, list[int]]:
    """Scenes folder -> the training rounds (the first generator stage is round 1) that learned
    it, for the rounds given scenes of their own (read from the configs the build wrote)."""
    own: dict[str, list[int]] = {}
    for number, out in enumerate(MORE_ROUNDS.values(), start=2):
        config = work / f"{out}.yaml"
        data = Path(yaml.safe_load(config.read_text())["data"]) if config.is_file() else None
        if data is not None and data.parent == work and data.name != "generator_scenes" and \
                (data / "meta.json").is_file():
            own.setdefault(data.name, []).append(number)
    return own


def _mb(path: Path) -> float:
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files) / 1e6


def _commands(log: Path, root: Path) -> list[str]:
    """The build's commands from build.log, repository-relative: the last run of each stage
    (a restarted or resumed stage keeps its final command), in the order of those last runs."""
    last: dict[tuple, str] = {}
    lines = log.read_text().splitlines() if log.is_file() else []
    for line in lines:
        if not line.startswith("$ "):
            continue
        try:  # build_demo quotes its commands (shlex.join); an unbalanced quote is an older log's
            words = shlex.split(line[2:])
        except ValueError:
            words = line[2:].split()
        words = [w.replace(f"{root}/", "") for w in words if w != "--resume"]
        words[0] = "python"
        # the same module may run several times as different stages: per detector task, per
        # generator config, the judge validation with and without --through-vqvae, per scenes folder
        variant = (words[words.index("--task") + 1] if "--task" in words[:-1] else
                   words[words.index("--config") + 1] if "--config" in words[:-1] else
                   ("--through-vqvae" in words, words[words.index("--out") + 1] if "--out" in words[:-1] else None))
        key = (words[2] if len(words) > 2 and words[1] == "-m" else words[0], variant)
        if key[0] == "datasets.scenes" and last.get(key) == shlex.join(words):
            continue  # the same scenes drawn again (on another machine: the same files) stay before their readers
        # at its last run's position: a stage rerun after a new one (the evaluation of a bundle
        # with a new generator round) is listed after it, as the bundle was made
        last.pop(key, None)
        last[key] = shlex.join(words)
    return list(last.values())


def _blocks_line(results: Path, per_prompt: int, block: int = BLOCK) -> list[str]:
    """The evaluation's overall accuracy per block of `block` images per prompt (the bar's count),
    where it drew several: how far one such run could have landed from the pooled figure."""
    if per_prompt <= block or per_prompt % block or not results.is_file():
        return []
    from evaluation.runner import read_rows

    per_block = accuracy_by_block(read_rows(results), block)
    return ["", f"The same images in {len(per_block)} blocks of {block} per prompt (block b holds the images "
            f"`evaluation.run --seed b --images-per-prompt {block}` draws), overall: "
            + ", ".join(f"{a:.3f}" for a in per_block)
            + f" (SD {stdev(per_block):.3f}): the spread of a single {block}-image run."]


def rebuild_command(work: Path, profile: str) -> str:
    """The build_demo command that made this bundle, and its work folder: a work folder named
    runs/demo_<profile> (the default, in any clone) reads as the committed card does; another is
    named as given."""
    if Path(work).parts[-2:] == ("runs", f"demo_{profile}"):
        return f"`python -m models.build_demo --profile {profile}` (work folder `runs/demo_{profile}/`"
    return f"`python -m models.build_demo --profile {profile} --work {shlex.quote(str(work))}` (work folder `{work}/`"


# the smoke profile trains for seconds on 40 tiny scenes: a dry run of the recipe, not models to use
SMOKE_NOTE = ("**Placeholders.** The smoke profile is a dry run of the recipe (seconds of training on 40 "
              "scenes at 32 px): these models draw noise and detect little. They test the build, not the "
              "models; the shipped bundle is `--profile cpu`'s.")


def write_card(work: Path, bundle: Path, profile: str, times: dict) -> Path:
    meta = _load(work / "scenes" / "meta.json") or {}
    vq = _load(work / "vqvae" / "metrics.json") or {}
    lines = [f"# gendet demo bundle ({profile} profile)", "",
             "Small models of our own, trained on the procedural scenes world; rebuilt from nothing with "
             f"{rebuild_command(work, profile)}, commands in its build.log).", "",
             *([SMOKE_NOTE, ""] if profile == "smoke" else []),
             "## Data", "",
             f"- `datasets.scenes` {meta.get('generator')} (its drawing version, meta.json's `generator`), seed "
             f"{meta.get('seed')}, {meta.get('n')} images at "
             f"{meta.get('size')}x{meta.get('size')} (train {meta.get('splits', {}).get('train')}, "
             f"val {meta.get('splits', {}).get('val')})"]
    gen_meta = _load(work / "generator_scenes" / "meta.json")
    if gen_meta:
        lines.append(f"- the generator (VQ-VAE and transformer) learns the same scenes drawn on "
                     f"{' and '.join(gen_meta['backgrounds'])} backgrounds only (`--backgrounds {','.join(gen_meta['backgrounds'])}`)"
                     + (f", every object at least {gen_meta['min_object']:g} of the image side (`--min-object`)"
                        if gen_meta.get("min_object") else "")
                     + "; the detectors train and are validated on all of them")
    for folder, rounds in _rounds_on_own_scenes(work).items():  # later rounds' own, larger sets
        more = _load(work / folder / "meta.json")
        which = f"round {rounds[0]}" if len(rounds) == 1 else "rounds " + ", ".join(map(str, rounds[:-1])) + \
            f" and {rounds[-1]}"
        # a later scenes version (captions changed) is named where it differs from the first set's
        version = f"; drawn by {more['generator']}" if more.get("generator") != meta.get("generator") else ""
        lines.append(f"- the generator's {which} learn{'s' if len(rounds) == 1 else ''} {more['n']} more of those "
                     f"scenes (seed {more['seed']}: train {more['splits']['train']}, val {more['splits']['val']}; "
                     f"`{folder}`{version})")
    lines += ["", "## Contents", "", "| file | what | MB |", "|---|---|---|",
              f"| generator/ | VQ-VAE + scratch text encoder + diffusion transformer (EMA weights), safetensors | "
              f"{_mb(bundle / 'generator'):.1f} |",
              f"| catdog.pt | YOLO cat/dog detector (ultralytics) | {_mb(bundle / 'catdog.pt'):.1f} |",
              f"| face.pt | YOLO face detector (ultralytics) | {_mb(bundle / 'face.pt'):.1f} |", "",
              "## Measured", "",
              f"- VQ-VAE: val PSNR {vq.get('val_psnr', float('nan')):.2f} dB pooled"
              + (f" over {vq['val_images']} val images" if vq.get("val_images") else "")
              + (f" ({vq['val_psnr_per_image']:.2f} dB per image)" if "val_psnr_per_image" in vq else "")
              + f", {vq.get('codes_used')} codes used, "
              f"perplexity {vq.get('perplexity', float('nan')):.1f}"
              + (" on the generator's scenes" if gen_meta else "")
              + (f" (stopped by its {vq['stopped']}, at step {vq['step']})" if vq.get("stopped") else "")
              # what an earlier build's stages kept, e.g. "VQ-VAE kept from the build of commit abc"
              + (f" ({vq['restored_from']}; the later stages were rebuilt)" if vq.get("restored_from") else "")]
    for task in ("catdog", "face"):
        m = _load(bundle / f"{task}.metrics.json") or {}
        per = ", ".join(f"{c} {v['AP50']:.3f}/{v['AP50-95']:.3f}" for c, v in m.get("per_class", {}).items())
        lines.append(f"- {task} detector (scenes val): mAP50 {m.get('mAP50', float('nan')):.3f}, "
                     f"mAP50-95 {m.get('mAP50-95', float('nan')):.3f}; per class AP50/AP50-95: {per}"
                     + (f" (kept from {m['restored_from']})" if m.get("restored_from") else ""))
        speed = _load(work / task / "speed.json")  # benchmarks.detection_speed, where the GPU call ran it
        if speed:
            where = speed[0]["gpu"] or f"CPU {speed[0]['cpu']}"
            rates = ", ".join(f"batch {r['batch']} {r['images_per_s']:.0f} images/s" for r in speed)
            lines.append(f"  - inference (`Detector.detect`, imgsz {speed[0]['imgsz']}) on {where}: {rates}")
    jv = _load(work / "judge_validation.json")
    if jv:
        lines += ["", "Judge agreement with ground truth on scenes val (`evaluation.validate_judge`):", "",
                  "| category | agreement | 95% CI | pairs |", "|---|---|---|---|"]
        for c, b in [*jv["categories"].items(), ("overall", jv["overall"])]:
            lines.append(f"| {c} | {b['accuracy']:.3f} | {b['ci95'][0]:.3f}-{b['ci95'][1]:.3f} | {b['n']} |")
    ceiling = _load(work / "tokenizer_ceiling.json")
    if ceiling:
        # older reports lack the originals of their own data: then those of the judge validation
        originals = ceiling["through_vqvae"].get("originals_true_captions_failed") or (jv or {}).get(
            "true_captions_failed", {})
        passed = {c: 1 - v for c, v in originals.items()}
        kept = {c: 1 - v for c, v in ceiling["true_captions_failed"].items()}
        data = "the generator's scenes val" if gen_meta else "scenes val"
        lines += ["", f"Tokenizer ceiling: the images' own (true) captions that the judge passes on {data}, "
                  f"as drawn and after the VQ-VAE round trip (mean PSNR {ceiling['through_vqvae']['psnr']:.2f} dB; "
                  "`evaluation.validate_judge --through-vqvae`). A generator drawing through this tokenizer "
                  "cannot pass more often than the second column:", "",
                  "| category | originals | reconstructions |", "|---|---|---|"]
        lines += [f"| {c} | {passed[c]:.3f} | {kept.get(c, float('nan')):.3f} |" for c in passed]
        by_size = ceiling["through_vqvae"].get("originals_recall_by_size")
        if by_size:
            lines += ["", "Objects the detectors find (same label, IoU >= 0.5), by the longer box side over the image "
                      "side:", "", "| object size | objects | originals | reconstructions |", "|---|---|---|---|"]
            lines += [f"| {k} | {v['objects']} | {v['recall']:.3f} | {ceiling['recall_by_size'][k]['recall']:.3f} |"
                      for k, v in by_size.items()]
    ev = _load(work / "eval" / "summary.json")
    if ev:
        sampled = f", sampled at {describe_settings(ev['settings'])}" if ev["settings"] else ""
        lines += ["", f"Default suite, {ev['images_per_prompt']} images per prompt, seed {ev['seed']}{sampled} "
                  "(`evaluation.run`):", "", markdown_table(ev)]
        lines += _blocks_line(work / "eval" / "results.jsonl", ev["images_per_prompt"])
        chosen = PROFILES.get(profile, {}).get("sampling")
        if chosen:  # set at assembly, not in training: say where the settings came from
            lines += ["", f"The bundle samples at {describe_settings(chosen)} by default: the profile's `sampling`, "
                      "chosen by a sweep on the trained generator (benchmarks/RESULTS.md) and written into "
                      "generator/pipeline.json when the bundle is assembled."]
    speed = _load(work / "speed.json")
    if speed:
        lines += ["", "Sampling speed (`benchmarks.sampling_speed`, best of 2):", ""]
        for r in speed:
            where = r["gpu"] or f"CPU {r['cpu']}, {r['cores']} cores, {r['threads']} torch threads"
            lines.append(f"- {r['batch']} images, {r['steps']} steps, guidance {r['guidance']}: {r['seconds']:.1f} s "
                         f"({r['images_per_s']:.2f} images/s) on {where}")
    commands = _commands(work / "build.log", Path(__file__).resolve().parent.parent)
    if commands:
        lines += ["", "## Commands", "", "```"] + commands + ["```"]
    configs = [("t2i", "Generator config"), *((out, ROUND_LABELS[stage]) for stage, out in MORE_ROUNDS.items())]
    for name, what in configs:
        config = work / f"{name}.yaml"
        if config.is_file():
            lines += ["", f"{what} (`{config.name}`, written by models.build_demo):", "", "```yaml",
                      config.read_text().replace(f"{Path(__file__).resolve().parent.parent}/", "").rstrip(), "```"]
    if profile == "cpu":
        lines += ["", "## Limitations", "", f"The cpu profile is sized to build in about {sum(times.values()) / 3600:.1f} "
                  "hours on two cores (stage times below). Its generator is far from converged (compare the "
                  "default-suite table with the tokenizer ceiling above); `--profile gpu` trains a larger one "
                  "on a GPU."]
    notes = work / "NOTES.md"  # the build's own account, where stages came from other runs
    if notes.is_file():
        lines += ["", "## How this build was made", "", notes.read_text().strip()]
    lines += ["", "## Training time", ""]
    hardware = work / "hardware.txt"  # written where the training ran on a lent GPU (models/gpu_call.sh)
    if hardware.is_file():
        lines += ["Training hardware: " + "; ".join(x.strip() for x in hardware.read_text().splitlines() if x.strip())
                  + ". Judge validation, evaluation and speed: below.", ""]
    if speed:
        r = speed[0]
        lines += [f"{'Evaluation and speed' if hardware.is_file() else 'Hardware'}: {r['gpu'] or 'no GPU'}; "
                  f"{r['cores']} CPU cores ({r['cpu']}).", ""]
    lines += ["| stage | seconds (the whole stage, with its checks and exports) |", "|---|---|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in sorted(times.items(), key=lambda kv: (
        STAGES.index(kv[0]) if kv[0] in STAGES else len(STAGES)))]
    path = bundle / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path
