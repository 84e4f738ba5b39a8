"""Store a model folder's float32 safetensors weights as float16, in place: half the bytes of
the bundle. Loading upcasts them (our modules and the CLIP text model are built in float32 and
load_state_dict copies into them), so only the stored precision changes; the test measures
what that costs.

    python -m models.half models/demo/generator
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from safetensors import safe_open

from generation.files import atomic_save_file


def halve(folder: str | Path) -> tuple[int, int]:
    """Rewrite every *.safetensors under `folder` with float32 tensors as float16 (metadata kept,
    each file replaced atomically). Returns (bytes before, bytes after)."""
    before = after = 0
    files = sorted(Path(folder).rglob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no .safetensors files")
    for path in files:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        tensors = {k: v.half() if v.dtype == torch.float32 else v for k, v in tensors.items()}
        before += path.stat().st_size
        atomic_save_file(tensors, path, metadata=meta)
        after += path.stat().st_size
    return before, after


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.half", description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", help="a model folder (e.g. a saved TextToImage)")
    args = ap.parse_args(argv)
    try:
        before, after = halve(args.folder)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.folder}: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
