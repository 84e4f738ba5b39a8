"""``--from official``: a checkpoint of the official microsoft/VQ-Diffusion code (e.g.
``ithq_learnable.pth``) with its yaml configs -> a gendet TextToImage folder.

SRC is either a checkout of the official repository with the released files where its
download script puts them (the paths in DEFAULTS), or the checkpoint ``.pth`` itself with
the other files given explicitly. What is read:

* the checkpoint (``torch.load(weights_only=True)``; a file that needs arbitrary unpickling is
  refused): ``model`` with ``ema`` laid over its ``transformer.*`` (the official inference
  reads the EMA weights; ``use_ema=False`` keeps the raw ones);
* ``transformer.transformer.*`` -> our DenoisingTransformer, name by name (ours keeps the
  official names), strict; the unused causal-mask buffers of the cross-attention are skipped;
* ``transformer.condition_emb.*`` (OpenAI CLIP's text tower) -> transformers' CLIPTextModel,
  read as VQ-Diffusion reads it (every position, unit length, padding attended);
* the tokenizer: OpenAI's ``bpe_simple_vocab_16e6.txt.gz`` or a local CLIPTokenizer folder;
* ``transformer.empty_text_embed`` -> the learned null condition (else the encoded "");
* the image tokenizer: the taming VQGAN (the checkpoint's ``content_codec.*``, which the official
  code loads over its separate ``.pth``; else that file) with its config.yaml -> a diffusers
  VQModel, wrapped (generation.diffusers_vq).

Config files are read with yaml.safe_load plus one constructor for ``!!python/tuple``
(the official configs use it for sizes); nothing else is constructed from them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from generation.convert import ConversionError, check_out, load_tensor_file, save_pipeline
from generation.transformer import DenoisingTransformer, TransformerConfig

DEFAULTS = {  # relative to a checkout of microsoft/VQ-Diffusion after vqdiffusion_download_checkpoints.sh
    "checkpoint": "OUTPUT/pretrained_model/ithq_learnable.pth",
    "config": "configs/ithq.yaml",
    "vqvae": "OUTPUT/pretrained_model/taming_dvae/ithq_vqvae.pth",
    "vqvae_config": "OUTPUT/pretrained_model/taming_dvae/config.yaml",
    "bpe": "image_synthesis/modeling/modules/clip/bpe_simple_vocab_16e6.txt.gz",
}
ACTIVATIONS = {"GELU": "gelu", "GELU2": "gelu2"}
TIMESTEPS = {"adalayernorm": "embedding", "adalayernorm_abs": "sinusoidal"}
CODEC_PREFIXES = {"content_codec.enc.encoder.": "encoder.", "content_codec.enc.quant_conv.": "quant_conv.",
                  "content_codec.enc.quantize.": "quantize.", "content_codec.dec.decoder.": "decoder.",
                  "content_codec.dec.post_quant_conv.": "post_quant_conv."}


@dataclass
class OfficialSources:
    checkpoint: Path
    config: Path
    vqvae_config: Path
    vqvae: Path | None = None
    bpe: Path | None = None
    tokenizer: Path | None = None
    vqvae_given: bool = False  # named by the user, not found under SRC

    @classmethod
    def resolve(cls, src, **given) -> "OfficialSources":
        """Explicit paths win; the rest come from DEFAULTS under SRC when SRC is a folder."""
        src = Path(src)
        if not src.exists():
            raise ConversionError(f"source {str(src)!r} does not exist")
        root = src if src.is_dir() else None
        paths = {"checkpoint": None if root else src}
        for name in ("checkpoint", "config", "vqvae", "vqvae_config", "bpe", "tokenizer"):
            if given.get(name) is not None:
                paths[name] = Path(given[name])
            elif paths.get(name) is None and root is not None and name in DEFAULTS and (root / DEFAULTS[name]).exists():
                paths[name] = root / DEFAULTS[name]
        for name, flag in (("checkpoint", "SRC"), ("config", "--config"), ("vqvae_config", "--vqvae-config")):
            if paths.get(name) is None:
                hint = f" (looked for {root / DEFAULTS[name]})" if root else ""
                raise ConversionError(f"no {name.replace('_', ' ')}: pass {flag}{hint}")
        if paths.get("bpe") is None and paths.get("tokenizer") is None:
            raise ConversionError("no tokenizer: pass --bpe bpe_simple_vocab_16e6.txt.gz (in the official repository) "
                                  "or --tokenizer DIR (a local CLIPTokenizer folder)")
        for name, path in paths.items():
            if path is not None and not path.exists():
                raise ConversionError(f"{name.replace('_', ' ')} {str(path)!r} does not exist")
        return cls(**{k: v for k, v in paths.items() if v is not None}, vqvae_given=given.get("vqvae") is not None)


@dataclass
class Report:
    ignored: list[str] = field(default_factory=list)  # source tensors that have no place in gendet
    null: str = ""  # "learned" or "empty prompt"
    ema: bool = False
    vqvae: str = ""  # where the image tokenizer's weights came from


# --------------------------------------------------------------------------- reading


class _ConfigLoader(yaml.SafeLoader):
    """safe_load + tuples (the official configs tag sizes with !!python/tuple)."""


_ConfigLoader.add_constructor("tag:yaml.org,2002:python/tuple",
                              lambda loader, node: tuple(loader.construct_sequence(node)))


def read_config(path: Path) -> dict:
    try:
        data = yaml.load(path.read_text(), Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ConversionError(f"{path}: not a readable config ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ConversionError(f"{path}: no 'model:' section (not an official VQ-Diffusion config)")
    return data["model"]


def read_checkpoint(path: Path) -> dict:
    ckpt = load_tensor_file(path)
    if not isinstance(ckpt, dict):
        raise ConversionError(f"{path}: expected a dict of tensors, got {type(ckpt).__name__}")
    return ckpt


def model_weights(ckpt: dict, path: Path, use_ema: bool) -> tuple[dict[str, torch.Tensor], bool]:
    """The checkpoint's `model` state dict, with `ema` (the diffusion transformer's) laid over it."""
    sd = ckpt.get("model", ckpt)
    if not isinstance(sd, dict) or not any(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ConversionError(f"{path}: no 'model' state dict")
    sd = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    ema = ckpt.get("ema") if use_ema else None
    if isinstance(ema, dict):
        sd.update({f"transformer.{k}": v for k, v in ema.items() if isinstance(v, torch.Tensor)})
    return sd, isinstance(ema, dict)


def params(cfg: dict, *keys: str, where: str) -> dict:
    node = cfg
    for k in keys:
        node = node.get(k) if isinstance(node, dict) else None
        if node is None:
            raise ConversionError(f"{where}: no {'.'.join(keys)}")
    return node


def need_target(node: dict, suffix: str, where: str, name: str):
    target = str(node.get("target", ""))
    if not target.endswith(suffix):
        raise ConversionError(f"{where}: {name}.target={target!r} is not supported (need ...{suffix})")


# --------------------------------------------------------------------------- transformer


def transformer_config(model_cfg: dict, where: str) -> tuple[TransformerConfig, dict]:
    """Our TransformerConfig from the official config; also the diffusion params."""
    diffusion = params(model_cfg, "params", "diffusion_config", where=where)
    need_target(diffusion, "DiffusionTransformer", where, "diffusion_config")
    dp = diffusion.get("params") or {}
    tnode = params(dp, "transformer_config", where=where)
    need_target(tnode, "Text2ImageTransformer", where, "transformer_config")
    tp = tnode.get("params") or {}
    enode = params(dp, "content_emb_config", where=where)
    need_target(enode, "DalleMaskImageEmbedding", where, "content_emb_config")
    ep = enode.get("params") or {}

    def check(d, key, ok, what, default=None):
        value = d.get(key, default)
        if not ok(value):
            raise ConversionError(f"{where}: {key}={value!r} is not supported (need {what})")
        return value

    check(tp, "attn_type", lambda v: v == "selfcross", "selfcross", "selfcross")
    check(tp, "mlp_type", lambda v: v == "fc", "fc", "fc")
    check(ep, "pos_emb_type", lambda v: v == "embedding", "embedding", "embedding")
    check(dp, "alpha_init_type", lambda v: v == "alpha1", "alpha1", "cos")
    act = check(tp, "block_activate", lambda v: v in ACTIVATIONS, " or ".join(ACTIVATIONS))
    timestep = check(tp, "timestep_type", lambda v: v in TIMESTEPS, " or ".join(TIMESTEPS), "adalayernorm")
    h, w = check(tp, "content_spatial_size", lambda v: isinstance(v, (list, tuple)) and len(v) == 2, "[h, w]")
    try:
        cfg = TransformerConfig(num_classes=int(ep["num_embed"]), h=int(h), w=int(w), width=int(tp["n_embd"]),
                                depth=int(tp["n_layer"]), heads=int(tp["n_head"]), text_dim=int(tp["condition_dim"]),
                                mlp_ratio=int(tp.get("mlp_hidden_times", 4)),
                                diffusion_steps=int(dp.get("diffusion_step", 100)),
                                timestep_emb=TIMESTEPS[timestep], activation=ACTIVATIONS[act])
    except KeyError as e:
        raise ConversionError(f"{where}: transformer_config/content_emb_config has no {e}") from None
    return cfg, dp


def map_transformer(sd: dict[str, torch.Tensor], model: DenoisingTransformer, where: str):
    """Official `transformer.transformer.*` -> our state dict (same names); strict both ways."""
    prefix = "transformer.transformer."
    ours = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if not ours:
        raise ConversionError(f"{where}: no {prefix}* weights (not a VQ-Diffusion text-to-image checkpoint)")
    target = model.state_dict()
    skipped = [k for k in ours if re.fullmatch(r"blocks\.\d+\.attn[12]\.mask", k)]  # unused causal-mask buffers
    extra = sorted(set(ours) - set(target) - set(skipped))
    if extra:
        raise ConversionError(f"{where}: transformer weights with no counterpart: {[prefix + k for k in extra[:8]]}")
    out = {}
    for key, ref in target.items():
        if key not in ours:
            raise ConversionError(f"{where}: {prefix}{key} is missing")
        if tuple(ours[key].shape) != tuple(ref.shape):
            raise ConversionError(f"{where}: {prefix}{key} has shape {tuple(ours[key].shape)}, the config implies "
                                  f"{tuple(ref.shape)}")
        out[key] = ours[key].to(ref.dtype)
    return out, {prefix + k for k in ours}


# --------------------------------------------------------------------------- text


def text_encoder(sd, model_cfg: dict, sources: OfficialSources, where: str):
    from generation.official_clip import ClipError, text_model_from_openai, tokenizer_from_bpe
    from generation.text import ClipTextEncoder

    dp = params(model_cfg, "params", "diffusion_config", "params", where=where)
    cnode = params(dp, "condition_emb_config", where=where)
    need_target(cnode, "CLIPTextEmbedding", where, "condition_emb_config")
    cp = cnode.get("params") or {}
    if cp.get("pick_last_embedding", True) or cp.get("additional_last_embedding", False):
        raise ConversionError(f"{where}: condition_emb_config pick_last_embedding / additional_last_embedding must "
                              f"be false (VQ-Diffusion text-to-image reads every token)")
    if int(cp.get("embed_dim", 1024)) == 1024:
        raise ConversionError(f"{where}: condition_emb_config embed_dim=1024 (CLIP features repeated twice) is not "
                              f"supported")
    codec = params(model_cfg, "params", "condition_codec_config", where=where).get("params") or {}
    length = int(codec.get("context_length", 77))
    if not codec.get("add_start_and_end", False):
        raise ConversionError(f"{where}: condition_codec_config add_start_and_end must be true (CLIP)")
    pad_id = max(int(codec.get("pad_value", 0)), 0)  # the official text embedding maps negative padding to 0
    end_idx = int(((codec.get("tokenizer_config") or {}).get("params") or {}).get("end_idx", 49152))
    try:
        if sources.tokenizer is not None:
            from transformers import CLIPTokenizer

            tok = CLIPTokenizer.from_pretrained(sources.tokenizer, local_files_only=True, model_max_length=length)
        else:
            tok = tokenizer_from_bpe(sources.bpe, max_length=length, end_idx=end_idx)
        # pad as the official Tokenize does: with id pad_value ("!" in CLIP's vocabulary, where
        # transformers' CLIP folders pad with <|endoftext|>)
        tok.pad_token = tok.convert_ids_to_tokens(pad_id)
        prefix = "transformer.condition_emb."
        clip = text_model_from_openai({k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}, tok,
                                      f"{sources.checkpoint} ({prefix}*)")
    except (ClipError, OSError) as e:
        raise ConversionError(str(e)) from None
    used = {k for k in sd if k.startswith("transformer.condition_emb.")}
    return ClipTextEncoder(tok, clip, source=str(sources.checkpoint), normalize=bool(cp.get("normalize", True)),
                           attend_to_padding=True), used


# --------------------------------------------------------------------------- image tokenizer


def image_tokenizer(sd, model_cfg: dict, sources: OfficialSources):
    from generation.diffusers_vq import DiffusersVQ
    from generation.official_vqgan import VQGANError, build_vqmodel

    codec = params(model_cfg, "params", "content_codec_config", where=str(sources.config))
    target = str(codec.get("target", ""))
    if not target.endswith(("ema_vqvae.PatchVQVAE", "patch_vqgan.PatchVQGAN")):
        raise ConversionError(f"{sources.config}: content_codec_config.target={target!r} is not supported "
                              f"(the ITHQ-style PatchVQVAE / PatchVQGAN)")
    # the official PatchVQVAE loads its own .pth, then the checkpoint's content_codec.* over it:
    # those win unless the user names a VQGAN file
    codec_sd = {}
    for key, value in sd.items():
        for old, new in CODEC_PREFIXES.items():
            if key.startswith(old):
                codec_sd[new + key[len(old):]] = value
    used = {k for k in sd if k.startswith("content_codec.")}
    if codec_sd and not sources.vqvae_given:
        vq_sd, origin = codec_sd, f"{sources.checkpoint} (content_codec.*)"
    elif sources.vqvae is not None:
        ckpt = read_checkpoint(sources.vqvae)
        vq_sd, origin = ckpt.get("model", ckpt), str(sources.vqvae)
    else:
        raise ConversionError(f"{sources.checkpoint} has no content_codec.* weights: pass --vqvae ithq_vqvae.pth")
    try:
        vqmodel, unused = build_vqmodel(read_config(sources.vqvae_config), vq_sd, origin)
    except VQGANError as e:
        raise ConversionError(str(e)) from None
    return DiffusersVQ(vqmodel), used, [f"{origin}: {k}" for k in unused], origin


# --------------------------------------------------------------------------- whole pipeline


def convert_official(src, out, *, config=None, vqvae=None, vqvae_config=None, bpe=None, tokenizer=None,
                     use_ema: bool = True, null: str = "auto", defaults: dict | None = None):
    """Official checkpoint + configs -> a saved TextToImage at `out`; returns (pipeline, Report)."""
    from generation.diffusion import MaskReplaceDiffusion
    from generation.pipeline import TextToImage

    if null not in ("auto", "learned", "empty"):
        raise ConversionError(f"null must be auto, learned or empty, got {null!r}")
    sources = OfficialSources.resolve(src, config=config, vqvae=vqvae, vqvae_config=vqvae_config, bpe=bpe,
                                      tokenizer=tokenizer)
    check_out(Path(src), Path(out))
    model_cfg = read_config(sources.config)
    need_target(model_cfg, "DALLE", str(sources.config), "model")
    sd, used_ema = model_weights(read_checkpoint(sources.checkpoint), sources.checkpoint, use_ema)
    report = Report(ema=used_ema)

    tcfg, dp = transformer_config(model_cfg, str(sources.config))
    transformer = DenoisingTransformer(tcfg)
    weights, used = map_transformer(sd, transformer, str(sources.checkpoint))
    transformer.load_state_dict(weights)

    text, used_text = text_encoder(sd, model_cfg, sources, str(sources.config))
    vq, used_vq, ignored_vq, report.vqvae = image_tokenizer(sd, model_cfg, sources)
    if vq.codebook_size != tcfg.num_classes:
        raise ConversionError(f"the VQGAN has {vq.codebook_size} codes, the transformer predicts {tcfg.num_classes}")

    diffusion = MaskReplaceDiffusion(tcfg.num_classes, tcfg.diffusion_steps)  # alpha1: the default schedule
    pipe = TextToImage(vq, text, transformer, diffusion, tcfg.h * vq.factor,
                       {"steps": tcfg.diffusion_steps, "guidance_scale": 5.0, "truncation": 1.0, **(defaults or {})})

    learned = sd.get("transformer.empty_text_embed")
    if null == "learned" or (null == "auto" and dp.get("learnable_cf", learned is not None)):
        if learned is None:
            raise ConversionError(f"{sources.checkpoint}: no transformer.empty_text_embed (learned null condition); "
                                  f"use null='empty'")
        report.null = "learned"
        null_text = learned.float()
    else:
        report.null = "empty prompt"
        with torch.no_grad():
            null_text = text.encode([""], allow_empty=True)[0][0].float()
    if tuple(null_text.shape) != tuple(pipe.null_text.shape):
        raise ConversionError(f"null condition has shape {tuple(null_text.shape)}, expected "
                              f"{tuple(pipe.null_text.shape)} (text length x width)")
    pipe.null_text.data.copy_(null_text)
    used |= used_text | used_vq | {"transformer.empty_text_embed"}
    report.ignored = sorted(k for k in sd if k not in used) + ignored_vq

    pipe.eval()
    save_pipeline(pipe, Path(out))
    return pipe, report
