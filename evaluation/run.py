"""Generate-then-detect evaluation of a text-to-image model over a prompt suite.

    python -m evaluation.run --suite default --model models/demo/generator \\
        --detectors catdog=models/demo/catdog.pt,face=models/demo/face.pt --images-per-prompt 4 --seed 0 --out runs/eval
    torchrun --nproc_per_node 4 -m evaluation.run ...      # prompts sharded over ranks, rank 0 merges
    python -m evaluation.run --images-from runs/eval --detectors catdog=A.pt,face=B.pt --out runs/rejudged
        # judge a finished run's images again (other detectors), generating nothing
    python -m evaluation.run --prompt "two black cats" --prompt "a dog to the left of a face" --out runs/mine
        # a few prompts of your own, no suite file (their suite is written to OUT/suite.yaml)

Writes OUT/results.jsonl (one row per image: prompt, seed, settings, detections,
verdict, reason), summary.json / summary.csv / summary.md (accuracy with bootstrap
95% intervals, overall and per category; judge rules; model paths and hashes),
report.html and the images. Rerunning with the same settings resumes.
"""

from __future__ import annotations

import gendet_env

import argparse
import os
import sys
from pathlib import Path

from evaluation.detectors import JudgeDetectors, file_sha256, folder_sha256
from evaluation.judge import DEFAULT_RULES, VERSIONS, JudgeRules
from evaluation.runner import IMAGE_SEEDS, OLD_IMAGE_SEEDS, RunConfigError, Shard, run_suite
from evaluation.suite import load_suite, suite_from_prompts
from evaluation.summary import describe_agreement, markdown_table
from generation.sampling_options import add_sampling_options, sampling_settings

DEMO = gendet_env.ROOT / "models" / "demo"
DEFAULT_DETECTORS = f"catdog={DEMO / 'catdog.pt'},face={DEMO / 'face.pt'}"


def model_info(path: Path) -> dict:
    weights = path / "transformer" / "model.safetensors"
    return {"path": str(path), "sha256": file_sha256(weights) if weights.is_file() else None,
            "weights_sha256": folder_sha256(path) if path.is_dir() else None}  # what a resume compares


def find_judge_validation(eyes: JudgeDetectors) -> dict | None:
    """judge_validation.json beside the detectors (the demo bundle ships one), if it is for them
    and for the rules this run judges by."""
    import json

    for path in {p.parent / "judge_validation.json" for p in eyes.paths.values()}:
        if path.is_file():
            report = json.loads(path.read_text())
            hashes = {t: d.get("sha256") for t, d in report.get("detectors", {}).items()}
            same_rules = JudgeRules.from_dict(report.get("judge", {})) == eyes.rules
            if same_rules and hashes == {t: d["sha256"] for t, d in eyes.info().items()}:
                return report
    return None


def source_suite(run_dir: Path):
    """The suite a finished run judged: its suite.yaml (every run writes one since 2026-12-07, and
    runs of --prompt before), else the built-in suite it names."""
    import json

    from evaluation.suite import builtin_suites

    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise FileNotFoundError(f"--images-from {run_dir}: no run.json (not an evaluation.run output folder)")
    own = Path(run_dir) / "suite.yaml"
    if own.is_file():
        return load_suite(own)
    name = json.loads(path.read_text())["suite"]
    if name not in builtin_suites():
        raise FileNotFoundError(f"--images-from {run_dir}: a run of suite {name!r}, which is not built in, and the "
                                "run holds no suite.yaml: give its suite file with --suite")
    return load_suite(name)


def saved_images(run_dir: Path, suite, images_per_prompt: int | None, seed: int | None):
    """(generate function, run.json) that hands back a finished run's PNGs instead of sampling:
    the run must be of the same suite, and gives its images per prompt, seed and settings."""
    import json

    from PIL import Image

    from evaluation.runner import read_rows

    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise FileNotFoundError(f"--images-from {run_dir}: no run.json (not an evaluation.run output folder)")
    config = json.loads(path.read_text())
    if config["prompts"] != [p.prompt for p in suite.prompts]:
        raise ValueError(f"--images-from {run_dir} is a run of suite {config['suite']!r}, whose prompts are not "
                         f"those of {suite.name!r} (leave --suite and --prompt out to judge its own)")
    for key, name, mine in (("images_per_prompt", "images per prompt", images_per_prompt), ("seed", "seed", seed)):
        if mine is not None and mine != config[key]:
            raise ValueError(f"--images-from {run_dir} has {name} {config[key]}, not {mine}")
    files = {(r["prompt"], r["seed"]): Path(run_dir) / r["image"] for r in read_rows(Path(run_dir) / "results.jsonl")}

    def generate(prompt: str, seeds: list[int]):
        missing = [s for s in seeds if (prompt, s) not in files]
        if missing:
            raise ValueError(f"--images-from {run_dir} has no image of {prompt!r} with seed {missing[0]} "
                             "(an unfinished run? resume it first)")
        return [Image.open(files[prompt, s]).convert("RGB") for s in seeds]

    return generate, config


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m evaluation.run", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default=None, help="suite name (evaluation/suites/) or YAML file (default: default)")
    ap.add_argument("--prompt", action="append", default=None, metavar="PROMPT",
                    help="instead of a suite: a prompt in the judge's language (repeat it for more); the suite "
                         "they make is written to OUT/suite.yaml")
    ap.add_argument("--model", default=str(DEMO / "generator"), help="saved TextToImage folder (default: demo)")
    ap.add_argument("--detectors", default=DEFAULT_DETECTORS, help="catdog=PATH,face=PATH (default: demo)")
    ap.add_argument("--images-per-prompt", type=int, default=None, help="default 4 (with --images-from: its)")
    ap.add_argument("--seed", type=int, default=None,
                    help="default 0 (with --images-from: its); image k of each prompt gets sampling seed "
                         "SEED * images-per-prompt + k, so runs at different seeds share no image")
    ap.add_argument("--images-from", type=Path, default=None, metavar="RUN",
                    help="judge the images of a finished run instead of generating (e.g. with other --detectors "
                         "or --judge); takes its suite (or its own prompts), images per prompt, seed and settings")
    add_sampling_options(ap)
    ap.add_argument("--device", type=gendet_env.device_arg, default=None,
                    help="cpu, cuda, cuda:1 (default: cuda when available)")
    ap.add_argument("--judge", choices=sorted(VERSIONS), default=DEFAULT_RULES.version,
                    help=f"the judge's rules (default {DEFAULT_RULES.version}); judge-1 finishes or repeats a run "
                         "made before judge-2")
    ap.add_argument("--out", required=True, help="output folder (rerun to resume)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    if args.prompt and args.suite:
        ap.error("give --suite or --prompt, not both")
    if args.images_per_prompt is not None and args.images_per_prompt < 1:
        ap.error(f"--images-per-prompt must be >= 1, got {args.images_per_prompt}")
    if args.seed is not None and args.seed < 0:
        ap.error(f"--seed must be >= 0, got {args.seed}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        ap.error(f"--out {args.out}: exists and is not a folder")
    from generation.pipeline import DEFAULTS, TextToImage

    settings = sampling_settings(ap, args)  # before any model loads
    shard = Shard.from_env()
    barrier = None
    if shard.world > 1:
        import torch
        import torch.distributed as dist

        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        barrier = dist.barrier
        if args.device is None and torch.cuda.is_available():
            args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    try:
        if args.prompt:
            suite = suite_from_prompts(args.prompt)
        elif args.suite is None and args.images_from is not None:
            suite = source_suite(args.images_from)
        else:
            suite = load_suite(args.suite or "default")
        if args.images_from is not None:
            if settings:
                raise ValueError(f"--images-from generates nothing: drop {', '.join(sorted(settings))}")
            generate, source = saved_images(args.images_from, suite, args.images_per_prompt, args.seed)
            per_prompt, seed, effective = source["images_per_prompt"], source["seed"], source["settings"]
            seed_rule = source.get("image_seeds", OLD_IMAGE_SEEDS)  # the rule its images were drawn by
            # resolved too: a resume from another working directory compares where the images really are
            generator = {"images_from": str(args.images_from), "images_from_resolved": str(args.images_from.resolve()),
                         **source["models"].get("generator", {})}
        else:
            pipe = TextToImage.from_pretrained(args.model, device=args.device)
            per_prompt = 4 if args.images_per_prompt is None else args.images_per_prompt
            seed = 0 if args.seed is None else args.seed
            seed_rule = IMAGE_SEEDS
            effective = {**{k: pipe.defaults[k] for k in DEFAULTS}, **settings}  # recorded in run.json

            def generate(prompt, seeds):
                return pipe.generate_for_judge(prompt, seeds, **settings)
            generator = model_info(Path(args.model))
        eyes = JudgeDetectors.load(args.detectors, device=args.device, rules=VERSIONS[args.judge])
        eyes.warn_unseen()
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    validation = find_judge_validation(eyes)
    try:
        summary = run_suite(suite, generate, eyes, args.out, images_per_prompt=per_prompt, seed=seed,
                            settings=effective, models={"generator": generator, "detectors": eyes.info()},
                            shard=shard, progress=not args.quiet, barrier=barrier, judge_validation=validation,
                            seed_rule=seed_rule)
    except RunConfigError as e:  # --out holds another run
        print(f"error: {e} (--out)", file=sys.stderr)
        return 2
    except ValueError as e:  # e.g. --images-from lacks an image the run needs
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a folder that cannot be made or written
        print(f"error: cannot write the run to {args.out}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # every judged image is on disk: the same command goes on from there
        print(f"\ninterrupted: {args.out} keeps every image judged so far; the same command resumes the run",
              file=sys.stderr)
        return 130
    if summary is not None:
        print(markdown_table(summary))
        if "judge_validation" in summary:
            agreement = describe_agreement(summary["judge_validation"])
            on = summary.get("judge_validation_on")
            print(f"judge agreement with ground truth (validate_judge{' on ' + on if on else ''}): {agreement}")
        else:
            spec = ",".join(f"{task}={path}" for task, path in eyes.paths.items())
            home = next(iter(eyes.paths.values())).parent
            if home.resolve() == DEMO.resolve():  # the bundle's own report stays: measure beside it
                out, then = "runs/judge_val", "measures it on a scenes dataset"
            else:
                out, then = home, "measures it on a scenes dataset, and runs then quote it"
            print(f"judge not validated for these detectors under {eyes.rules.version}: python -m "
                  f"evaluation.validate_judge --data SCENES --detectors {spec} --judge {eyes.rules.version} "
                  f"--out {out} {then}")
        print(f"report: {Path(args.out) / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
