"""The JSON-lines training logs (one row per log/validation step) that both trainers write."""
from __future__ import annotations

import json
from pathlib import Path


def open_log(path: Path, resume_step: int | None):
    """Open a training log for appending. A fresh run (resume_step None) starts an empty log; a
    resumed one forgets the rows written after its checkpoint, since those steps run again."""
    if resume_step is None:
        path.unlink(missing_ok=True)
    elif path.is_file():
        rows = [x for x in path.read_text().splitlines() if x.strip() and json.loads(x).get("step", 0) <= resume_step]
        path.write_text("".join(r + "\n" for r in rows))
    return open(path, "a")
