"""Atomic writes of weights and JSON: a reader, or a crash, never meets half a file."""
from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors.torch import save_file


def plain_mode(path: Path) -> None:
    """Give a file the mode a new file gets under this process's umask (0644 as a rule): safetensors
    creates its files readable by the owner alone (0600), which a shared or served model must not be."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def atomic_save_file(tensors: dict, path: Path, metadata: dict | None = None) -> None:
    """Tensors to `path` in safetensors, through a temporary file, with a plain file's mode."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    plain_mode(tmp)
    os.replace(tmp, path)


def atomic_write_json(obj, path: Path) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)
