"""Sampling speed of TextToImage: images/s at several step counts, for a saved model or a preset
with random weights (speed does not depend on what the weights learned).

    python -m benchmarks.sampling_speed --preset demo --batch 4 --steps 100 25 10
    python -m benchmarks.sampling_speed --model models/demo/generator --device cuda

Prints one JSON line per setting; copy the figures into benchmarks/RESULTS.md with the
machine and this command.
"""

from __future__ import annotations

import gendet_env

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from generation.diffusion import MaskReplaceDiffusion
from generation.pipeline import TextToImage
from generation.text import ScratchTextEncoder
from generation.transformer import DenoisingTransformer, TransformerConfig
from generation.vqvae import VQVAE, VQVAEConfig

PRESET_IMAGE = {"demo": (128, (1, 2, 2, 4), 512), "demo32": (128, (1, 2, 2), 512), "tiny": (16, (1, 2, 2), 32)}


def random_pipeline(preset: str, device) -> TextToImage:
    size, mult, codes = PRESET_IMAGE[preset]
    vq = VQVAE(VQVAEConfig(channels=64, channel_mult=mult, codebook_size=codes, embed_dim=64))
    text = ScratchTextEncoder.train_new(["a cat", "two dogs", "a face to the left of a dog"], vocab_size=200,
                                        dim=TransformerConfig.preset(preset).text_dim, layers=4, heads=4,
                                        max_length=32)
    cfg = TransformerConfig.preset(preset)
    return TextToImage(vq, text, DenoisingTransformer(cfg), MaskReplaceDiffusion(cfg.num_classes, cfg.diffusion_steps),
                       size).to(device).eval()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.sampling_speed", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="saved pipeline folder (default: --preset with random weights)")
    ap.add_argument("--preset", default="demo", choices=sorted(PRESET_IMAGE),
                    help="transformer preset for random weights, without --model (default demo)")
    ap.add_argument("--batch", type=int, default=4, help="images per run (default 4)")
    ap.add_argument("--steps", type=int, nargs="+", default=[100, 25, 10], help="denoiser calls (default 100 25 10)")
    ap.add_argument("--guidance", type=float, default=3.0, help="guidance scale; 1 = off (default 3)")
    ap.add_argument("--device", type=gendet_env.device_arg, default="cuda" if torch.cuda.is_available() else "cpu",
                    help="cpu, cuda (default: cuda when available)")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs, the best kept (default 2)")
    ap.add_argument("--json-out", default=None, help="also write the results as a JSON list here")
    args = ap.parse_args(argv)
    results = []
    device = torch.device(args.device)
    pipe = TextToImage.from_pretrained(args.model, device=device) if args.model else random_pipeline(args.preset, device)
    pipe("a cat", num_images=1, steps=2, guidance_scale=args.guidance)  # warm-up
    for steps in args.steps:
        times = []
        for r in range(args.repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            pipe("a black cat", num_images=args.batch, steps=steps, guidance_scale=args.guidance, seed=r)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        best = min(times)
        results.append({"model": args.model or f"preset {args.preset} (random weights)", "device": str(device),
                        "threads": torch.get_num_threads(), "batch": args.batch, "steps": steps,
                        "guidance": args.guidance, "seconds": round(best, 3),
                        "images_per_s": round(args.batch / best, 3), "cpu": platform.processor() or platform.machine(),
                        "cores": os.cpu_count(),
                        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None})
        print(json.dumps(results[-1]))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
