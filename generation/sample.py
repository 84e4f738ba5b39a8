"""Generate images from a prompt with a trained pipeline; settings go into each PNG.

    python -m generation.sample "a black cat" --model runs/demo_t2i/pipeline --n 4 --steps 25 --guidance 3 --out out/
    python -m generation.sample "a white dog" --init-image photo.png --filter-ratio 0.5    # edit an image
    python -m generation.sample "a white dog" --init-image photo.png --mask mask.png       # redraw the mask's white part

Image k uses seed SEED + k and is written as OUT/<prompt>_<seed>.png with the prompt,
seed and sampling settings as PNG text chunks (read them back with
`generation.png_info.read_settings`, or "load settings from a PNG" in the app).

Editing and inpainting (VQ-Diffusion's own way): the --init-image is cut to a centre square at
the model's size and tokenised; --filter-ratio R noises its tokens R of the way (1: fully) and
denoises them under the prompt; --mask (white = redraw, the same crop) keeps every token outside
it. Either or both.
"""

from __future__ import annotations

import gendet_env

import argparse
import itertools
import json
import re
import sys
import time
from pathlib import Path

from tqdm import tqdm

from generation.pipeline import TextToImage
from generation.sampling_options import add_sampling_options, clean_prompt, sampling_settings
from generation.png_info import read_settings, save_png

DEFAULT_MODEL = gendet_env.ROOT / "models" / "demo" / "generator"


def slug(prompt: str, max_bytes: int = 120) -> str:
    """A file name's start from the prompt: its words (any script's letters, "café" too), joined by _.

    At most 60 characters and `max_bytes` UTF-8 bytes (cut at a character boundary): file systems
    count a name's 255 in bytes, and 60 four-byte letters with a long seed went over."""
    name = re.sub(r"\W+", "_", prompt.lower()).strip("_")[:60]
    return name.encode()[:max_bytes].decode(errors="ignore") or "image"


def _comparable(settings: dict) -> dict:
    """Settings as JSON has them, the model named as PNGs name it now: an image drawn before
    b841453 recorded the repository's bundle by its absolute path, and was then not "the same"."""
    settings = json.loads(json.dumps(settings))
    if isinstance(settings.get("model"), str):
        settings["model"] = gendet_env.shown_path(settings["model"])
    return settings


def free_path(out: Path, prompt: str, seed: int, settings: dict) -> Path:
    """OUT/<slug>_<seed>.png, unless a file of that name holds an image drawn otherwise (other
    steps, guidance, model...): then -2, -3, ... An image is never written over by another."""
    base = f"{slug(prompt)}_{seed}"
    for k in itertools.count(1):
        path = out / (f"{base}.png" if k == 1 else f"{base}-{k}.png")
        try:
            if not path.exists() or _comparable(read_settings(path)) == _comparable(settings):
                return path
        except ValueError:  # a PNG gendet did not write: not ours to replace either
            continue


def sample(prompt: str, model: str | Path, out: str | Path, n: int = 4, seed: int = 0, steps: int | None = None,
           guidance: float | None = None, truncation: float | None = None, purity: bool | None = None,
           device: str | None = None, progress: bool = True, init_image: str | Path | None = None,
           filter_ratio: float | None = None, mask: str | Path | None = None, batch: int = 8) -> list[Path]:
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    prompt = clean_prompt(prompt) if isinstance(prompt, str) else prompt  # recorded in each PNG as meant
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:  # n=0 loaded the model to draw nothing
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    problem = gendet_env.unwritable(out)
    if problem:  # said now, not after the drawing
        raise ValueError(problem)
    pipe = TextToImage.from_pretrained(model, device=device)
    edit, recorded = {}, {}
    if init_image is not None or mask is not None:
        from generation.data import edit_inputs  # albumentations: imported only for an edit

        edit = edit_inputs(pipe.image_size, init_image, mask)
        recorded = {k: str(v) for k, v in (("init_image", init_image), ("mask", mask)) if v is not None}
    seeds = list(range(seed, seed + n))
    chunks = [seeds[i:i + batch] for i in range(0, n, batch)]  # image k depends on its seed alone
    # the denoiser calls per batch: an edit that starts part-way makes at most that many
    start_t = None if filter_ratio is None else pipe.diffusion.start_t_for_filter_ratio(filter_ratio)
    per_chunk = len(pipe.diffusion.timesteps(pipe.defaults["steps"] if steps is None else steps, start_t))
    bar = tqdm(total=per_chunk * len(chunks), desc="sampling", unit="step", disable=not progress)
    out, paths, t0 = Path(out), [], time.time()
    for chunk in chunks:
        result = pipe(prompt, seeds=chunk, steps=steps, guidance_scale=guidance, truncation=truncation,
                      purity=purity, callback=lambda i, t, x0: bar.update(), filter_ratio=filter_ratio, **edit)
        out.mkdir(parents=True, exist_ok=True)  # only now: a failed run leaves no empty folder behind
        for image, s in zip(result.pil(), result.seeds):  # written as each batch ends: an interrupt keeps them
            settings = {"prompt": prompt, "seed": s, **result.settings, **recorded, "model": gendet_env.shown_path(model)}
            paths.append(save_png(image, free_path(out, prompt, s, settings), settings))
    bar.close()
    elapsed = time.time() - t0
    if progress:
        print(f"{n} image{'s' * (n != 1)} in {elapsed:.2f} s ({n / elapsed:.2f} images/s)", file=sys.stderr)
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m generation.sample", description=__doc__.split("\n\n")[0])
    ap.add_argument("prompt", help='what to draw, e.g. "two black cats"')
    ap.add_argument("--model", default=str(DEFAULT_MODEL), help="a saved pipeline folder (default: the demo bundle)")
    ap.add_argument("--n", type=int, default=4, help="number of images (default 4)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the first image (default 0)")
    ap.add_argument("--batch", type=int, default=8,
                    help="images sampled at once (default 8); the images are the same whatever the batch")
    add_sampling_options(ap)
    ap.add_argument("--device", type=gendet_env.device_arg, default=None,
                    help="cpu, cuda, cuda:1 (default: cuda when available)")
    ap.add_argument("--out", default="out", help="output folder (default ./out)")
    ap.add_argument("--init-image", default=None, metavar="PNG",
                    help="edit or inpaint this image (cut to a centre square at the model's size)")
    ap.add_argument("--filter-ratio", type=float, default=None, metavar="R",
                    help="with --init-image: noise its tokens this far, in (0, 1], then redraw them (1: fully)")
    ap.add_argument("--mask", default=None, metavar="PNG",
                    help="with --init-image: white = redraw, the rest is kept (the same crop as the image)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    # checked before the model loads, so a typo fails at once and without a progress bar
    args.prompt = clean_prompt(args.prompt)
    if not args.prompt:
        ap.error("the prompt is empty: describe the image")
    for flag, value in (("--n", args.n), ("--batch", args.batch)):
        if value < 1:
            ap.error(f"{flag} must be >= 1, got {value}")
    if args.seed < 0:
        ap.error(f"--seed must be >= 0, got {args.seed}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        ap.error(f"--out {args.out}: exists and is not a folder")
    sampling_settings(ap, args)
    if args.init_image is None and (args.filter_ratio is not None or args.mask is not None):
        ap.error("--filter-ratio and --mask edit an image: give it with --init-image")
    if args.init_image is not None and args.filter_ratio is None and args.mask is None:
        ap.error("--init-image needs --filter-ratio (edit), --mask (inpaint) or both")
    if args.filter_ratio is not None and not 0 < args.filter_ratio <= 1:
        ap.error(f"--filter-ratio must be in (0, 1], got {args.filter_ratio}")
    for flag, path in (("--init-image", args.init_image), ("--mask", args.mask)):
        if path is not None and not Path(path).is_file():
            ap.error(f"{flag} {path}: " + ("a folder, not an image file" if Path(path).is_dir() else "no such file"))
    try:
        paths = sample(args.prompt, args.model, args.out, args.n, args.seed, args.steps, args.guidance,
                       args.truncation, args.purity, args.device, not args.quiet, args.init_image,
                       args.filter_ratio, args.mask, args.batch)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
