"""How consistent a VQ-VAE's codes are: the share of token ids that change when val images get
faint pixel noise, and when the reconstruction itself is encoded again.

    python -m benchmarks.token_stability --vqvae models/tokenizer128 --data runs/demo_gpu/generator_scenes

A generator has to predict the encoder's exact ids. Where the codebook holds near-duplicates,
the encoder's choice among them turns on details no neighbour can tell, so the ids carry noise
that the generator cannot learn, whatever its size. Two measures of it, each split into the
tokens whose cell centre lies in an object box and the rest (datasets.scenes boxes):

* noise: ids changed by Gaussian pixel noise of std `--noise` (2/255: below what an 8-bit image
  can tell apart); how close images sit to the codes' borders.
* re-encode: ids of encode(decode(ids)) that differ from ids; 0 for a codebook without
  duplicates, since every decoded code would come back as itself.
"""

from __future__ import annotations

import gendet_env  # noqa: F401

import argparse
import json
import sys
from pathlib import Path

import torch

from benchmarks._common import json_out_problem, non_negative_float, positive_int, read_objects, write_json
from benchmarks.text_conditioning import object_tokens


@torch.no_grad()
def token_stability(vq, images: torch.Tensor, on_object: torch.Tensor, noise: float = 2 / 255, seed: int = 0,
                    batch: int = 64) -> dict:
    """{measure: {"object", "background", "all"}}: the share of token ids that change, for
    images [B, 3, H, W] in [0, 1] and on_object bool [B, h*w]."""
    g = torch.Generator().manual_seed(seed)
    ids, noisy, again = [], [], []
    for i in range(0, len(images), batch):
        x = images[i:i + batch]
        tokens = vq.encode(x)
        ids.append(tokens)
        noisy.append(vq.encode((x + noise * torch.randn(x.shape, generator=g)).clamp(0, 1)))
        again.append(vq.encode(vq.decode(tokens)))
    ids = torch.cat(ids)
    out = {}
    for name, other in (("noise", torch.cat(noisy)), ("re-encode", torch.cat(again))):
        changed = (other != ids).float()
        out[name] = {"object": float(changed[on_object].mean()), "background": float(changed[~on_object].mean()),
                     "all": float(changed.mean())}
    return out


def image_side(vqvae: Path, data: Path) -> int:
    """The side --size leaves to the files: a pipeline's image_size, else the first val image's."""
    meta = vqvae.parent / "pipeline.json"
    if meta.is_file():
        return int(json.loads(meta.read_text())["image_size"])
    from PIL import Image

    from generation.data import read_captions

    rows = read_captions(data, "val")
    if not rows:
        raise ValueError(f"{data}/captions.jsonl has no rows for split 'val'")
    with Image.open(data / rows[0]["image"]) as im:
        return min(im.size)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.token_stability", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vqvae", required=True, help="a saved VQ-VAE folder (a pipeline's vqvae/ too)")
    ap.add_argument("--data", required=True, help="datasets.scenes folder; its val split and boxes are used")
    ap.add_argument("--size", type=positive_int, default=None,
                    help="image side to measure at (default: the pipeline's image size when --vqvae is a "
                         "pipeline's vqvae/, else the side of the data's first val image)")
    ap.add_argument("--images", type=positive_int, default=200, help="val images (first N; default 200)")
    ap.add_argument("--noise", type=non_negative_float, default=2 / 255, help="pixel noise std (images in [0, 1]; default 2/255)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the pixel noise (default 0)")
    ap.add_argument("--json-out", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    problem = json_out_problem(args.json_out)
    if problem:
        ap.error(problem)
    from generation.data import CaptionImageDataset
    from generation.vqvae import VQVAE

    try:
        vq = VQVAE.from_pretrained(args.vqvae).eval()
        size = args.size or image_side(Path(args.vqvae), Path(args.data))  # --size is >= 1 when given
        ds = CaptionImageDataset(args.data, "val", size)
        objects_path = Path(args.data) / "objects.jsonl"
        if not objects_path.is_file():
            raise FileNotFoundError(f"{objects_path} is missing: the measure needs the object boxes "
                                    "(a datasets.scenes folder)")
        by_image = read_objects(objects_path)
        n = min(args.images, len(ds))
        missing = [r["image"] for r in ds.rows[:n] if r["image"] not in by_image]
        if missing:
            raise ValueError(f"{objects_path} has no row for {missing[0]}")
        on_object = object_tokens([by_image[r["image"]] for r in ds.rows[:n]], size, vq.token_grid(size))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    images = torch.stack([ds[i][0] for i in range(n)])
    result = token_stability(vq, images, on_object, args.noise, args.seed)
    print(f"token ids changed, {n} val images of {args.data} at {size} px "
          f"({float(on_object.float().mean()):.2f} of the tokens on objects)")
    print("| measure | object | background | all |\n|---|---|---|---|")
    for name, r in result.items():
        print(f"| {name} | {r['object']:.3f} | {r['background']:.3f} | {r['all']:.3f} |")
    if args.json_out:
        # "noise" is the measure's result; the std it used is "noise_std"
        write_json(args.json_out, {"vqvae": args.vqvae, "data": args.data, "images": n, "size": size,
                                   "seed": args.seed, "noise_std": args.noise, **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
