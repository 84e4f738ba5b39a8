"""A diffusers ``VQModel`` (the image tokenizer of released VQ-Diffusion weights) behind
the interface of our VQVAE: ``encode(images in [0, 1]) -> ids [B, h*w]``,
``decode(ids) -> images in [0, 1]``, ``codebook_size``, ``save_pretrained`` /
``from_pretrained``.

Its architecture (taming-transformers' VQGAN: attention in the middle block, GroupNorm,
a 1x1 quant conv) differs from ours, so the weights are not mapped onto our VQVAE but
wrapped. Decoding follows diffusers' VQDiffusionPipeline exactly:
``quantize.get_codebook_entry`` then ``decode(..., force_not_quantize=True)``. Needs the
``interop`` extra (diffusers).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from generation.vqvae import check_token_ids


def is_diffusers_vq(path: str | Path) -> bool:
    """True for a folder written by ``VQModel.save_pretrained``."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("_class_name") == "VQModel"
    except json.JSONDecodeError:
        return False


def _vqmodel_class():
    try:
        from diffusers import VQModel
    except ImportError:
        raise ImportError("this image tokenizer is a diffusers VQModel: install the interop extra "
                          "(pip install -e '.[interop]')") from None
    return VQModel


class DiffusersVQ(nn.Module):
    def __init__(self, vqmodel):
        super().__init__()
        if getattr(vqmodel.quantize, "remap", None) is not None:
            raise ValueError("VQModel with a remapped codebook (remap=...) is not supported")
        self.vq = vqmodel
        cfg = vqmodel.config
        self.factor = 2 ** (len(cfg.block_out_channels) - 1)
        self.embed_dim = cfg.vq_embed_dim or cfg.latent_channels

    @property
    def codebook_size(self) -> int:
        return self.vq.config.num_vq_embeddings

    def token_grid(self, image_size: int | tuple[int, int]) -> tuple[int, int]:
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        if h % self.factor or w % self.factor:
            raise ValueError(f"image size {h}x{w} is not divisible by the downsampling factor {self.factor}")
        return h // self.factor, w // self.factor

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] in [0, 1] -> ids [B, h*w], row-major."""
        if images.dim() != 4 or images.shape[1] != self.vq.config.in_channels:
            raise ValueError(f"encode expects [B, {self.vq.config.in_channels}, H, W] in [0, 1], "
                             f"got {tuple(images.shape)}")
        h, w = self.token_grid(tuple(images.shape[2:]))
        weight = self.vq.quantize.embedding.weight
        z = self.vq.encode(images.to(weight) * 2 - 1).latents
        # nearest code by squared distance, as VectorQuantizer does (without its loss terms)
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        ids = torch.cdist(flat.float(), weight.float()).argmin(dim=1)
        return ids.view(images.shape[0], h * w)

    @torch.no_grad()
    def decode(self, ids: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        B, _ = ids.shape
        grid = check_token_ids(ids, self.codebook_size, grid)
        emb = self.vq.quantize.get_codebook_entry(ids, shape=(B, *grid, self.embed_dim))
        images = self.vq.decode(emb, force_not_quantize=True).sample
        return (images / 2 + 0.5).clamp(0, 1)

    def save_pretrained(self, path: str | Path) -> Path:
        self.vq.save_pretrained(str(path), safe_serialization=True)
        return Path(path)

    @classmethod
    def from_pretrained(cls, path: str | Path, device=None) -> "DiffusersVQ":
        path = Path(path)
        if not is_diffusers_vq(path):
            raise ValueError(f"{path} is not a diffusers VQModel folder (config.json without _class_name VQModel)")
        vq = _vqmodel_class().from_pretrained(str(path), local_files_only=True, use_safetensors=None,
                                               low_cpu_mem_usage=False)  # without accelerate: no pip hint
        return cls(vq.eval()).to(device or "cpu").eval()


def load_image_tokenizer(path: str | Path, device=None):
    """Our VQVAE folder, or a diffusers VQModel folder (released VQ-Diffusion weights)."""
    if is_diffusers_vq(path):
        return DiffusersVQ.from_pretrained(path, device)
    from generation.vqvae import VQVAE

    return VQVAE.from_pretrained(path, device=device)
