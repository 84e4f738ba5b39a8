"""The floor under a sampling step: the transformer's matrix FLOPs over the device's measured
matrix rate.

    python -m benchmarks.flops --preset ithq --batch 8 --device cuda --dtype bfloat16

A step of guided sampling runs the denoising transformer once on 2 x batch rows (conditional
and null text together); the text keys/values are computed once per run, so they are not in
the step. The count (2 x m x n x k per matrix product, attention included) is checked against
torch's FlopCounterMode in tests/test_flops.py. The rate is the best of a few large square
matrix products in the given dtype, so the floor is what the step would cost if every
product ran at that rate and nothing else took time.
"""

from __future__ import annotations

import gendet_env

import argparse
import json
import time

import torch

from benchmarks._common import cpu_name, positive_int, sync
from generation.transformer import PRESETS, TransformerConfig


def step_flops(cfg: TransformerConfig, rows: int, text_len: int) -> int:
    """Matrix FLOPs of one transformer forward on `rows` token grids against cached text K/V."""
    n, w, hidden = cfg.seq_len, cfg.width, cfg.mlp_ratio * cfg.width
    per_block = (
        2 * n * w * 3 * w        # self-attention q, k, v (one fused product)
        + 2 * 2 * n * n * w      # q k^T and attention x v over all heads
        + 2 * n * w * w          # self-attention output projection
        + 2 * n * w * w          # cross-attention query
        + 2 * 2 * n * text_len * w  # q k^T and attention x v against the text
        + 2 * n * w * w          # cross-attention output projection
        + 2 * 2 * n * w * hidden  # MLP up and down
    )
    # the two AdaLN modulations of each block, as a table over every t (the same for any batch size)
    tables = cfg.depth * 2 * (2 * cfg.diffusion_steps * w * 2 * w)
    return rows * (cfg.depth * per_block + 2 * n * w * cfg.num_classes) + tables  # + the logits head


def matmul_rate(device: torch.device, dtype: torch.dtype, size: int | None = None, repeats: int = 5) -> float:
    """Measured FLOP/s of a large square matrix product (best of `repeats`)."""
    size = size or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    (a @ b).sum().item()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        c = a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
        del c
    return 2 * size ** 3 / best


def floor(cfg: TransformerConfig, batch: int, guidance: bool, text_len: int, rate: float) -> dict:
    rows = batch * (2 if guidance else 1)
    flops = step_flops(cfg, rows, text_len)
    return {"gflop_per_step": round(flops / 1e9, 2), "rate_tflops": round(rate / 1e12, 2),
            "floor_ms_per_step": round(1e3 * flops / rate, 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.flops", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="ithq", choices=sorted(PRESETS),
                    help="transformer preset (generation.transformer.PRESETS; default ithq)")
    ap.add_argument("--batch", type=positive_int, nargs="+", default=[1, 8], help="images per step (default 1 8)")
    ap.add_argument("--text-len", type=positive_int, default=77, help="text tokens attended to (default 77, CLIP's)")
    ap.add_argument("--no-guidance", action="store_true", help="one pass a step, not the guided two")
    ap.add_argument("--device", type=gendet_env.device_arg, default="cuda" if torch.cuda.is_available() else "cpu",
                    help="where the matrix rate is measured (default: cuda when available)")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                    help="matrix products' type (default float32)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    rate = matmul_rate(device, getattr(torch, args.dtype))
    cfg = TransformerConfig.preset(args.preset)
    for batch in args.batch:
        row = {"preset": args.preset, "batch": batch, "guidance": not args.no_guidance, "dtype": args.dtype,
               "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()}
        print(json.dumps(row | floor(cfg, batch, not args.no_guidance, args.text_len, rate)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
