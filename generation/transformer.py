"""The VQ-Diffusion denoising transformer, in one readable file (nanoGPT style).

Given noisy image tokens ``x_t`` (values in ``[0, K]``, ``K`` being [MASK]), the
timestep ``t`` and a text condition, it predicts logits over the ``K`` clean
codes for every position: ``forward(x_t, t, text) -> [B, K, N]`` (channel dim 1,
as the diffusion module's ``denoise_fn(x_t, t)`` expects).

Layout follows the official VQ-Diffusion ``Text2ImageTransformer``
(microsoft/VQ-Diffusion, ``transformer_utils.py``) so its checkpoints map on by
name (see :func:`map_official_state_dict`)::

    content_emb   DalleMaskImageEmbedding: emb (K+1 rows, [MASK] = K) + height_emb (h rows)
                  + width_emb (w rows); position = height_emb[row] + width_emb[col]
    blocks[i]     x = x + attn1(ln1(x, t))            self-attention,  AdaLayerNorm
                  x = x + attn2(ln1_1(x, t), text)    cross-attention, AdaLayerNorm
                  x = x + mlp(ln2(x))                 LayerNorm, Linear(4w) GELU Linear
    to_logits     LayerNorm + Linear(width, K)         no logit for [MASK]

AdaLayerNorm: ``LayerNorm(x, no affine) * (1 + scale) + shift`` with
``scale, shift = Linear(SiLU(emb(t))).chunk(2)``; ``emb`` is a learned
``nn.Embedding(T, width)`` (official ``timestep_type: adalayernorm``) or the
official sinusoidal table (``adalayernorm_abs``). Each AdaLayerNorm owns its
embedding, as in the official code.

Differences from the official code: attention runs through
``F.scaled_dot_product_attention``; cross-attention honours the text padding
mask (the official model attends to all 77 CLIP positions, so pass an all-True
mask, or ``mask=None``, to reproduce it); the text keys/values of every block
are computed once per prompt batch by :meth:`DenoisingTransformer.prepare_text`
and reused at every sampling step.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

MASK_NOTE = "token id K (== num_classes) is [MASK]"


# --------------------------------------------------------------------------- config


@dataclass
class TransformerConfig:
    num_classes: int = 512  # K image codes; [MASK] is id K, so inputs are in [0, K]
    h: int = 16  # token grid height
    w: int = 16  # token grid width
    width: int = 256  # model dim (official n_embd)
    depth: int = 8  # number of blocks (official n_layer)
    heads: int = 8  # attention heads
    text_dim: int = 256  # text embedding dim D (official condition_dim)
    dropout: float = 0.0  # attention + residual dropout (official attn_pdrop/resid_pdrop)
    mlp_ratio: int = 4  # MLP hidden = mlp_ratio * width (official mlp_hidden_times)
    diffusion_steps: int = 100  # T: timesteps 0..T-1 get an embedding
    timestep_emb: str = "embedding"  # "embedding" (official adalayernorm) | "sinusoidal" (adalayernorm_abs)
    activation: str = "gelu"  # "gelu" | "gelu2" (x * sigmoid(1.702 x), the official checkpoints' GELU2)

    def __post_init__(self):
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if self.timestep_emb not in ("embedding", "sinusoidal"):
            raise ValueError(f"timestep_emb must be 'embedding' or 'sinusoidal', got {self.timestep_emb!r}")
        if self.activation not in ("gelu", "gelu2"):
            raise ValueError(f"activation must be 'gelu' or 'gelu2', got {self.activation!r}")

    @property
    def seq_len(self) -> int:
        return self.h * self.w

    @property
    def mask_id(self) -> int:
        return self.num_classes

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TransformerConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown TransformerConfig keys: {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def preset(cls, name: str, **overrides) -> "TransformerConfig":
        if name not in PRESETS:
            raise KeyError(f"unknown transformer preset {name!r}; choose from {sorted(PRESETS)}")
        return replace(PRESETS[name], **overrides)


PRESETS: dict[str, TransformerConfig] = {
    # unit tests: ~0.2M parameters
    "tiny": TransformerConfig(num_classes=32, h=4, w=4, width=64, depth=2, heads=4, text_dim=32, diffusion_steps=10),
    # 128x128 images, f=8 VQ-VAE (16x16 tokens, K=512), scratch text encoder of dim 256: ~10M parameters
    "demo": TransformerConfig(num_classes=512, h=16, w=16, width=256, depth=8, heads=8, text_dim=256, diffusion_steps=100),
    # same, 32x32 tokens (f=4 VQ-VAE) and a wider model
    "demo32": TransformerConfig(num_classes=512, h=32, w=32, width=384, depth=8, heads=6, text_dim=256, diffusion_steps=100),
    # paper sizes (official configs/cub200.yaml, configs/ithq.yaml): CLIP ViT-B/32 text (512), 32x32 tokens
    "cub": TransformerConfig(num_classes=2887, h=32, w=32, width=1024, depth=19, heads=16, text_dim=512,
                             diffusion_steps=100, activation="gelu2"),
    "ithq": TransformerConfig(num_classes=4096, h=32, w=32, width=1408, depth=36, heads=16, text_dim=512,
                              diffusion_steps=100, activation="gelu2"),
}


# --------------------------------------------------------------------------- text context


@dataclass
class TextContext:
    """Per-block text keys/values, computed once per prompt batch.

    ``kv[i] = (k, v)`` with shapes ``[B, heads, L, head_dim]``; ``mask`` is
    ``[B, L]`` bool (True = real token) or None (attend to every position).
    """

    kv: list[tuple[torch.Tensor, torch.Tensor]]
    mask: torch.Tensor | None

    @property
    def batch_size(self) -> int:
        return self.kv[0][0].shape[0]

    @staticmethod
    def cat(contexts: list["TextContext"]) -> "TextContext":
        """Concatenate along the batch (e.g. [conditional, unconditional] for guidance)."""
        kv = [
            (torch.cat([c.kv[i][0] for c in contexts]), torch.cat([c.kv[i][1] for c in contexts]))
            for i in range(len(contexts[0].kv))
        ]
        if all(c.mask is None for c in contexts):
            mask = None
        else:
            mask = torch.cat([
                c.mask if c.mask is not None
                else torch.ones(c.batch_size, c.kv[0][0].shape[2], dtype=torch.bool, device=c.kv[0][0].device)
                for c in contexts
            ])
        return TextContext(kv, mask)

    def repeat_interleave(self, n: int) -> "TextContext":
        """Each prompt n times in a row (n samples per prompt)."""
        kv = [(k.repeat_interleave(n, 0), v.repeat_interleave(n, 0)) for k, v in self.kv]
        return TextContext(kv, None if self.mask is None else self.mask.repeat_interleave(n, 0))


# --------------------------------------------------------------------------- modules


class GELU2(nn.Module):
    """x * sigmoid(1.702 x): the quick GELU of the official checkpoints."""

    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class SinusoidalPosEmb(nn.Module):
    """Official sinusoidal timestep table (t rescaled to [0, 4000))."""

    def __init__(self, num_steps: int, dim: int, rescale_steps: int = 4000):
        super().__init__()
        self.dim, self.num_steps, self.rescale_steps = dim, float(num_steps), float(rescale_steps)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        t = t.float() / self.num_steps * self.rescale_steps
        half = self.dim // 2
        freq = torch.exp(torch.arange(half, device=t.device) * -(math.log(10000) / (half - 1)))
        emb = t[:, None] * freq[None, :]
        return torch.cat((emb.sin(), emb.cos()), dim=-1)


class AdaLayerNorm(nn.Module):
    def __init__(self, width: int, diffusion_steps: int, timestep_emb: str = "embedding"):
        super().__init__()
        if timestep_emb == "sinusoidal":
            self.emb = SinusoidalPosEmb(diffusion_steps, width)
        else:
            self.emb = nn.Embedding(diffusion_steps, width)
        self.silu = nn.SiLU()
        self.linear = nn.Linear(width, width * 2)
        self.layernorm = nn.LayerNorm(width, elementwise_affine=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # the scale and shift of every t, then each row's: a [B, C] matmul rounds differently for
        # different B (B = 1 takes another kernel), so a row's image would depend on its batch; the
        # purity sampler's ranking turns such 1e-7 differences into other images
        steps = self.emb.num_embeddings if isinstance(self.emb, nn.Embedding) else int(self.emb.num_steps)
        table = self.linear(self.silu(self.emb(torch.arange(steps, device=t.device))))
        scale, shift = table[t].unsqueeze(1).chunk(2, dim=2)  # [B, 1, C] each
        return self.layernorm(x) * (1 + scale) + shift


class DalleMaskImageEmbedding(nn.Module):
    """Content embedding over K+1 ids ([MASK] = K) + row embedding + column embedding."""

    def __init__(self, num_classes: int, h: int, w: int, width: int):
        super().__init__()
        self.h, self.w = h, w
        self.emb = nn.Embedding(num_classes + 1, width)
        self.height_emb = nn.Embedding(h, width)
        self.width_emb = nn.Embedding(w, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dev = x.device
        pos = self.height_emb(torch.arange(self.h, device=dev))[:, None, :] + self.width_emb(torch.arange(self.w, device=dev))[None, :, :]
        return self.emb(x) + pos.reshape(1, self.h * self.w, -1)


def _heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    B, T, C = x.shape
    return x.view(B, T, n_head, C // n_head).transpose(1, 2)  # [B, nh, T, hd]


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None,
               dropout_p: float = 0.0) -> torch.Tensor:
    """scaled_dot_product_attention; when training under bf16 autocast on the CPU, in float32:
    torch's CPU flash kernel runs its backward 1.3x (256 keys) to 4x (24 text keys) slower in
    bf16 than in float32 (benchmarks/RESULTS.md). GPUs and inference keep autocast's choice."""
    if q.device.type == "cpu" and torch.is_grad_enabled() and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            y = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=attn_mask,
                                               dropout_p=dropout_p)
        return y.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)


class FullAttention(nn.Module):
    """Bidirectional self-attention over the image tokens (official FullAttention names)."""

    def __init__(self, width: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.key = nn.Linear(width, width)
        self.query = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.proj = nn.Linear(width, width)
        self.resid_drop = nn.Dropout(dropout)
        self.n_head, self.dropout = heads, dropout

    def _qkv_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """query/key/value stacked into one projection for inference (one matmul instead of
        three), rebuilt whenever a weight changes (in place or by a move to another device)."""
        params = (self.query.weight, self.key.weight, self.value.weight,
                  self.query.bias, self.key.bias, self.value.bias)
        key = tuple((p.data_ptr(), p._version, p.dtype) for p in params)
        if getattr(self, "_qkv_key", None) != key:
            self._qkv = (torch.cat(params[:3]), torch.cat(params[3:]))
            self._qkv_key = key
        return self._qkv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        if torch.is_grad_enabled():
            q, k, v = (f(x) for f in (self.query, self.key, self.value))
        else:
            q, k, v = F.linear(x, *self._qkv_weights()).split(C, dim=-1)
        q, k, v = (_heads(z, self.n_head) for z in (q, k, v))
        y = _attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(B, T, C)))


class CrossAttention(nn.Module):
    """Image tokens attend to the text; key/value come from the text (cacheable)."""

    def __init__(self, width: int, text_dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.key = nn.Linear(text_dim, width)
        self.query = nn.Linear(width, width)
        self.value = nn.Linear(text_dim, width)
        self.proj = nn.Linear(width, width)
        self.resid_drop = nn.Dropout(dropout)
        self.n_head, self.dropout = heads, dropout

    def text_kv(self, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _heads(self.key(text), self.n_head), _heads(self.value(text), self.n_head)

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None) -> torch.Tensor:
        B, T, C = x.shape
        q = _heads(self.query(x), self.n_head)
        k, v = kv
        attn_mask = None if mask is None else mask[:, None, None, :]  # bool, True = attend
        y = _attention(q, k, v, attn_mask, self.dropout if self.training else 0.0)
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(B, T, C)))


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        W = cfg.width
        self.ln1 = AdaLayerNorm(W, cfg.diffusion_steps, cfg.timestep_emb)
        self.attn1 = FullAttention(W, cfg.heads, cfg.dropout)
        self.ln1_1 = AdaLayerNorm(W, cfg.diffusion_steps, cfg.timestep_emb)
        self.attn2 = CrossAttention(W, cfg.text_dim, cfg.heads, cfg.dropout)
        self.ln2 = nn.LayerNorm(W)
        self.mlp = nn.Sequential(
            nn.Linear(W, cfg.mlp_ratio * W),
            nn.GELU() if cfg.activation == "gelu" else GELU2(),
            nn.Linear(cfg.mlp_ratio * W, W),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x, t, kv, mask):
        x = x + self.attn1(self.ln1(x, t))
        x = x + self.attn2(self.ln1_1(x, t), kv, mask)
        return x + self.mlp(self.ln2(x))


# --------------------------------------------------------------------------- model


class DenoisingTransformer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.config = cfg
        self.content_emb = DalleMaskImageEmbedding(cfg.num_classes, cfg.h, cfg.w, cfg.width)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.depth)])
        self.to_logits = nn.Sequential(nn.LayerNorm(cfg.width), nn.Linear(cfg.width, cfg.num_classes))
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module):  # official init: N(0, 0.02), zero bias, unit LayerNorm
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    # ---- text
    def prepare_text(self, emb: torch.Tensor, mask: torch.Tensor | None = None) -> TextContext:
        """Text embeddings [B, L, D] (+ bool mask [B, L], True = real token) -> per-block K/V."""
        if emb.dim() != 3 or emb.shape[-1] != self.config.text_dim:
            raise ValueError(f"text embeddings must be [B, L, {self.config.text_dim}], got {tuple(emb.shape)}")
        if mask is not None:
            mask = mask.to(dtype=torch.bool)
            if mask.shape != emb.shape[:2]:
                raise ValueError(f"text mask {tuple(mask.shape)} does not match embeddings {tuple(emb.shape[:2])}")
            # read on the CPU only (the tokenizer's masks are): on a GPU a read waits for the queue
            if mask.device.type == "cpu":
                if not bool(mask.any(dim=1).all()):
                    raise ValueError("text mask has a row with no valid token (the null condition needs at least one, "
                                     "e.g. BOS/EOS)")
                if bool(mask.all()):
                    mask = None  # nothing to hide: lets attention take its fused unmasked kernels
            if mask is not None:
                mask = mask.to(emb.device, non_blocking=True)
        emb = emb.to(self.content_emb.emb.weight.dtype)
        return TextContext([blk.attn2.text_kv(emb) for blk in self.blocks], mask)

    # ---- forward
    def _check(self, x_t: torch.Tensor, t) -> torch.Tensor:
        B, N = x_t.shape
        if N != self.config.seq_len:
            raise ValueError(f"x_t has {N} tokens, the model's grid is {self.config.h}x{self.config.w}")
        if not torch.is_tensor(t):
            t = torch.tensor(t)
        t = t.to(device=x_t.device, dtype=torch.long)
        if t.dim() == 0:
            t = t.expand(B)
        return t

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, text: TextContext) -> torch.Tensor:
        """x_t [B, N] long in [0, K], t [B] long in [0, T) -> logits [B, K, N]."""
        t = self._check(x_t, t)
        if text.batch_size != x_t.shape[0]:
            raise ValueError(f"text context batch {text.batch_size} != x_t batch {x_t.shape[0]}")
        x = self.content_emb(x_t)
        for blk, kv in zip(self.blocks, text.kv):
            x = blk(x, t, kv, text.mask)
        return self.to_logits(x).transpose(1, 2)

    def forward_uncached(self, x_t: torch.Tensor, t: torch.Tensor, emb: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Same as forward, but each block projects the raw text inside the loop (reference / training)."""
        t = self._check(x_t, t)
        mask = None if mask is None else mask.to(device=emb.device, dtype=torch.bool)
        x = self.content_emb(x_t)
        for blk in self.blocks:
            x = blk(x, t, blk.attn2.text_kv(emb), mask)
        return self.to_logits(x).transpose(1, 2)

    def denoiser(self, context: TextContext) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """A closure ``denoise_fn(x_t, t) -> [B, K, N]`` for the diffusion module."""

        def denoise_fn(x_t, t):
            return self.forward(x_t, t, context)

        return denoise_fn

    def num_parameters(self, trainable_only: bool = False) -> int:
        return count_parameters(self, trainable_only)

    @torch.no_grad()
    def grow(self, depth: int) -> "DenoisingTransformer":
        """Append blocks up to `depth` that start as the identity (every residual branch's output
        layer zero), so a trained model keeps its outputs exactly and trains on with more capacity
        (progressive stacking: Gong et al. 2019; zero-initialised branches as in ReZero / adaLN-Zero)."""
        if depth < self.config.depth:
            raise ValueError(f"grow: depth {depth} is below the model's {self.config.depth}; a model only grows")
        ref = next(self.parameters())
        for _ in range(depth - self.config.depth):
            blk = Block(self.config)
            blk.apply(self._init_weights)
            for out in (blk.attn1.proj, blk.attn2.proj, blk.mlp[2]):
                out.weight.zero_()
                out.bias.zero_()
            self.blocks.append(blk.to(device=ref.device, dtype=ref.dtype))
        self.config = replace(self.config, depth=depth)
        return self


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def map_official_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official VQ-Diffusion checkpoint (``model`` dict of a DALLE) -> our keys.

    Keeps ``...transformer.{content_emb,blocks,to_logits}.*``, strips the prefixes;
    the text encoder (``condition_emb``) and other entries are dropped. Load with
    ``load_state_dict(..., strict=True)`` into a model built from the ``cub`` /
    ``ithq`` preset to check nothing is missing.
    """
    out = {}
    for key, value in sd.items():
        for stem in ("content_emb.", "blocks.", "to_logits."):
            i = key.find("transformer." + stem)
            if i >= 0 and "condition_emb" not in key:
                out[key[i + len("transformer."):]] = value
                break
    return out
