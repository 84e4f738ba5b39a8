"""The image tokenizer of the official VQ-Diffusion release (a taming-transformers VQGAN,
``patch_vqgan.PatchVQGAN``) as a diffusers ``VQModel``.

The architectures are the same (diffusers ported this one for microsoft/vq-diffusion-ithq);
only names differ: ``encoder.down.{i}.block.{j}`` is ``encoder.down_blocks.{i}.resnets.{j}``,
the decoder's ``up.{i}`` run deepest-first in diffusers, attention uses 1x1 convolutions
where diffusers has linear layers, and the codebook is a bare tensor. The mapping runs over
the target's keys, so every weight of the VQModel must find its source.
"""

from __future__ import annotations

import re

import torch

SUPPORTED = ("patch_vqgan.PatchVQGAN",)
RESNET = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "conv_shortcut": "nin_shortcut"}
ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


class VQGANError(ValueError):
    pass


def _pair(value, what: str) -> list[int]:
    if isinstance(value, int):
        return [value, value]
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return list(value)
    raise VQGANError(f"{what}={value!r}: expected an int or [height, width]")


def vqmodel_kwargs(config: dict, where: str = "VQGAN config") -> dict:
    """VQModel(**kwargs) for an official VQGAN config (the ``model:`` mapping of its yaml)."""
    target = str(config.get("target", ""))
    if not target.endswith(SUPPORTED):
        raise VQGANError(f"{where}: model.target={target!r} is not supported (need one of {', '.join(SUPPORTED)})")
    params = config.get("params") or {}
    try:
        enc, dec = params["encoder_config"]["params"], params["decoder_config"]["params"]
        n_embed, embed_dim = int(params["n_embed"]), int(params["embed_dim"])
    except (KeyError, TypeError) as e:
        raise VQGANError(f"{where}: model.params is missing {e}") from None
    for key in ("ch", "ch_mult", "num_res_blocks", "z_channels"):
        if enc.get(key) != dec.get(key):
            raise VQGANError(f"{where}: encoder {key}={enc.get(key)!r} differs from decoder {key}={dec.get(key)!r}")
    if enc.get("activate_output"):
        raise VQGANError(f"{where}: encoder activate_output=true is not supported")
    mult = list(enc["ch_mult"])
    resolution = _pair(enc.get("resolution"), f"{where}: encoder resolution")
    attn = [_pair(r, f"{where}: attn_resolutions") for r in enc.get("attn_resolutions") or []]
    n = len(mult)
    down = ["AttnDownEncoderBlock2D" if [r // 2 ** i for r in resolution] in attn else "DownEncoderBlock2D"
            for i in range(n)]
    up = ["AttnUpDecoderBlock2D" if [r // 2 ** (n - 1 - i) for r in resolution] in attn else "UpDecoderBlock2D"
          for i in range(n)]
    return dict(in_channels=int(enc.get("in_channels", 3)), out_channels=int(dec.get("out_ch", 3)),
                down_block_types=tuple(down), up_block_types=tuple(up),
                block_out_channels=tuple(int(enc["ch"]) * m for m in mult), layers_per_block=int(enc["num_res_blocks"]),
                latent_channels=int(enc["z_channels"]), num_vq_embeddings=n_embed, vq_embed_dim=embed_dim,
                norm_num_groups=32,  # hard-coded in the official GroupNorm
                sample_size=resolution[0])


def source_key(key: str, levels: int) -> str:
    """The official name of one diffusers VQModel weight."""
    m = re.fullmatch(r"(encoder|decoder)\.(down|up)_blocks\.(\d+)\.(resnets|attentions|downsamplers|upsamplers)"
                     r"\.(\d+)\.(.+)\.(weight|bias)", key)
    if m:
        part, way, block, kind, index, name, leaf = m.groups()
        block = int(block) if way == "down" else levels - 1 - int(block)  # the decoder is stored top-down
        prefix = f"{part}.{way}.{block}"
        if kind == "resnets" and name in RESNET:
            return f"{prefix}.block.{index}.{RESNET[name]}.{leaf}"
        if kind == "attentions" and name in ATTENTION:
            return f"{prefix}.attn.{index}.{ATTENTION[name]}.{leaf}"
        if kind in ("downsamplers", "upsamplers") and name == "conv":
            return f"{prefix}.{kind[:-8]}sample.conv.{leaf}"
    m = re.fullmatch(r"(encoder|decoder)\.mid_block\.(resnets|attentions)\.(\d+)\.(.+)\.(weight|bias)", key)
    if m:
        part, kind, index, name, leaf = m.groups()
        if kind == "resnets" and name in RESNET:
            return f"{part}.mid.block_{int(index) + 1}.{RESNET[name]}.{leaf}"
        if kind == "attentions" and name in ATTENTION and index == "0":
            return f"{part}.mid.attn_1.{ATTENTION[name]}.{leaf}"
    m = re.fullmatch(r"(encoder|decoder)\.conv_norm_out\.(weight|bias)", key)
    if m:
        return f"{m.group(1)}.norm_out.{m.group(2)}"
    if key == "quantize.embedding.weight":
        return "quantize.embedding"
    return key  # conv_in, conv_out, quant_conv, post_quant_conv keep their names


def map_weights(sd: dict[str, torch.Tensor], target: dict[str, torch.Tensor], where: str):
    """Official VQGAN state dict -> (state dict for the VQModel, names of unused source tensors)."""
    levels = 1 + max(int(k.split(".")[2]) for k in target if k.startswith("encoder.down_blocks."))
    out, used = {}, set()
    for key, ref in target.items():
        src = source_key(key, levels)
        candidates = [src, src + ".weight"] if src == "quantize.embedding" else [src]
        found = next((c for c in candidates if c in sd), None)
        if found is None:
            raise VQGANError(f"{where}: no tensor {src!r} for the VQModel weight {key}")
        value = sd[found]
        if value.dim() == 4 and ref.dim() == 2:
            value = value[:, :, 0, 0]  # 1x1 convolution -> linear
        if tuple(value.shape) != tuple(ref.shape):
            raise VQGANError(f"{where}: {found} has shape {tuple(value.shape)}, the config implies {tuple(ref.shape)}")
        out[key] = value.to(ref.dtype)
        used.add(found)
    return out, sorted(set(sd) - used)


def build_vqmodel(config: dict, sd: dict[str, torch.Tensor], where: str):
    """(diffusers VQModel with the official weights, unused source names)."""
    from generation.diffusers_vq import _vqmodel_class

    try:
        model = _vqmodel_class()(**vqmodel_kwargs(config, where))
    except ValueError as e:  # e.g. taming's GroupNorm(32) over a width that 32 does not divide
        raise VQGANError(f"{where}: the config gives no buildable VQGAN ({e})") from None
    weights, unused = map_weights(sd, model.state_dict(), where)
    model.load_state_dict(weights)
    return model.eval(), unused
