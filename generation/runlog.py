"""The JSON-lines training logs (one row per log/validation step) that both trainers write."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path


def open_log(path: Path, resume_step: int | None):
    """Open a training log for appending. A fresh run (resume_step None) starts an empty log; a
    resumed one forgets the rows written after its checkpoint, since those steps run again, and a
    last row a kill cut short."""
    if resume_step is None:
        path.unlink(missing_ok=True)
    elif path.is_file():
        lines = [x for x in path.read_text().splitlines() if x.strip()]
        rows = []
        for number, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
            except ValueError:
                if number == len(lines):  # torn by a kill mid-write: its step runs again
                    break
                raise ValueError(f"{path}: line {number} is not JSON; the log is damaged") from None
            if row.get("step", 0) <= resume_step:
                rows.append(line)
        path.write_text("".join(r + "\n" for r in rows))
    return open(path, "a")


def recover_checkpoint(out: Path) -> None:
    """Finish a checkpoint swap that a kill interrupted. The trainers write checkpoint.tmp/ whole,
    then rename checkpoint/ to checkpoint.old/ and checkpoint.tmp/ to checkpoint/: between the two
    renames there is no checkpoint/, and --resume found nothing (a plain start then trained over it)."""
    final, tmp, old = out / "checkpoint", out / "checkpoint.tmp", out / "checkpoint.old"
    if not final.exists() and old.is_dir():
        try:
            os.replace(tmp if tmp.is_dir() else old, final)  # tmp was complete before the first rename
        except OSError:  # another process (a torchrun rank) did it first
            pass
        if final.is_dir():
            shutil.rmtree(old, ignore_errors=True)


def run_folder_problem(out: Path, resume: bool, tool: str, run_files: set[str], trained: tuple[str, ...]) -> str | None:
    """Why `out` may not take a run of `tool`, or None. It holds files of another kind (a dataset,
    another tool's model: the run would write over them), or, without --resume, a run's trained
    state (`trained`, which a fresh start would replace). `run_files` names everything a run
    writes; the rest of a start that trained nothing (a token cache, say) is reused."""
    if not out.is_dir():
        return None
    foreign = sorted(p.name for p in out.iterdir() if p.name not in run_files)
    if foreign:
        return (f"{out} holds files that are not a {tool} run's ({', '.join(foreign[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}); choose an empty or new out folder")
    done = [name for name in trained if (out / name).exists()]
    if not resume and done:
        return (f"{out} holds a {tool} run ({done[0]}); pass --resume to continue it, or choose a new "
                "out folder (or delete this one to start over)")
    return None


def interrupted(out: Path, every: int, step: int | None = None) -> str:
    """What a Ctrl-C'd trainer says instead of a traceback: where it can go on from (`step`: it
    stopped after that step with a checkpoint; None: it was stopped at once)."""
    if step is not None:
        return (f"stopped after step {step}: {out / 'checkpoint'} holds it; "
                "the same command with --resume goes on from there")
    if (out / "checkpoint").is_dir():
        return (f"interrupted: {out / 'checkpoint'} holds the last checkpoint (one every {every} steps); "
                "the same command with --resume goes on from there")
    return f"interrupted before the first checkpoint (one every {every} steps): nothing to resume in {out}"
