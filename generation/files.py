"""Atomic writes of weights, JSON and other bytes: a reader, or a crash, never meets half a file."""
from __future__ import annotations

import json
import os
from pathlib import Path


def plain_mode(path: Path) -> None:
    """Give a file the mode a new file gets under this process's umask (0644 as a rule): safetensors
    creates its files readable by the owner alone (0600), which a shared or served model must not be."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def atomic_save_file(tensors: dict, path: Path, metadata: dict | None = None) -> None:
    """Tensors to `path` in safetensors, through a temporary file, with a plain file's mode."""
    from safetensors.torch import save_file  # here: the other writers stay free of torch

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    plain_mode(tmp)
    os.replace(tmp, path)


def atomic_write_bytes(data: bytes, path: Path) -> None:
    """`data` to `path` through a temporary file beside it; a failed or interrupted write leaves the
    earlier file as it was, and no litter."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def atomic_write_json(obj, path: Path, indent: int | None = 1) -> None:
    atomic_write_bytes((json.dumps(obj, indent=indent) + "\n").encode(), path)


def not_pytorch(path: Path) -> bool:
    """Whether a file starts with bytes torch.save never writes (it writes a zip archive, or in its
    older format a pickle): an image renamed .pt is not a checkpoint, and not an unsafe pickle either.
    An empty or unreadable file is left to the loaders' own message."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return bool(head) and not head.startswith(b"PK\x03\x04") and head[:1] != b"\x80"


NOT_PYTORCH = "not a PyTorch checkpoint (neither a zip archive nor a pickle, as torch.save writes)"


def load_torch_file(path: Path):
    """torch.load(weights_only=True), its failures said in one line: a file cut short is not an
    unsafe one, and nothing here suggests turning the check off (torch's own message does)."""
    import pickle
    import re
    import warnings

    import torch

    if not_pytorch(path):
        raise ValueError(f"{path}: {NOT_PYTORCH}")
    try:
        with warnings.catch_warnings():  # torch's note on pickle protocols says nothing a user can act on
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"(unsupported global|Unsupported operand)[^\n]*", str(e), re.IGNORECASE)
        what = found.group(0).strip()[:160] if found else str(e).strip().splitlines()[-1][:160]
        raise ValueError(f"{path}: refused: it holds Python objects beyond tensors, which are never unpickled "
                         f"here ({what})") from None
    except Exception as e:  # noqa: BLE001 - a zip archive cut short, not a PyTorch file at all, ...
        first = (str(e).splitlines() or [""])[0][:160]
        raise ValueError(f"{path}: not a complete PyTorch file ({type(e).__name__}: {first}); "
                         "cut short?") from None
