"""Generate-then-detect over a prompt suite: the loop behind `python -m evaluation.run`.

For each prompt: generate `images_per_prompt` images (image k gets seed `seed * images_per_prompt
+ k`, so runs with different seeds share no image and are independent replicates),
detect on the in-memory batch, judge, append one row per image to results.jsonl
and save the PNG for the report. Rows already in results.jsonl are skipped, so
an interrupted run resumes. Under torchrun each rank takes every WORLD_SIZE-th
prompt and writes its own shard; rank 0 merges the shards and writes the summary.
"""

from __future__ import annotations

import gendet_env

import contextlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from tqdm import tqdm

from datasets.convert.common import escapes
from datasets.images import is_tensor, rgb_uint8
from evaluation.detectors import JudgeDetectors
from evaluation.judge import judge
from evaluation.suite import Suite, dump_suite
from evaluation.summary import summarize, write_csv, write_json

# generate(prompt, seeds) -> float tensor [B,3,H,W] in [0,1] (or a list of HxWx3 uint8 / PIL), B = len(seeds)
GenerateFn = Callable[[str, list[int]], object]


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1

    @classmethod
    def from_env(cls) -> "Shard":
        """torchrun sets RANK and WORLD_SIZE; a plain run is rank 0 of 1."""
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))

    def results_name(self) -> str:
        return "results.jsonl" if self.world == 1 else f"results.rank{self.rank}.jsonl"


def to_uint8_images(batch) -> list[np.ndarray]:
    """HxWx3 uint8 RGB arrays from what a generate function returns: a tensor [B,3,H,W] (float in
    [0, 1] or uint8), or a list of images in any form `datasets.images.rgb_uint8` reads (float
    arrays were saved black and uint8 tensors white, and judged so)."""
    if is_tensor(batch):
        if batch.ndim != 4:
            raise ValueError(f"generate returned a tensor of shape {tuple(batch.shape)}: expected [B,3,H,W] images")
        batch = list(batch)
    elif isinstance(batch, np.ndarray) and batch.ndim == 4:
        batch = list(batch)
    try:
        return [rgb_uint8(im) for im in batch]
    except ValueError as e:
        raise ValueError(f"generate returned an image gendet cannot read: {e}") from None


def drop_torn_tail(path: Path) -> None:
    """Cut a last line a kill left half-written (every row ends in a newline), so that rows
    appended on resuming start on a line of their own."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "r+b") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) != b"\n":  # only then is the file read, to find the last whole row
            fh.seek(0)
            fh.truncate(fh.read().rfind(b"\n") + 1)


def read_rows(path: Path) -> list[dict]:
    """Rows of a results file; a torn last line (killed mid-write) is ignored."""
    if not path.is_file():
        return []
    rows = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):
                break
            raise ValueError(f"{path}:{n}: not a JSON row") from None
        problem = row_problem(row)
        if problem:
            raise ValueError(f"{path}:{n}: {problem}")
        rows.append(row)
    return rows


def row_problem(row) -> str | None:
    """What is wrong with a results row that the report, the app and --images-from would use, or
    None. A run folder may come from someone else: its image paths must stay inside it (one named
    "../../secret" went into the report zip) and what report.html shows must be numbers."""
    if not isinstance(row, dict):
        return "a row must be a JSON object"
    image = row.get("image", "")  # each field checked where the row has it (a summary needs few)
    if not isinstance(image, str) or "\0" in image or escapes(image):
        return f"'image' must be a path inside the run folder, got {image!r}"
    if "seed" in row and (isinstance(row["seed"], bool) or not isinstance(row["seed"], int)):
        return f"'seed' must be an integer, got {row['seed']!r}"
    size = row.get("size", [0, 0])
    if not (isinstance(size, list) and len(size) == 2 and all(_number(v) for v in size)):
        return f"'size' must be [width, height], got {size!r}"
    for d in row.get("detections") or []:
        if not (isinstance(d, dict) and isinstance(d.get("label"), str) and _number(d.get("confidence"))
                and isinstance(d.get("box"), list) and len(d["box"]) == 4 and all(_number(v) for v in d["box"])):
            return f"a detection must have a label, a confidence and a box of 4 numbers, got {d!r:.120}"
    return None


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# how a run's seed becomes its images' seeds, recorded in run.json as "image_seeds". Runs before
# 2026-12-05 have no such field and gave image k seed `seed + k` (runs at seeds 0 and 1 shared
# three images of every four); they are judged again (--images-from) by their own rule
IMAGE_SEEDS = "seed * images_per_prompt + k"
OLD_IMAGE_SEEDS = "seed + k"


def image_seeds(seed: int, images_per_prompt: int, rule: str = IMAGE_SEEDS) -> list[int]:
    """The sampling seeds of a prompt's images in a run at `seed`: the seed-th block of
    images_per_prompt, so no two runs' blocks overlap (or, by the old rule, seed + k)."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if rule not in (IMAGE_SEEDS, OLD_IMAGE_SEEDS):
        raise ValueError(f"unknown image seed rule {rule!r}; known: {IMAGE_SEEDS!r}, {OLD_IMAGE_SEEDS!r}")
    first = seed * images_per_prompt if rule == IMAGE_SEEDS else seed
    return [first + k for k in range(images_per_prompt)]


class RunConfigError(ValueError):
    """--out holds a run with other settings (it cannot be resumed by this one), or files that are
    not a run's."""


def foreign_folder(out: Path) -> str | None:
    """Why `out` cannot take a new run, or None: it holds files and no run.json, so they are not an
    evaluation run's (a user's report.html and images/ were written over)."""
    if not out.is_dir() or (out / "run.json").is_file():
        return None
    held = sorted(p.name for p in out.iterdir() if not p.name.startswith(".")  # .DS_Store, .gitkeep
                  and not (p.name == "images" and p.is_dir() and not any(p.iterdir())))
    if held:
        return (f"{out} holds files that are not an evaluation run's ({', '.join(held[:3])}"
                f"{', ...' if len(held) > 3 else ''}); choose an empty or new folder")
    return None


def _differences(old, new, name: str = "") -> list[str]:
    """'settings.steps: 10 there, 3 now' for each leaf where two run configs differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new), key=str)
                for d in _differences(old.get(k), new.get(k), f"{name}.{k}" if name else str(k))]
    if old == new:
        return []
    if isinstance(old, list) and isinstance(new, list):  # the prompts: too long to print
        if len(old) == len(new):  # the first entry that differs, and how
            first = next(((a, b) for a, b in zip(old, new) if a != b), None)
            if first and isinstance(first[0], dict) and isinstance(first[1], dict):
                return [f"{name}: {first[0].get('prompt')!r} has {_differences(first[0], first[1])[0]}"]
        return [f"{name}: {len(old)} there, {len(new)} now" if len(old) != len(new) else f"{name}: other values"]
    shown = ["unset" if v is None else repr(v) for v in (old, new)]
    return [f"{name}: {shown[0]} there, {shown[1]} now"]


_NAMES = ("path", "sha256", "weights_sha256")  # how a model is named in run.json


def _comparable(old, new):
    """Two run configs with each model named by what both recorded of it: its weights' hash where
    both have one (the generator folder's every file, else, from an older gendet, its transformer's;
    a detector's file), else its path resolved here. The same weights given by another path, from
    another working directory or a moved checkout, resume; a generator with another decoder does not."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return old, new
    if "path" in old or "path" in new:  # a model
        rest = [{k: v for k, v in side.items() if k not in _NAMES} for side in (old, new)]
        for side in rest:  # a rejudged run's images: where they were, resolved where each run began (older: here)
            if isinstance(side.get("images_from"), str):
                side["images_from"] = side.pop("images_from_resolved", None) or str(Path(side["images_from"]).resolve())
        key = next((k for k in ("weights_sha256", "sha256") if old.get(k) and new.get(k)), None)
        if key:
            return rest[0] | {key: old[key]}, rest[1] | {key: new[key]}
        return tuple(r | {"path": str(Path(side["path"]).resolve()) if isinstance(side.get("path"), str) else None}
                     for r, side in zip(rest, (old, new)))
    pairs = {k: _comparable(old.get(k), new.get(k)) for k in set(old) | set(new)}
    return ({k: a for k, (a, _) in pairs.items() if k in old}, {k: b for k, (_, b) in pairs.items() if k in new})


def _check_run_config(out: Path, config: dict, suite: Suite) -> None:
    """A resumed run must have the settings of the run it continues. A new one records them, and
    its suite as suite.yaml: what `--images-from` judges again, whatever file it came from."""
    path = out / "run.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if "specs" not in old:  # a run from before they were recorded: its prompts are checked
            config = {k: v for k, v in config.items() if k != "specs"}
        if old.get("models") == {}:  # the app's runs recorded no models until 2026-12-08: resumed as before
            if config.get("models"):  # and recorded from now on, so a later resume with others is refused
                warnings.warn(f"{path} recorded no models (an app run from before 2026-12-08); it records these "
                              "from now on, and its earlier images are taken to be theirs", gendet_env.GendetWarning)
                write_json({**old, "models": config["models"]}, path)
            old, config = ({k: v for k, v in c.items() if k != "models"} for c in (old, config))
        compared = _comparable(old, config)
        if compared[0] != compared[1]:
            given = {d.split(": ")[0]: d for d in _differences(old, config)}  # as recorded and given
            diff = []
            for d in _differences(*compared):
                key = d.split(": ")[0]
                if key.rsplit(".", 1)[-1] in _NAMES:  # another model: its path as given comes first
                    diff.append(given.get(f"{key.rsplit('.', 1)[0]}.path"))
                diff.append(given.get(key, d))  # else as compared: one relative path from two directories
            diff = list(dict.fromkeys(filter(None, diff)))
            more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
            hint = ""
            if old.get("prompts") == config.get("prompts") and all(d.startswith("specs") for d in diff):
                hint = (f"; the same prompts, with other expectations (an edited suite, or a newer gendet's "
                        f"reading): --suite {out / 'suite.yaml'} resumes it as it began")
            raise RunConfigError(f"{out} holds a run with other settings ({'; '.join(diff[:3])}{more}): rerun with "
                                 f"its settings to resume it, or start a new run in another folder{hint}")
    else:
        dump_suite(suite.name, suite.prompts, out / "suite.yaml")
        write_json(config, path)


def run_suite(suite: Suite, generate: GenerateFn, eyes: JudgeDetectors, out_dir: str | Path, *,
              images_per_prompt: int = 4, seed: int = 0, settings: dict | None = None,
              models: dict | None = None, shard: Shard = Shard(),
              progress: bool = True, barrier: Callable[[], None] | None = None,
              on_prompt: Callable[[int, int], None] | None = None,
              judge_validation: dict | None = None, seed_rule: str = IMAGE_SEEDS) -> dict | None:
    """Run (or resume) a suite into out_dir; returns the summary on rank 0, None elsewhere.
    on_prompt(done, total) is called after each prompt (the app's progress bar).
    judge_validation (the detectors' validate_judge report) is summarised next to the results.
    seed_rule: how `seed` gives the images' seeds (`image_seeds`); an older run's images judged
    again keep the rule they were drawn by."""
    if images_per_prompt < 1:
        raise ValueError(f"images_per_prompt must be >= 1, got {images_per_prompt}")
    image_seeds(seed, images_per_prompt, seed_rule)  # a bad seed or rule fails before anything is written
    settings = dict(settings or {})
    if hasattr(generate, "generate_for_judge"):  # a TextToImage itself, as generate_checked takes it
        pipe, given = generate, dict(settings)
        settings = {**pipe.defaults, **settings}  # recorded: what it samples with
        generate = lambda prompt, seeds: pipe.generate_for_judge(prompt, seeds, **given)  # noqa: E731
    elif not callable(generate):
        raise TypeError(f"generate must be a function (prompt, seeds) -> images or a TextToImage, got {generate!r:.60}")
    out = Path(out_dir)
    if shard.rank == 0:
        problem = foreign_folder(out)
        if problem:
            raise RunConfigError(problem)
    with gendet_env.held(out, "evaluation") if shard.rank == 0 else contextlib.nullcontext():
        # a second run into this folder is refused: two side by side counted every image twice
        (out / "images").mkdir(parents=True, exist_ok=True)
        config = {"suite": suite.name, "prompts": [p.prompt for p in suite.prompts],
                  "specs": [p.to_dict() for p in suite.prompts], "images_per_prompt": images_per_prompt,
                  "seed": seed, "image_seeds": seed_rule, "settings": settings, "judge": eyes.rules.to_dict(),
                  "models": models or {}}
        if shard.rank == 0:
            _check_run_config(out, config, suite)
        if barrier:
            barrier()
        if shard.rank != 0:
            _check_run_config(out, config, suite)

        results = out / shard.results_name()
        drop_torn_tail(results)
        done = {(r["prompt_index"], r["image_index"]) for r in read_rows(results)}
        mine = [(i, s) for i, s in enumerate(suite.prompts) if i % shard.world == shard.rank]
        todo = [(i, s) for i, s in mine if any((i, k) not in done for k in range(images_per_prompt))]
        bar = tqdm(total=len(mine), initial=len(mine) - len(todo), desc=f"eval {suite.name}", unit="prompt",
                   disable=not progress or shard.rank != 0)
        if on_prompt and len(todo) < len(mine):  # a resumed run: its bar starts at the prompts done
            on_prompt(len(mine) - len(todo), len(mine))
        with open(results, "a", encoding="utf-8") as fh:
            for step, (i, spec) in enumerate(todo, start=1):
                seeds = image_seeds(seed, images_per_prompt, seed_rule)
                images = to_uint8_images(generate(spec.prompt, seeds))
                if len(images) != len(seeds):
                    raise RuntimeError(f"generate returned {len(images)} images for {len(seeds)} seeds")
                found = eyes.detect(images)
                for k, (image, dets) in enumerate(zip(images, found)):
                    if (i, k) in done:
                        continue
                    name = f"images/{i:04d}_{k}.png"
                    Image.fromarray(image).save(out / name)
                    h, w = image.shape[:2]
                    verdict = judge(spec, dets, (w, h), eyes.rules, image=image)  # the rules it detected by
                    row = {"prompt": spec.prompt, "prompt_index": i, "category": spec.category,
                           "expect": spec.expectation_text, "image_index": k, "seed": seeds[k],
                           "settings": settings, "image": name, "size": [w, h], "detections": dets,
                           "verdict": verdict.to_dict(), "passed": verdict.passed, "reason": verdict.reason}
                    fh.write(json.dumps(row) + "\n")
                    fh.flush()
                bar.update()
                if on_prompt:
                    on_prompt(len(mine) - len(todo) + step, len(mine))
        bar.close()
        if barrier:
            barrier()
        if shard.rank != 0:
            return None
        return finish(out, suite, config, shard.world, judge_validation)


def finish(out: Path, suite: Suite, config: dict, world: int = 1, judge_validation: dict | None = None) -> dict:
    """Merge shards (if any), then write summary.json, summary.csv and report.html."""
    from evaluation.report import write_report

    if world > 1:
        rows = [r for rank in range(world) for r in read_rows(out / f"results.rank{rank}.jsonl")]
        rows.sort(key=lambda r: (r["prompt_index"], r["image_index"]))
        tmp = out / "results.jsonl.tmp"
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        tmp.replace(out / "results.jsonl")
    rows = read_rows(out / "results.jsonl")
    summary = summarize(rows)
    summary |= {"suite": suite.name, "images_per_prompt": config["images_per_prompt"], "seed": config["seed"],
                "settings": config["settings"], "judge": config["judge"], "models": config["models"]}
    if judge_validation:  # the judge's own accuracy, printed next to every summary
        summary["judge_validation"] = {"overall": round(judge_validation["overall"]["accuracy"], 4),
                                       **{c: round(b["accuracy"], 4)
                                          for c, b in judge_validation["categories"].items()}}
        # what it was measured on: another suite's prompts may be judged less (or more) surely
        summary["judge_validation_on"] = (f"{judge_validation.get('images', '?')} {judge_validation.get('split', '')} "
                                          f"images of {judge_validation.get('data', '?')}, the "
                                          f"{judge_validation.get('suite', '?')} suite's prompts and their own captions")
    write_json(summary, out / "summary.json")
    write_csv(summary, out / "summary.csv")
    write_report(out, rows, summary)
    return summary
