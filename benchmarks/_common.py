"""What the benchmark scripts share: timing on a device, argparse types for counts, the
--json-out check, the CPU's name for the records, and the reader of a scenes folder's objects.jsonl."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import gendet_env


def sync(device) -> None:
    """Wait for the work queued on `device` (CUDA runs asynchronously: without this a time is the
    launch's, not the work's). That device's queue, not the current one's."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device) -> float:
    """Seconds `fn()` takes on `device`, its queued work included."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def positive_int(text: str) -> int:
    """argparse `type=` for a count that must be >= 1 (a batch, repeats, steps)."""
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse `type=` for a count that may be 0 (warm-up steps)."""
    value = _whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """argparse `type=` for a finite amount >= 0 (a noise std): NaN passed a `< 0` test."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def json_out_problem(path) -> str | None:
    """Why the --json-out file `path` cannot be written (its folder is made when missing), or None:
    checked up front, so a run does not measure for minutes and then fail at its last line."""
    if path is None:
        return None
    file = gendet_env.expand_user(path)  # a quoted ~ too, as write_json writes it
    if file.is_dir() or str(path).endswith(("/", os.sep)):
        return f"--json-out {path}: a folder; name a file in it"
    if file.exists() and not os.access(file, os.W_OK):
        return f"--json-out {path}: this file cannot be written over"
    reason = gendet_env.unwritable_reason(file.parent)
    return f"--json-out {path}: {reason}" if reason else None


def write_json(path, data) -> None:
    """`data` as indented JSON at `path` (~ expanded), its folder made when missing."""
    path = gendet_env.expand_user(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def cpu_name() -> str:
    """The CPU's model name for a record ("AMD EPYC 7B13"); platform.processor() is only the
    architecture (or empty) on Linux."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:  # not Linux
        pass
    return platform.processor() or platform.machine() or "cpu"


def read_objects(path) -> dict[str, dict]:
    """A datasets.scenes objects.jsonl as {image: row} (datasets.scenes.read_objects: blank lines
    skipped, a bad line named by file and line number)."""
    from datasets.scenes import read_objects as rows

    return {row["image"]: row for row in rows(path)}
