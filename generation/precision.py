"""Which float precision training runs its matrix and convolution work in.

    autocast = training_autocast(device, resolve_precision("auto", device))
    with autocast:
        loss = model(x)

"auto" picks bf16 autocast where the hardware has native bf16 arithmetic: CUDA GPUs that
support it, and CPUs with AVX512-BF16 or AMX (there a 128 px VQ-VAE step, channels-last, is
2.3-3.3x faster than float32; benchmarks/RESULTS.md). Elsewhere bf16 is emulated and slower,
so "auto" means fp32.
Weights, optimizer state and the loss stay float32 either way (autocast, not a cast).
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def cpu_has_native_bf16() -> bool:
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, hence the guard
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """'auto' -> 'bf16' or 'fp32' for this device; 'fp32'/'bf16' are returned as asked."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


def training_autocast(device: torch.device | str, precision: str):
    """A bf16 autocast context for 'bf16', a no-op for 'fp32'."""
    device = torch.device(device)
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
