"""Convert released VQ-Diffusion weights into a gendet TextToImage folder.

    python -m generation.convert --from diffusers ~/weights/vq-diffusion-ithq --out models/ithq
    python -m generation.convert --from official ~/src/VQ-Diffusion --out models/ithq
    python -m generation.sample "a teddy bear playing in the pool" --model models/ithq

``--from official SRC``: the official microsoft/VQ-Diffusion checkpoint and configs; see
generation.convert_official.

``--from diffusers SRC``: a local diffusers VQ-Diffusion folder (``model_index.json`` with
``vqvae/ text_encoder/ tokenizer/ transformer/ scheduler/
learned_classifier_free_sampling_embeddings/``), e.g. a download of
``microsoft/vq-diffusion-ithq``. Nothing is fetched: every part is read from SRC.

* transformer: ``Transformer2DModel`` weights mapped name by name onto our
  DenoisingTransformer (same block structure; GELU2 = diffusers' "geglu-approximate");
  every source tensor must be used and every target filled.
* text encoder: the CLIP tokenizer + text model, saved as our ``clip`` encoder with
  VQ-Diffusion's reading of it (no attention mask, unit-length embeddings, padding attended).
* null condition: the learned classifier-free embeddings, or, when the source has none,
  the encoded empty prompt (what diffusers computes at every call).
* image tokenizer: the ``VQModel`` kept as it is and wrapped (generation.diffusers_vq).
* schedule: the scheduler's cumulative alpha/gamma end points.

Weights are read from safetensors, or from ``.bin`` with ``torch.load(weights_only=True)``;
a file that needs arbitrary unpickling is refused.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import torch

from generation.sampling_options import check_settings
from generation.files import load_torch_file
from generation.transformer import DenoisingTransformer, TransformerConfig

ACTIVATIONS = {"geglu-approximate": "gelu2", "gelu": "gelu"}
# diffusers Transformer2DModel (vectorised input) -> ours; {i} is the block index
BLOCK_NAMES = {
    "norm1.emb": "ln1.emb", "norm1.linear": "ln1.linear",
    "attn1.to_q": "attn1.query", "attn1.to_k": "attn1.key", "attn1.to_v": "attn1.value",
    "attn1.to_out.0": "attn1.proj",
    "norm2.emb": "ln1_1.emb", "norm2.linear": "ln1_1.linear",
    "attn2.to_q": "attn2.query", "attn2.to_k": "attn2.key", "attn2.to_v": "attn2.value",
    "attn2.to_out.0": "attn2.proj",
    "norm3": "ln2", "ff.net.0.proj": "mlp.0", "ff.net.2": "mlp.2",
}
TOP_NAMES = {"latent_image_embedding.emb": "content_emb.emb",
             "latent_image_embedding.height_emb": "content_emb.height_emb",
             "latent_image_embedding.width_emb": "content_emb.width_emb",
             "norm_out": "to_logits.0", "out": "to_logits.1"}


class ConversionError(ValueError):
    pass


# --------------------------------------------------------------------------- reading


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise ConversionError(f"{path} is missing")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConversionError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None


def load_tensor_file(path: Path):
    """`generation.files.load_torch_file`, its failure a ConversionError."""
    try:
        return load_torch_file(path)
    except ValueError as e:
        raise ConversionError(str(e).replace("cut short?", "a download cut short?")) from None


def _without_variants(files: list[Path]) -> list[Path]:
    """diffusers may keep one model twice, e.g. diffusion_pytorch_model.bin and .fp16.bin: the
    base file only (merged, the later file's tensors replaced the other's)."""
    base = [f for f in files if len(f.name.split(".")) <= 2]
    return base or files[:1]


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """A diffusers component's weights: *.safetensors, else *.bin read with weights_only=True."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    st = _without_variants(sorted(folder.glob("*.safetensors")))
    if st:
        out = {}
        for f in st:
            try:
                out.update(load_file(str(f)))
            except SafetensorError as e:
                raise ConversionError(f"{f}: not a complete safetensors file ({e}); a download cut short?") from None
        return out
    bins = _without_variants(sorted(folder.glob("*.bin")))
    if not bins:
        raise ConversionError(f"{folder}: no *.safetensors or *.bin weights")
    out = {}
    for f in bins:
        out.update(load_tensor_file(f))
    return out


def check_out(src: Path, out: Path) -> None:
    """An --out a conversion may write: not a file, not the source (it replaced the source's
    transformer/config.json), not a folder holding the source, and empty unless it holds an
    earlier conversion (pipeline.json), which is replaced."""
    src_dir = (src if src.is_dir() else src.parent).resolve()
    if out.exists() and not out.is_dir():
        raise ConversionError(f"--out {out} is a file; give a folder")
    if out.resolve() == src_dir or src_dir.is_relative_to(out.resolve()):
        raise ConversionError(f"--out {out} is the source folder or holds it; give a folder outside {src_dir}")
    if out.is_dir() and any(out.iterdir()) and not (out / "pipeline.json").is_file():
        raise ConversionError(f"--out {out} holds other files; give an empty or new folder")


# --------------------------------------------------------------------------- transformer


def transformer_config_from_diffusers(cfg: dict, where: str = "transformer/config.json") -> TransformerConfig:
    def need(key, ok, what):
        value = cfg.get(key)
        if not ok(value):
            raise ConversionError(f"{where}: {key}={value!r} is not supported (need {what})")
        return value

    if cfg.get("num_vector_embeds") is None:
        raise ConversionError(f"{where}: no num_vector_embeds: not a discrete (VQ-Diffusion) transformer")
    if cfg.get("num_embeds_ada_norm") is None:
        raise ConversionError(f"{where}: no num_embeds_ada_norm: VQ-Diffusion conditions every block on t")
    need("norm_type", lambda v: v in (None, "layer_norm", "ada_norm"), "ada_norm")
    act = need("activation_fn", lambda v: v in ACTIVATIONS, " or ".join(ACTIVATIONS))
    need("only_cross_attention", lambda v: not v, "false")
    need("double_self_attention", lambda v: not v, "false")
    need("cross_attention_dim", lambda v: isinstance(v, int) and v > 0, "an int")
    need("sample_size", lambda v: isinstance(v, int) and v > 0, "an int")
    need("ff_inner_dim", lambda v: v is None, "null (4x width)")
    heads, head_dim = int(cfg.get("num_attention_heads", 16)), int(cfg.get("attention_head_dim", 88))
    side = int(cfg["sample_size"])
    return TransformerConfig(num_classes=int(cfg["num_vector_embeds"]) - 1, h=side, w=side,
                             width=heads * head_dim, depth=int(cfg.get("num_layers", 1)), heads=heads,
                             text_dim=int(cfg["cross_attention_dim"]), diffusion_steps=int(cfg["num_embeds_ada_norm"]),
                             activation=ACTIVATIONS[act])


def map_diffusers_transformer(sd: dict[str, torch.Tensor], model: DenoisingTransformer) -> dict[str, torch.Tensor]:
    """diffusers state dict -> a complete state dict for `model`. Absent biases (attention_bias
    false) become zeros, absent LayerNorm affines (norm_elementwise_affine false) the identity;
    a source tensor with no place, or a target left unfilled, is an error."""
    out: dict[str, torch.Tensor] = {}
    unused = []
    block = re.compile(r"transformer_blocks\.(\d+)\.(.+)\.(weight|bias)$")
    top = re.compile(r"(.+)\.(weight|bias)$")
    for key, value in sd.items():
        m = block.match(key)
        if m and m.group(2) in BLOCK_NAMES:
            out[f"blocks.{m.group(1)}.{BLOCK_NAMES[m.group(2)]}.{m.group(3)}"] = value
            continue
        m = top.match(key)
        if m and not key.startswith("transformer_blocks.") and m.group(1) in TOP_NAMES:
            out[f"{TOP_NAMES[m.group(1)]}.{m.group(2)}"] = value
            continue
        unused.append(key)
    if unused:
        raise ConversionError(f"transformer weights with no counterpart: {unused[:8]}"
                              f"{' ...' if len(unused) > 8 else ''}")
    target = model.state_dict()
    extra = sorted(k for k in out if k not in target)  # e.g. weights of more blocks than the config's num_layers
    if extra:
        raise ConversionError(f"transformer weights for {len(extra)} tensors the config's model does not have "
                              f"({', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}): does num_layers match "
                              "the weights?")
    for key, ref in target.items():
        if key in out:
            if tuple(out[key].shape) != tuple(ref.shape):
                raise ConversionError(f"transformer weight {key}: shape {tuple(out[key].shape)} does not match "
                                      f"the config's {tuple(ref.shape)}")
            out[key] = out[key].to(ref.dtype)
        elif key.endswith(".bias"):
            out[key] = torch.zeros_like(ref)
        elif key.endswith(".weight") and (".ln2." in key or key == "to_logits.0.weight"):
            out[key] = torch.ones_like(ref)
        else:
            raise ConversionError(f"transformer weight {key} has no source tensor")
    return out


# --------------------------------------------------------------------------- whole pipeline


def convert_diffusers(src: str | Path, out: str | Path, defaults: dict | None = None, info: dict | None = None):
    """A diffusers VQ-Diffusion folder -> a saved TextToImage at `out`; returns the pipeline. `info`,
    if given, is filled with what was used ("null": learned or empty prompt)."""
    from generation.diffusers_vq import DiffusersVQ, _vqmodel_class
    from generation.diffusion import MaskReplaceDiffusion
    from generation.pipeline import TextToImage
    from generation.text import ClipTextEncoder

    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise ConversionError(f"source folder {str(src)!r} does not exist")
    check_out(src, out)
    for part in ("vqvae", "text_encoder", "tokenizer", "transformer", "scheduler"):
        if not (src / part).is_dir():
            raise ConversionError(f"{src} is not a diffusers VQ-Diffusion folder: {part}/ is missing")
    if (src / "model_index.json").is_file():
        kind = read_json(src / "model_index.json").get("_class_name")
        if kind != "VQDiffusionPipeline":
            raise ConversionError(f"{src / 'model_index.json'}: a {kind} folder, not a VQDiffusionPipeline")

    tcfg = transformer_config_from_diffusers(read_json(src / "transformer" / "config.json"),
                                             str(src / "transformer" / "config.json"))
    transformer = DenoisingTransformer(tcfg)
    transformer.load_state_dict(map_diffusers_transformer(read_weights(src / "transformer"), transformer))

    sched_json = src / "scheduler" / "scheduler_config.json"
    scfg = read_json(sched_json)
    if int(scfg.get("num_vec_classes", -1)) != tcfg.num_classes + 1:
        raise ConversionError(f"{sched_json}: num_vec_classes={scfg.get('num_vec_classes')} but "
                              f"the transformer has {tcfg.num_classes + 1} (K codes + [MASK])")
    diffusion = MaskReplaceDiffusion(
        tcfg.num_classes, int(scfg.get("num_train_timesteps", 100)),
        alpha_start=scfg.get("alpha_cum_start", 0.99999), alpha_end=scfg.get("alpha_cum_end", 0.000009),
        gamma_start=scfg.get("gamma_cum_start", 0.000009), gamma_end=scfg.get("gamma_cum_end", 0.99999))

    from transformers import CLIPTextModel, CLIPTokenizer

    try:
        tok = CLIPTokenizer.from_pretrained(src / "tokenizer", local_files_only=True)
        text_model = CLIPTextModel.from_pretrained(src / "text_encoder", local_files_only=True)
    except Exception as e:  # noqa: BLE001 - OSError, ValueError, a safetensors or size error from transformers
        raise ConversionError(f"{src}: cannot read tokenizer/ + text_encoder/ as CLIP "
                              f"({str(e).strip().splitlines()[0][:200]})") from None
    check_tokenizer(tok, text_model.config.vocab_size, src / "tokenizer")
    text = ClipTextEncoder(tok, text_model.eval(), source=str(src), normalize=True, attend_to_padding=True)

    try:
        vq = DiffusersVQ(_vqmodel_class().from_pretrained(str(src / "vqvae"), local_files_only=True,
                                                        low_cpu_mem_usage=False).eval())  # no accelerate: no pip hint
    except Exception as e:  # noqa: BLE001 - a missing config, weights cut short, a pickled .bin refused
        raise ConversionError(f"{src / 'vqvae'}: cannot read the VQModel ({str(e).strip().splitlines()[0][:200]})") \
            from None
    if vq.codebook_size != tcfg.num_classes:  # as the official path checks: ids past the codebook fail to decode
        raise ConversionError(f"{src / 'vqvae'}: {vq.codebook_size} codes, but the transformer draws "
                              f"{tcfg.num_classes} (num_vector_embeds - 1)")
    image_size = tcfg.h * vq.factor

    try:
        pipe = TextToImage(vq, text, transformer, diffusion, image_size,
                           {"steps": 100, "guidance_scale": 5.0, "truncation": 1.0, **(defaults or {})})
    except ValueError as e:  # e.g. the scheduler's steps and the transformer's t embedding disagree
        raise ConversionError(f"{src}: {e}") from None
    null, kind = _null_embedding(src, text)
    if info is not None:
        info["null"] = kind
    if tuple(null.shape) != tuple(pipe.null_text.shape):
        raise ConversionError(f"classifier-free null embedding has shape {tuple(null.shape)}, "
                              f"expected {tuple(pipe.null_text.shape)} (text length x width)")
    pipe.null_text.data.copy_(null)
    pipe.eval()
    save_pipeline(pipe, out)
    return pipe


def save_pipeline(pipe, out: Path) -> None:
    """Into a new folder, or over an earlier conversion (check_out allowed no other). Written whole
    beside it first and then swapped in: a failure midway leaves the earlier conversion as it was
    (its vqvae/ was deleted before the new one was saved), and no stale file of it stays."""
    staged, old = out.with_name(f".{out.name}.converting"), out.with_name(f".{out.name}.replaced")
    for leftover in (staged, old):  # from a conversion that was killed
        if leftover.exists():
            shutil.rmtree(leftover)
    staged.parent.mkdir(parents=True, exist_ok=True)
    try:
        pipe.save_pretrained(staged)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    if out.exists():
        out.rename(old)
    staged.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def check_tokenizer(tok, vocab_size: int, where: Path) -> None:
    """A tokenizer folder missing its files loads as an empty tokenizer (two symbols) that reads
    every prompt the same: the model would then ignore every prompt. And its ids must fit the
    text model's embedding table."""
    probes = [tok("a photo of a cat")["input_ids"], tok("two dogs on the grass")["input_ids"]]
    if probes[0] == probes[1] or len(tok) < 10:
        raise ConversionError(f"{where}: the tokenizer holds {len(tok)} symbols and reads different prompts the "
                              "same: are its vocab.json and merges.txt (or tokenizer.json) missing?")
    if len(tok) > vocab_size:
        raise ConversionError(f"{where}: {len(tok)} symbols, but the text model embeds {vocab_size}")


def _null_embedding(src: Path, text) -> tuple[torch.Tensor, str]:
    """The learned null text. A diffusers VQ-Diffusion folder always has the component (the
    pipeline will not load without it); learnable: false means the encoded empty prompt."""
    folder = src / "learned_classifier_free_sampling_embeddings"
    if not folder.is_dir():
        raise ConversionError(f"{src} is not a diffusers VQ-Diffusion folder: {folder.name}/ is missing")
    cfg = read_json(folder / "config.json")
    if cfg.get("learnable"):
        sd = read_weights(folder)
        if "embeddings" not in sd:
            raise ConversionError(f"{folder}: learnable=true but no 'embeddings' tensor")
        return sd["embeddings"].float(), "learned"
    with torch.no_grad():
        emb, _ = text.encode([""], allow_empty=True)
    return emb[0].float(), "empty prompt"


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    import gendet_env  # noqa: F401 - offline variables before transformers / diffusers import

    ap = argparse.ArgumentParser(prog="python -m generation.convert",
                                 description="Convert released VQ-Diffusion weights (a local folder) into a gendet "
                                             "text-to-image folder.")
    ap.add_argument("--from", dest="source_format", choices=["diffusers", "official"], required=True,
                    help="source layout: diffusers (e.g. a local copy of microsoft/vq-diffusion-ithq) or official "
                         "(a microsoft/VQ-Diffusion checkout with its released files, or its checkpoint .pth)")
    ap.add_argument("src", help="source folder (or, with --from official, the checkpoint .pth)")
    ap.add_argument("--out", required=True, help="output folder (a TextToImage, loadable with --model)")
    ap.add_argument("--steps", type=int, default=None, help="default sampling steps stored with the model (100)")
    ap.add_argument("--guidance", type=float, default=None, help="default guidance scale (5.0, as diffusers)")
    ap.add_argument("--truncation", type=float, default=None, help="default truncation r (1.0: off, as diffusers)")
    off = ap.add_argument_group("--from official (defaults: the released files' places under a repository checkout)")
    off.add_argument("--config", help="the model config (configs/ithq.yaml)")
    off.add_argument("--vqvae", help="a VQGAN checkpoint to use instead of the checkpoint's own content_codec.* "
                                     "(by default those, else OUTPUT/pretrained_model/taming_dvae/ithq_vqvae.pth)")
    off.add_argument("--vqvae-config", help="the VQGAN config (OUTPUT/pretrained_model/taming_dvae/config.yaml)")
    off.add_argument("--bpe", help="OpenAI's bpe_simple_vocab_16e6.txt.gz (in image_synthesis/modeling/modules/clip/)")
    off.add_argument("--tokenizer", help="a local CLIPTokenizer folder instead of --bpe")
    off.add_argument("--no-ema", action="store_true", help="use the raw weights, not the EMA ones the official "
                                                          "inference loads")
    off.add_argument("--null", choices=["auto", "learned", "empty"], default="auto",
                     help="classifier-free null condition: the learned embedding when the checkpoint has one "
                          "(auto), or the encoded empty prompt")
    args = ap.parse_args(argv)
    try:
        check_settings(args.steps, args.truncation, args.guidance)
    except ValueError as e:
        ap.error(f"--{e}")
    defaults = {k: v for k, v in (("steps", args.steps), ("guidance_scale", args.guidance),
                                  ("truncation", args.truncation)) if v is not None}
    official_flags = [f"--{k.replace('_', '-')}" for k in ("config", "vqvae", "vqvae_config", "bpe", "tokenizer")
                      if getattr(args, k) is not None] + (["--no-ema"] if args.no_ema else []) + \
        ([f"--null {args.null}"] if args.null != "auto" else [])  # diffusers folders: always their own null
    try:
        if args.source_format == "official":
            from generation.convert_official import convert_official

            pipe, report = convert_official(args.src, args.out, config=args.config, vqvae=args.vqvae,
                                            vqvae_config=args.vqvae_config, bpe=args.bpe, tokenizer=args.tokenizer,
                                            use_ema=not args.no_ema, null=args.null, defaults=defaults)
            print(f"weights: {'EMA' if report.ema else 'raw (no EMA in the checkpoint)' if not args.no_ema else 'raw'}"
                  f"; null condition: {report.null}; VQGAN from {report.vqvae}")
            if report.ignored:
                shown = ", ".join(report.ignored[:6])
                print(f"not used ({len(report.ignored)} tensors with no place in gendet): {shown}"
                      f"{' ...' if len(report.ignored) > 6 else ''}")
        else:
            if official_flags:
                raise ConversionError(f"{', '.join(official_flags)} only apply to --from official")
            info: dict = {}
            pipe = convert_diffusers(args.src, args.out, defaults, info)
            print(f"null condition: {info['null']}")
    except (ConversionError, FileNotFoundError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n = sum(p.numel() for p in pipe.transformer.parameters())
    cfg = pipe.transformer.config
    print(f"wrote {args.out}: transformer {n / 1e6:.1f} M parameters ({cfg.depth} blocks x {cfg.width}), "
          f"{cfg.num_classes} codes on a {cfg.h}x{cfg.w} grid, {pipe.image_size}x{pipe.image_size} images")
    return 0


if __name__ == "__main__":
    # run the importable module's main: under `python -m` this file is __main__, and its
    # ConversionError would be another class than the one generation.convert_official raises
    from generation.convert import main as module_main

    raise SystemExit(module_main())
