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

import torch

from benchmarks._common import cpu_name, json_out_problem, positive_int, timed, write_json
from generation.diffusion import MaskReplaceDiffusion
from generation.pipeline import TextToImage
from generation.sampling_options import check_settings
from generation.text import ScratchTextEncoder
from generation.transformer import DenoisingTransformer, TransformerConfig
from generation.vqvae import VQVAE, VQVAEConfig

DEFAULT_STEPS = (100, 25, 10)
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
    ap.add_argument("--batch", type=positive_int, default=4, help="images per run (default 4)")
    ap.add_argument("--steps", type=positive_int, nargs="+", default=None,
                    help=f"denoiser calls (default: those of {' '.join(map(str, DEFAULT_STEPS))} "
                         "the model has, e.g. 10 for the tiny preset)")
    ap.add_argument("--guidance", type=float, default=3.0, help="guidance scale; 1 = off (default 3)")
    ap.add_argument("--device", type=gendet_env.device_arg, default="cuda" if torch.cuda.is_available() else "cpu",
                    help="cpu, cuda (default: cuda when available)")
    ap.add_argument("--repeats", type=positive_int, default=2, help="timed runs, the best kept (default 2)")
    ap.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--json-out", default=None, help="also write the results as a JSON list here")
    args = ap.parse_args(argv)
    # before a model is built: a typo fails at once, not after the warm-up
    try:
        check_settings(guidance=args.guidance)
    except ValueError as e:
        ap.error(f"--{e}")
    problem = json_out_problem(args.json_out)
    if problem:
        ap.error(problem)
    model = gendet_env.expand_user(args.model) if args.model else None  # as from_pretrained reads it
    if model and not model.is_dir():
        ap.error(f"--model {args.model}: {'not a folder' if model.exists() else 'no such folder'} "
                 "(a saved pipeline folder holds pipeline.json)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.model:
        try:
            pipe = TextToImage.from_pretrained(args.model, device=device)
        except (FileNotFoundError, ValueError) as e:
            ap.error(str(e))
        total = pipe.diffusion.num_timesteps
    else:
        total = TransformerConfig.preset(args.preset).diffusion_steps
    steps = args.steps or [s for s in DEFAULT_STEPS if s <= total] or [total]
    if max(steps) > total:
        ap.error(f"--steps {max(steps)}: the model has {total} diffusion steps")
    if not args.model:
        pipe = random_pipeline(args.preset, device)
    # warm-up at the timed batch: allocator, kernels (a batch-1 warm-up left the first timed runs cold)
    pipe("a cat", num_images=args.batch, steps=2, guidance_scale=args.guidance)
    results = []
    for steps_ in steps:
        times = [timed(lambda: pipe("a black cat", num_images=args.batch, steps=steps_, guidance_scale=args.guidance,
                                    seed=r), device) for r in range(args.repeats)]
        best = min(times)
        results.append({"model": args.model or f"preset {args.preset} (random weights)", "device": str(device),
                        "threads": torch.get_num_threads(), "batch": args.batch, "steps": steps_,
                        "guidance": args.guidance, "seconds": round(best, 3),
                        "images_per_s": round(args.batch / best, 3), "cpu": cpu_name(),
                        "cores": os.cpu_count(),
                        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None})
        print(json.dumps(results[-1]), flush=True)
    if args.json_out:
        write_json(args.json_out, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
