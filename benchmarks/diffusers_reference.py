"""Random diffusers VQ-Diffusion pipelines of a given shape, built offline: the reference
for generation.convert's parity tests and for benchmarks.sampling.

Shapes: ``tiny`` (CPU benchmark), ``ithq`` (the released microsoft/vq-diffusion-ithq:
36 blocks of 16 x 88, 4096 codes on 32 x 32 tokens, CLIP ViT-B/32 text, a VQGAN with f=8),
``test`` (the parity tests: seconds to build and run) and ``official`` (as small, with the
official layout's GroupNorm(32) VQGAN: the shape for ``--official``).

To try ``generation.convert`` without a download, write one (random weights: the images are noise)::

    python -m benchmarks.diffusers_reference --shape official --out runs/ref/diffusers --official runs/ref/official
"""

from __future__ import annotations

import gendet_env

import argparse
import sys
from pathlib import Path

import torch

SHAPES = {
    #        codes, side, layers, heads, head_dim, text (dim, layers, heads, length), vq (channels, latent, embed)
    "test": dict(codes=24, side=4, layers=2, heads=2, head_dim=16, text=(32, 2, 2, 12), vq=((16, 32), 8, 8, 1)),
    "tiny": dict(codes=256, side=8, layers=2, heads=2, head_dim=32, text=(64, 2, 2, 77), vq=((16, 32, 32, 64), 16, 16, 1)),
    # the official-layout tests: CLIP heads of 64 (OpenAI's rule), GroupNorm(32) and attention as in taming's VQGAN
    "official": dict(codes=24, side=4, layers=2, heads=2, head_dim=16, text=(128, 2, 2, 12), vq=((32, 64), 8, 8, 1),
                     vq_attn=(False, True), vq_groups=32),
    "ithq": dict(codes=4096, side=32, layers=36, heads=16, head_dim=88, text=(512, 12, 8, 77),
                 vq=((128, 256, 256, 512), 256, 128, 2)),
}
CAPTIONS = ["a black cat", "two white dogs", "a face to the left of a dog", "a teddy bear playing in the pool",
            "three brown dogs on a red background", "a cat and a face", "no dogs", "an orange cat on the right"]


def randomise(module: torch.nn.Module, seed: int, std: float = 0.3) -> torch.nn.Module:
    """Random weights everywhere (diffusers zero-inits some): every mapped tensor matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return module


def build(shape: str = "test", learnable_null: bool = True, seed: int = 0, captions: list[str] | None = None):
    """A VQDiffusionPipeline with random weights of `shape` (see SHAPES)."""
    from diffusers import Transformer2DModel, VQDiffusionScheduler, VQModel
    from diffusers.pipelines.deprecated.vq_diffusion.pipeline_vq_diffusion import (
        LearnedClassifierFreeSamplingEmbeddings, VQDiffusionPipeline)
    from transformers import CLIPTextConfig, CLIPTextModel

    from generation.text import ScratchTextEncoder

    s = SHAPES[shape]
    dim, text_layers, text_heads, length = s["text"]
    channels, latent, embed, per_block = s["vq"]
    torch.manual_seed(seed)
    tok = ScratchTextEncoder.train_tokenizer(captions or CAPTIONS, vocab_size=300, max_length=length)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=dim, intermediate_size=4 * dim,
                                        num_hidden_layers=text_layers, num_attention_heads=text_heads,
                                        max_position_embeddings=length, pad_token_id=tok.pad_token_id,
                                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)).eval()
    n = len(channels)
    attn = s.get("vq_attn", (False,) * n)
    vq = VQModel(in_channels=3, out_channels=3,
                 down_block_types=tuple("AttnDownEncoderBlock2D" if a else "DownEncoderBlock2D" for a in attn),
                 up_block_types=tuple("AttnUpDecoderBlock2D" if a else "UpDecoderBlock2D" for a in attn[::-1]),
                 block_out_channels=channels, layers_per_block=per_block,
                 latent_channels=latent, num_vq_embeddings=s["codes"], vq_embed_dim=embed,
                 norm_num_groups=s.get("vq_groups", min(32, channels[0] // 2)),
                 sample_size=s["side"] * 2 ** (n - 1)).eval()
    transformer = Transformer2DModel(num_attention_heads=s["heads"], attention_head_dim=s["head_dim"],
                                     num_layers=s["layers"], cross_attention_dim=dim,
                                     num_vector_embeds=s["codes"] + 1, sample_size=s["side"],
                                     activation_fn="geglu-approximate", attention_bias=True,
                                     num_embeds_ada_norm=100, norm_type="ada_norm").eval()
    # large models: keep activations moderate so log-probabilities stay informative
    randomise(transformer, seed + 1, std=0.3 if s["layers"] <= 4 else 0.02)
    null = LearnedClassifierFreeSamplingEmbeddings(learnable=learnable_null, hidden_size=dim if learnable_null else None,
                                                   length=length if learnable_null else None)
    if learnable_null:
        with torch.no_grad():
            null.embeddings.copy_(torch.randn(length, dim, generator=torch.Generator().manual_seed(seed + 2)) * 0.2)
    return VQDiffusionPipeline(vqvae=vq, text_encoder=text, tokenizer=tok, transformer=transformer,
                               scheduler=VQDiffusionScheduler(num_vec_classes=s["codes"] + 1, num_train_timesteps=100),
                               learned_classifier_free_sampling_embeddings=null)


def save(pipe, folder: str | Path) -> Path:
    """Each part with its own save_pretrained (the layout of a hub download)."""
    folder = Path(folder)
    for name in ("vqvae", "text_encoder", "transformer", "scheduler", "tokenizer",
                 "learned_classifier_free_sampling_embeddings"):
        getattr(pipe, name).save_pretrained(folder / name)
    return folder


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.diffusers_reference",
                                 description="Write a diffusers VQ-Diffusion pipeline with random weights "
                                             "(and, with --official, the same weights in the official release's "
                                             "layout): inputs for generation.convert, built offline.")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="tiny", help="model shape (default tiny)")
    ap.add_argument("--out", required=True, help="folder for the diffusers layout")
    ap.add_argument("--official", default=None, help="also write the official microsoft/VQ-Diffusion layout here")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    args = ap.parse_args(argv)
    if args.official and args.shape not in ("official", "ithq"):
        # taming's VQGAN normalises with GroupNorm(32); the other shapes' widths are not multiples of 32
        print(f"error: --official needs a shape whose VQGAN has GroupNorm(32): official or ithq, not {args.shape}",
              file=sys.stderr)
        return 2
    if args.official:
        out, official = Path(args.out).resolve(), Path(args.official).resolve()
        if out == official or out in official.parents or official in out.parents:
            print(f"error: --out {args.out} and --official {args.official}: the two layouts need two separate "
                  "folders", file=sys.stderr)
            return 2
    for folder, option in ((args.out, "--out"), (args.official, "--official")):
        problem = folder and gendet_env.unwritable(folder, option)  # a file, or a folder that cannot be written
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
    for folder in filter(None, (args.out, args.official)):
        if Path(folder).exists() and any(Path(folder).iterdir()):
            print(f"error: {folder} is not empty; choose a new folder", file=sys.stderr)
            return 2
    try:
        pipe = build(args.shape, seed=args.seed)
    except ImportError as e:
        print(f"error: {e.name or e} is missing: pip install -e '.[interop]'", file=sys.stderr)
        return 2
    if args.official:
        pipe.tokenizer.pad_token = "!"  # the official tokenizer pads with id 0 ("!"); the same on both sides
    save(pipe, args.out)
    print(f"wrote a random diffusers VQ-Diffusion pipeline ({args.shape}) to {args.out}\n"
          f"  python -m generation.convert --from diffusers {args.out} --out runs/converted_diffusers")
    if args.official:
        from benchmarks import official_reference

        official_reference.save(pipe, args.official)
        print(f"wrote the same weights in the official layout to {args.official}\n"
              f"  python -m generation.convert --from official {args.official} --tokenizer {args.out}/tokenizer "
              "--out runs/converted_official")
    return 0


if __name__ == "__main__":
    sys.exit(main())
