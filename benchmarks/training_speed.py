"""Training step time of the VQ-VAE and of the diffusion transformer, per precision and layout.

    python -m benchmarks.training_speed vqvae --size 128 --channels 32 64 --batch 16 32
    python -m benchmarks.training_speed transformer --width 192 --depth 4 --grid 16 --batch 32

One step = forward, backward and the optimizer step, on random data (speed does not depend on
what is learned), median of --repeats after --warmup steps. Every combination of the listed
precisions (fp32, bf16 autocast) and, for the VQ-VAE, memory layouts (contiguous, channels_last)
is timed in this one process. Prints one JSON line per setting; copy the figures into
benchmarks/RESULTS.md with the machine and this command.
"""

from __future__ import annotations

import gendet_env

import argparse
import itertools
import json
import os
import statistics

import torch
import torch.nn.functional as F

from benchmarks._common import cpu_name, non_negative_int, positive_int, timed
from generation.diffusion import MaskReplaceDiffusion
from generation.precision import training_autocast
from generation.text import ScratchTextEncoder
from generation.transformer import DenoisingTransformer, TransformerConfig
from generation.vqvae import VQVAE, VQVAEConfig

CAPTIONS = ["a black cat", "two dogs", "a face to the left of a dog", "a white cat on the right"]


def time_steps(step, device, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        step()
    return statistics.median([timed(step, device) for _ in range(repeats)])


def vqvae_step(args, device, channels: int, batch: int, precision: str, layout: str):
    torch.manual_seed(0)
    mult = (1, 2, 2, 4) if args.downsample == 8 else (1, 2, 2)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    vq = VQVAE(VQVAEConfig(channels=channels, channel_mult=mult, embed_dim=args.embed_dim)).to(device, memory_format=fmt)
    opt = torch.optim.Adam(vq.parameters(), lr=1e-4)
    x = torch.rand(batch, 3, args.size, args.size, device=device).contiguous(memory_format=fmt)

    def step():
        with training_autocast(device, precision):
            rec, _, qloss = vq(x)
            loss = (rec - x).abs().mean() + F.mse_loss(rec, x) + qloss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def transformer_step(args, device, batch: int, precision: str):
    torch.manual_seed(0)
    text = ScratchTextEncoder.train_new(CAPTIONS, vocab_size=200, dim=args.text_dim, layers=2, heads=4,
                                        max_length=24).to(device)
    cfg = TransformerConfig(num_classes=args.codes, h=args.grid, w=args.grid, text_dim=text.dim, width=args.width,
                            depth=args.depth, heads=args.heads)
    model = DenoisingTransformer(cfg).to(device)
    diffusion = MaskReplaceDiffusion(args.codes, cfg.diffusion_steps).to(device)
    params = [*model.parameters(), *text.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-4)
    gen = torch.Generator(device).manual_seed(0)
    x0 = torch.randint(0, args.codes, (batch, args.grid * args.grid), device=device)
    prompts = [CAPTIONS[i % len(CAPTIONS)] for i in range(batch)]

    def step():
        with training_autocast(device, precision):
            emb, mask = text.encode(prompts)
            loss, _ = diffusion.loss(model.denoiser(model.prepare_text(emb, mask)), x0, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    return step


def check_shapes(ap: argparse.ArgumentParser, args) -> None:
    """The model's shape rules as one line each, before anything is built (they were tracebacks
    from inside the first step)."""
    if args.model == "vqvae" and args.size % args.downsample:
        ap.error(f"--size {args.size} is not divisible by --downsample {args.downsample}")
    if args.model == "transformer":
        if args.width % args.heads:
            ap.error(f"--width {args.width} is not divisible by --heads {args.heads}")
        if args.text_dim % 4:  # the text encoder's 4 attention heads
            ap.error(f"--text-dim must be a multiple of 4 (the text encoder's heads), got {args.text_dim}")
        if args.codes < 2:
            ap.error(f"--codes must be >= 2, got {args.codes}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.training_speed", description=__doc__.split("\n\n")[0])
    ap.add_argument("model", choices=("vqvae", "transformer"), help="which model's training step to time")
    ap.add_argument("--batch", type=positive_int, nargs="+", default=[16], help="batch sizes (default 16)")
    ap.add_argument("--precision", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"],
                    help="precisions to compare (default fp32 bf16)")
    ap.add_argument("--device", type=gendet_env.device_arg, default=None,
                    help="cpu, cuda (default: cuda when available)")
    ap.add_argument("--threads", type=non_negative_int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--warmup", type=non_negative_int, default=2, help="untimed steps first (default 2)")
    ap.add_argument("--repeats", type=positive_int, default=5, help="timed steps, the median kept (default 5)")
    vq = ap.add_argument_group("vqvae")
    vq.add_argument("--size", type=positive_int, default=128, help="image side (default 128)")
    vq.add_argument("--channels", type=positive_int, nargs="+", default=[32], help="base conv channels (default 32)")
    vq.add_argument("--downsample", type=int, choices=(4, 8), default=8,
                    help="image side / token grid side (default 8)")
    vq.add_argument("--embed-dim", type=positive_int, default=32, help="code vector width (default 32)")
    vq.add_argument("--layout", nargs="+", choices=("contiguous", "channels_last"),
                    default=["contiguous", "channels_last"], help="memory layouts to compare (default both)")
    tr = ap.add_argument_group("transformer")
    tr.add_argument("--width", type=positive_int, default=192, help="model width (default 192)")
    tr.add_argument("--depth", type=positive_int, default=4, help="blocks (default 4)")
    tr.add_argument("--heads", type=positive_int, default=6, help="attention heads (default 6)")
    tr.add_argument("--grid", type=positive_int, default=16, help="token grid side (256 tokens at 16)")
    tr.add_argument("--codes", type=positive_int, default=512, help="image codes K (default 512)")
    tr.add_argument("--text-dim", type=positive_int, default=128, help="text embedding width (default 128)")
    args = ap.parse_args(argv)
    check_shapes(ap, args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    where = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
             "threads": torch.get_num_threads(), "torch": torch.__version__, "cpus": os.cpu_count()}
    if args.model == "vqvae":
        grid = itertools.product(args.channels, args.batch, args.precision, args.layout)
        for channels, batch, precision, layout in grid:
            s = time_steps(vqvae_step(args, device, channels, batch, precision, layout), device, args.warmup,
                           args.repeats)
            print(json.dumps({"model": "vqvae", "size": args.size, "channels": channels, "f": args.downsample,
                              "batch": batch, "precision": precision, "layout": layout, "s_step": round(s, 4),
                              "images_s": round(batch / s, 2)} | where), flush=True)
    else:
        for batch, precision in itertools.product(args.batch, args.precision):
            s = time_steps(transformer_step(args, device, batch, precision), device, args.warmup, args.repeats)
            print(json.dumps({"model": "transformer", "width": args.width, "depth": args.depth,
                              "tokens": args.grid ** 2, "batch": batch, "precision": precision,
                              "s_step": round(s, 4), "it_s": round(1 / s, 3),
                              "tokens_s": round(batch * args.grid ** 2 / s)} | where), flush=True)


if __name__ == "__main__":
    main()
