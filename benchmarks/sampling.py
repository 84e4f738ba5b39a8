"""Ours vs diffusers on the same VQ-Diffusion weights: images/s and the ratio.

    python -m benchmarks.sampling --shape tiny --device cpu                 # CPU
    python -m benchmarks.sampling --shape ithq --device cuda --batch 1 8 --floor    # GPU, with the FLOP floor

A random diffusers pipeline of the given shape (benchmarks.diffusers_reference) is saved,
converted with generation.convert, and both samplers run in one process with the same
prompt, steps, batch, guidance and truncation: warm-up first, then `--repeats` runs of each,
interleaved, median time reported. Both include text encoding and VQ decoding. One JSON
line per setting, then (both samplers only: `--only` prints the JSON lines alone) a Markdown
table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import gendet_env

import argparse
import json
import statistics
import tempfile
import warnings

import torch

from benchmarks import diffusers_reference
from benchmarks._common import cpu_name, positive_int, timed
from generation.convert import convert_diffusers
from generation.sampling_options import check_settings

PROMPT = "a black cat to the left of a white dog"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.sampling", description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=sorted(diffusers_reference.SHAPES), default="tiny",
                    help="random model: tiny (CPU), ithq (the released model's sizes), or the tests' small "
                         "official and test shapes (default tiny)")
    ap.add_argument("--device", type=gendet_env.device_arg, default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--steps", type=int, nargs="+", default=[100, 25, 10], help="denoiser calls (default 100 25 10)")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="images per run (default 1 8)")
    ap.add_argument("--guidance", type=float, nargs="+", default=[5.0, 1.0], help="guidance scales, each measured (1.0 = guidance off; default 5 1)")
    ap.add_argument("--truncation", type=float, default=0.86, help="top probability mass kept (default 0.86)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up, median kept (default 3)")
    ap.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                    help="ours: bf16 autocast, CUDA only (diffusers runs float32 either way)")
    ap.add_argument("--compile", action="store_true", help="ours: torch.compile the transformer")
    ap.add_argument("--only", choices=["both", "ours", "diffusers"], default="both",
                    help="which samplers (default both)")
    ap.add_argument("--tf32", action="store_true", help="CUDA: TF32 matrix products for both samplers")
    ap.add_argument("--floor", action="store_true",
                    help="also the FLOP floor per step (benchmarks.flops: the transformer's matrix FLOPs over "
                         "this device's measured matrix rate in --dtype) and ours per step against it")
    args = ap.parse_args(argv)
    # before the models are built (minutes at --shape ithq): a typo fails at once
    for name, values, low in (("--steps", args.steps, 1), ("--batch", args.batch, 1), ("--repeats", [args.repeats], 1)):
        if min(values) < low:
            ap.error(f"{name} must be >= {low}, got {min(values)}")
    if max(args.steps) > 100:  # diffusers_reference builds every shape with 100 diffusion steps
        ap.error(f"--steps must be at most the models' 100 diffusion steps, got {max(args.steps)}")
    try:
        for g in args.guidance:
            check_settings(truncation=args.truncation, guidance=g)
    except ValueError as e:
        ap.error(f"--{e}")
    device = torch.device(args.device)
    if args.dtype == "bfloat16" and device.type != "cuda":
        # autocast is CUDA-only here: ours would run float32 while the record (and --floor's rate) said bfloat16
        ap.error(f"--dtype bfloat16 needs a CUDA --device (ours runs bf16 autocast on CUDA only), not {args.device}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True

    ref = diffusers_reference.build(args.shape)
    with tempfile.TemporaryDirectory() as tmp:
        src = diffusers_reference.save(ref, f"{tmp}/src")
        ours = convert_diffusers(src, f"{tmp}/ours").to(device).eval()
    ref = ref.to(device)
    ref.set_progress_bar_config(disable=True)
    if args.compile:
        ours.transformer.compile()
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if args.dtype == "bfloat16"
                else torch.autocast("cpu", enabled=False))

    def run_ours(steps, batch, guidance):
        with autocast:
            ours(PROMPT, num_images=batch, steps=steps, guidance_scale=guidance, truncation=args.truncation, seed=0)

    def run_ref(steps, batch, guidance):
        # diffusers' deprecated VQ-Diffusion pipeline reads its own deprecated attributes: its
        # FutureWarnings are about diffusers' code, not the benchmark's
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module="diffusers")
            ref(PROMPT, num_inference_steps=steps, guidance_scale=guidance, truncation_rate=args.truncation,
                num_images_per_prompt=batch, generator=torch.Generator(device).manual_seed(0), output_type="np")

    env = {"shape": args.shape, "device": torch.cuda.get_device_name(device) if device.type == "cuda"
           else f"{cpu_name()} x{torch.get_num_threads()} threads",
           "torch": torch.__version__, "diffusers": __import__("diffusers").__version__,
           "dtype": args.dtype, "compile": args.compile, "truncation": args.truncation, "tf32": args.tf32}
    rate = None
    if args.floor:
        from benchmarks.flops import matmul_rate

        rate = matmul_rate(device, getattr(torch, args.dtype))
        env["matmul_tflops"] = round(rate / 1e12, 2)
    print(json.dumps(env))
    rows = []
    for batch in args.batch:
        for guidance in args.guidance:
            for steps in args.steps:
                runners = {"ours": run_ours, "diffusers": run_ref}
                if args.only != "both":
                    runners = {args.only: runners[args.only]}
                times = {name: [] for name in runners}
                for fn in runners.values():
                    fn(min(steps, 2), batch, guidance)  # warm-up: allocator, kernels, compile (same shapes)
                peaks = {}
                for _ in range(args.repeats):
                    for name, fn in runners.items():
                        if device.type == "cuda":
                            torch.cuda.reset_peak_memory_stats(device)
                        times[name].append(timed(lambda: fn(steps, batch, guidance), device))
                        if device.type == "cuda":
                            peaks[name] = torch.cuda.max_memory_allocated(device)
                row = {"batch": batch, "guidance": guidance, "steps": steps}
                med = {name: statistics.median(times[name]) for name in runners}  # ratios from these, unrounded
                for name in runners:
                    row[f"{name}_s"] = round(med[name], 4)
                    row[f"{name}_img_s"] = round(batch / med[name], 3)
                    if name in peaks:  # torch.cuda.max_memory_allocated over one whole run
                        row[f"{name}_peak_mib_per_image"] = round(peaks[name] / 2**20 / batch, 1)
                if len(runners) == 2:
                    row["ratio"] = round(med["diffusers"] / med["ours"], 2)
                if rate is not None and "ours_s" in row:
                    from benchmarks.flops import floor

                    f = floor(ours.transformer.config, batch, guidance != 1.0, ours.text_encoder.max_length, rate)
                    row["floor_ms_per_step"] = f["floor_ms_per_step"]
                    per_step = 1e3 * med["ours"] / steps  # ms, text + decode included
                    row["ours_ms_per_step"] = round(per_step, 3)
                    row["ours_over_floor"] = round(per_step / f["floor_ms_per_step"], 2)
                print(json.dumps(row), flush=True)
                rows.append(row)
    if rows and "ratio" in rows[0]:
        floor_cols = "floor_ms_per_step" in rows[0]
        print("\n| batch | guidance | steps | ours img/s | diffusers img/s | ours / diffusers |"
              + (" ours ms/step | floor ms/step | ours / floor |" if floor_cols else ""))
        print("|---|---|---|---|---|---|" + ("---|---|---|" if floor_cols else ""))
        for r in rows:
            print(f"| {r['batch']} | {r['guidance']:g} | {r['steps']} | {r['ours_img_s']} | {r['diffusers_img_s']} "
                  f"| {r['ratio']}x |" + (f" {r['ours_ms_per_step']} | {r['floor_ms_per_step']} | "
                                         f"{r['ours_over_floor']}x |" if floor_cols else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
