"""detection.train's run folder: what may be written into --out, pausing after an epoch
(--stop-at) and resuming (--resume) through ultralytics' own last.pt, and the records (run.json,
results.csv) that make a resumed run's metrics cover the whole run. No ultralytics import here."""

from __future__ import annotations

import json
from pathlib import Path

from detection._common import UsageError

# what a run writes into --out (val/: multi-GPU re-validation): anything else there is someone else's
RUN_FILES = {"best.pt", "best.pt.tmp", "metrics.json", "metrics.json.tmp", "curves.png", "results.png", "README.md", "data.yaml",
             "run.json", "ultralytics", "val"}
LAST = Path("ultralytics") / "weights" / "last.pt"  # ultralytics' resumable checkpoint, inside --out


def out_problem(out: Path, resume: bool) -> str | None:
    """Why --out may not take this run, or None: it holds files that are not a detection.train
    run's (they would be written over), or, without --resume, a run's trained state (it would be
    replaced), or, with --resume, nothing to resume. The leftovers of a start that trained no epoch
    (data.yaml, run.json, ultralytics/ without weights) are no problem."""
    if not out.is_dir():
        return _nothing_to_resume(out) if resume else None
    foreign = sorted(p.name for p in out.iterdir() if p.name not in RUN_FILES)
    if foreign:
        return (f"{out} holds files that are not a detection.train run's ({', '.join(foreign[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}); choose an empty or new --out")
    finished = (out / "best.pt").is_file() and (out / "metrics.json").is_file()
    if resume and finished:
        return _finished(out)
    if resume:
        return None if (out / LAST).is_file() else _nothing_to_resume(out)
    if finished:
        return (f"{out} holds a finished detection.train run; choose a new --out (or delete this one to start "
                f"over), or fine-tune it further with --model {out / 'best.pt'}")
    if any((out / name).exists() for name in ("best.pt", "metrics.json")) or any((out / LAST.parent).glob("*.pt")):
        return (f"{out} holds a detection.train run; pass --resume to continue it, or choose a new --out "
                "(or delete this one to start over)")
    return None


def _nothing_to_resume(out: Path) -> str:
    return f"nothing to resume in {out} (no {LAST}); start the run without --resume"


def _finished(out: Path) -> str:
    best = next((p for p in (out / "best.pt", out / LAST.parent / "best.pt") if p.is_file()), out / LAST)
    return (f"the run in {out} is finished, nothing to resume; choose a new --out to train again, or "
            f"--model {best} to fine-tune it further")


def resume_point(ckpt: dict, out: Path) -> tuple[int, int]:
    """(epochs done, epochs in all) of a resumable last.pt. At its end ultralytics strips the
    optimizer and sets epoch -1: such a checkpoint (or one at its last epoch) is a finished run,
    which ultralytics would silently train again from scratch rather than resume."""
    done, total = int(ckpt.get("epoch", -1)) + 1, int((ckpt.get("train_args") or {}).get("epochs", 0))
    if ckpt.get("optimizer") is None or not 0 < done < total:
        raise UsageError(_finished(out))
    return done, total


def run_settings(out: Path, given: dict, command: str, resume: bool) -> dict:
    """The settings this run trains with: those given, or on --resume the run's own (run.json; a
    run from before run.json: those given). `commands` lists the first command and each resume."""
    path = out / "run.json"
    if not (resume and path.is_file()):
        return {**given, "commands": [command], "resumed_from": []}
    run = json.loads(path.read_text())
    if run["task"] != given["task"]:
        raise UsageError(f"--task {given['task']}: the run in {out} trains the {run['task']} detector")
    return {**run, "commands": run["commands"] + [command], "time_limit": given["time_limit"] or run["time_limit"]}


def trim_results(path: Path, done: int) -> None:
    """Drop results.csv rows after the checkpoint's epoch (a run stopped between writing an
    epoch's row and its checkpoint): the resume trains that epoch again and writes its row."""
    if not path.is_file():
        return
    header, *rows = path.read_text().splitlines()
    kept = [r for r in rows if float(r.split(",")[0]) <= done]
    if len(kept) < len(rows):
        path.write_text("\n".join([header, *kept]) + "\n")


class Pause(Exception):
    """Raised after the --stop-at epoch's checkpoint is saved: training ends there without
    ultralytics' final step, which strips last.pt of what a resume needs."""


def pause_after(stop_at: int):
    """An on_fit_epoch_end callback (it runs after save_model) that raises Pause after epoch
    stop_at, unless the run is ending anyway (early stop, time limit)."""
    def callback(trainer) -> None:
        if trainer.epoch + 1 >= stop_at and not trainer.stop:
            raise Pause
    return callback


def close_loaders(trainer) -> None:
    """What ultralytics does at its end: shut the dataloaders' worker processes down."""
    for loader in (getattr(trainer, "train_loader", None), getattr(trainer, "test_loader", None)):
        if hasattr(loader, "close"):
            loader.close()


def earlier_seconds(rows: list[dict], resumed_from: list[int]) -> float:
    """Training + validation seconds of the sessions before a resume: results.csv's `time` restarts
    at each resume, so a session's time is that of its last epoch (the epoch resumed from)."""
    times = [rows[n - 1].get("time") for n in resumed_from if 0 < n <= len(rows)]
    return sum(t for t in times if isinstance(t, float))
