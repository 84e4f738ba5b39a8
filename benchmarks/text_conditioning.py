"""What the prompt is worth to a trained generator: the x0 cross-entropy on the masked tokens
of val images with their own caption, with another image's caption, and with the null text.

    python -m benchmarks.text_conditioning --model models/demo/generator --data runs/demo_cpu/generator_scenes

For each t the images are noised once (seeded) and the three texts see the same x_t, so the
differences are the text's alone. A model that reads its prompts has true < wrong, most of
all at large t, where the layout is still open; true = wrong = null means it ignores them.
Prints a table and, with --json-out, writes the rows.

With --relations the images are the val images that have a relation caption ("a cat to the left
of a dog"), "true" is that caption and "wrong" the same caption with its two objects swapped ("a
dog to the left of a cat"): the same words, now false. true = wrong means the generator does not
read the relation.
"""

from __future__ import annotations

import gendet_env

import argparse
import sys
from pathlib import Path

import torch

from benchmarks._common import json_out_problem, read_objects, write_json

DEMO = gendet_env.ROOT / "models" / "demo" / "generator"


@torch.no_grad()
def text_worth(pipe, tokens: torch.Tensor, prompts: list[str], ts: list[int], seed: int = 0,
               batch: int = 32, on_object: torch.Tensor | None = None, wrong: list[str] | None = None) -> list[dict]:
    """Rows {t, masked, true, wrong, null}: mean x0 cross-entropy (nats) over the masked tokens,
    with each image's prompt, `wrong` (default: other_captions(prompts)), and the learned null text. With
    `on_object` (bool [B, N], the tokens inside an object's box) each row also has the same
    three means over the masked object tokens ("object") and the others ("background")."""
    D = pipe.diffusion
    wrong = other_captions(prompts) if wrong is None else wrong
    if len(wrong) != len(prompts):
        raise ValueError(f"{len(wrong)} wrong prompts for {len(prompts)} images")
    rows = []
    for t_ in ts:
        if not 0 <= t_ < D.num_timesteps:
            raise ValueError(f"t must be in 0..{D.num_timesteps - 1}, got {t_}")
        g = torch.Generator().manual_seed(seed + t_)
        t_all = torch.full((len(tokens),), t_, dtype=torch.long)
        xt = D.q_sample(tokens, t_all, generator=g)
        masked = xt == D.mask_id
        regions = {"all": masked}
        if on_object is not None:
            regions |= {"object": masked & on_object, "background": masked & ~on_object}
        sums = {r: {"true": 0.0, "wrong": 0.0, "null": 0.0} for r in regions}
        for i in range(0, len(tokens), batch):
            sl = slice(i, i + batch)
            x0, x, t = tokens[sl].to(pipe.device), xt[sl].to(pipe.device), t_all[sl].to(pipe.device)
            for name, texts in (("true", prompts[sl]), ("wrong", wrong[sl]), ("null", prompts[sl])):
                drop = torch.ones(len(texts), dtype=torch.bool) if name == "null" else None
                emb, mask = pipe.encode_text(texts, drop)
                denoise = pipe.transformer.denoiser(pipe.transformer.prepare_text(emb, mask))
                log_x0 = D.predict_start(denoise, x, t)[:, :-1]
                ce = -log_x0.gather(1, x0.unsqueeze(1)).squeeze(1).cpu()
                for r, m in regions.items():
                    sums[r][name] += float(ce[m[sl]].sum())

        def means(r):
            n = int(regions[r].sum())
            return {k: (v / n if n else float("nan")) for k, v in sums[r].items()}

        row = {"t": t_, "masked": float(masked.float().mean()), **means("all")}
        rows.append(row | {r: means(r) for r in regions if r != "all"})
    return rows


def other_captions(prompts: list[str]) -> list[str]:
    """For each image, the caption of the next image (cyclically) whose caption differs from its
    own: with the plain next one, an image next to one of the same caption (or the only image) was
    scored against its own, and read as a model that ignores the prompt."""
    n = len(prompts)
    out = []
    for i, own in enumerate(prompts):
        other = next((prompts[(i + k) % n] for k in range(1, n) if prompts[(i + k) % n] != own), None)
        if other is None:
            raise ValueError(f"every one of the {n} images has the caption {own!r}: no other caption to "
                             "compare with (use more images)")
        out.append(other)
    return out


def swapped_relation(caption: str) -> str | None:
    """"a cat to the left of a dog" -> "a dog to the left of a cat"; None if no relation."""
    from datasets.scenes import RELATIONS

    for rel in RELATIONS:
        a, sep, b = caption.partition(f" {rel} ")
        if sep:
            return f"{b} {rel} {a}"
    return None


def object_tokens(rows: list[dict], size: int, grid: tuple[int, int]) -> torch.Tensor:
    """bool [B, h*w]: token cells whose centre lies inside one of the image's object boxes
    (datasets.scenes objects.jsonl rows of square images, resized to `size`)."""
    h, w = grid
    ys = (torch.arange(h, dtype=torch.float64) + 0.5) * size / h
    xs = (torch.arange(w, dtype=torch.float64) + 0.5) * size / w
    out = torch.zeros(len(rows), h, w, dtype=torch.bool)
    for i, row in enumerate(rows):
        if row["width"] != row["height"]:
            raise ValueError(f"{row['image']}: {row['width']}x{row['height']} is not square")
        k = size / row["width"]
        for obj in row["objects"]:
            x1, y1, x2, y2 = (c * k for c in obj["box"])
            out[i] |= ((ys >= y1) & (ys < y2))[:, None] & ((xs >= x1) & (xs < x2))[None, :]
    return out.view(len(rows), h * w)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.text_conditioning", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(DEMO), help="saved TextToImage folder (default: the demo generator)")
    ap.add_argument("--data", required=True, help="captions dataset (datasets.scenes folder); its val split is used")
    ap.add_argument("--images", type=int, default=128, help="val images (the first N; default 128)")
    ap.add_argument("--t", type=int, nargs="+", default=[10, 50, 80, 95, 99], help="diffusion steps (0-based; default 10 50 80 95 99)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the noised tokens (default 0)")
    ap.add_argument("--relations", action="store_true",
                    help="only images with a relation caption; wrong = that caption with its objects swapped")
    ap.add_argument("--device", type=gendet_env.device_arg, default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--json-out", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    low = 1 if args.relations else 2  # another image's caption needs another image
    if args.images < low:
        why = "" if args.relations else " (the wrong caption is another image's)"
        ap.error(f"--images must be >= {low}{why}, got {args.images}")
    problem = json_out_problem(args.json_out)
    if problem:
        ap.error(problem)
    from generation.data import CaptionImageDataset
    from generation.pipeline import TextToImage

    try:
        pipe = TextToImage.from_pretrained(args.model, device=args.device).eval()
        ds = CaptionImageDataset(args.data, "val", pipe.image_size)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    picked, prompts, wrong = list(range(len(ds))), [caps[0] for caps in ds.captions], None
    if args.relations:  # each image's first relation caption, and that caption swapped
        picked, prompts, wrong = [], [], []
        for i, caps in enumerate(ds.captions):
            pair = next(((c, w) for c in caps if (w := swapped_relation(c))), None)
            if pair:
                picked.append(i)
                prompts.append(pair[0])
                wrong.append(pair[1])
        if not picked:
            print(f"error: no val caption of {args.data} names a relation", file=sys.stderr)
            return 2
    n = min(args.images, len(picked))
    picked, prompts = picked[:n], prompts[:n]
    try:  # before the images are encoded: a val split of one caption fails at once
        wrong = wrong[:n] if wrong else other_captions(prompts)
    except ValueError as e:
        print(f"error: {args.data}: {e}", file=sys.stderr)
        return 2
    images = torch.stack([ds[i][0] for i in picked])
    with torch.no_grad():
        tokens = torch.cat([pipe.vqvae.encode(images[i:i + 64].to(pipe.device)).cpu() for i in range(0, n, 64)])
    try:
        on_object = None
        objects_path = Path(args.data) / "objects.jsonl"
        if objects_path.is_file():  # datasets.scenes writes the boxes beside the captions
            by_image = read_objects(objects_path)
            chosen = [ds.rows[i] for i in picked]
            missing = [r["image"] for r in chosen if r["image"] not in by_image]
            if missing:
                raise ValueError(f"{objects_path} has no row for {missing[0]}")
            boxes = [by_image[r["image"]] for r in chosen]
            on_object = object_tokens(boxes, pipe.image_size, pipe.vqvae.token_grid(pipe.image_size))
        rows = text_worth(pipe, tokens, prompts, args.t, args.seed, on_object=on_object, wrong=wrong)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    other = "the same caption, objects swapped" if args.relations else "another image's"
    print(f"x0 cross-entropy on masked tokens (nats): own caption / {other} / null text; "
          f"{n} val images of {args.data}")
    regions = ["all"] + (["object", "background"] if on_object is not None else [])
    print("| t | masked | " + " | ".join(regions) + " |\n" + "|---" * (len(regions) + 2) + "|")
    for r in rows:
        cells = [r if g == "all" else r[g] for g in regions]
        print(f"| {r['t']} | {r['masked']:.2f} | "
              + " | ".join(f"{c['true']:.3f} / {c['wrong']:.3f} / {c['null']:.3f}" for c in cells) + " |")
    if args.json_out:
        share = None if on_object is None else float(on_object.float().mean())
        write_json(args.json_out, {"model": gendet_env.shown_path(args.model), "data": args.data, "images": n,
                                   "wrong": "swapped relation" if args.relations else "next other caption",
                                   "object_token_share": share, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
