"""The image tokenizer: a VQ-VAE with an EMA codebook (or Gumbel quantisation) and dead-code restarts.

    vq = VQVAE(VQVAEConfig(codebook_size=512, channel_mult=(1, 2, 2, 4)))   # 3 downsamplings: f = 8
    vq.token_grid(128)               # (16, 16): the token grid of a 128x128 image
    ids = vq.encode(images)          # images [B, 3, H, W] in [0, 1] -> LongTensor [B, (H/f)*(W/f)]
    images = vq.decode(ids)          # -> [B, 3, H, W] in [0, 1]
    vq.save_pretrained("dir"); VQVAE.from_pretrained("dir")

EMA codebook (van den Oord et al. 2017, appendix): the codes follow running means of the
encoder outputs assigned to them, so the codebook gets no gradient; a commitment loss
pulls the encoder toward its codes. A code that has not been used for `restart_after`
training steps is re-seeded from a random encoder output of the current batch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from generation.files import atomic_save_file, atomic_write_json


@dataclass
class VQVAEConfig:
    in_channels: int = 3
    channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 2)   # len - 1 downsamplings: (1, 2, 2) -> f=4, (1, 2, 2, 4) -> f=8
    num_res_blocks: int = 1
    codebook_size: int = 512
    embed_dim: int = 64
    quantizer: str = "ema"          # "ema" | "gumbel"
    ema_decay: float = 0.99
    commitment: float = 0.25
    restart_after: int = 200        # steps without use before a code is re-seeded (0: never)
    gumbel_temperature: float = 1.0

    def __post_init__(self):
        self.channel_mult = tuple(self.channel_mult)
        if self.quantizer not in ("ema", "gumbel"):
            raise ValueError(f"quantizer must be 'ema' or 'gumbel', got {self.quantizer!r}")
        if len(self.channel_mult) < 2:
            raise ValueError(f"channel_mult needs at least 2 entries (one downsampling), got {self.channel_mult}")
        if self.codebook_size < 2 or self.embed_dim < 1:
            raise ValueError(f"codebook_size must be >= 2 and embed_dim >= 1, got {self.codebook_size}, {self.embed_dim}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")

    @property
    def factor(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)

    @classmethod
    def from_dict(cls, d: dict) -> "VQVAEConfig":
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown VQVAEConfig keys: {sorted(unknown)}")
        return cls(**d)


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, c // 4) if c >= 8 else 1, c)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.body = nn.Sequential(_norm(c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1),
                                  _norm(c_out), nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x):
        return self.skip(x) + self.body(x)


class Encoder(nn.Module):
    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        chans = [cfg.channels * m for m in cfg.channel_mult]
        layers: list[nn.Module] = [nn.Conv2d(cfg.in_channels, chans[0], 3, padding=1)]
        for i, c in enumerate(chans):
            c_in = chans[max(0, i - 1)] if i else chans[0]
            for k in range(cfg.num_res_blocks):
                layers.append(ResBlock(c_in if k == 0 else c, c))
            if i < len(chans) - 1:
                layers.append(nn.Conv2d(c, c, 4, stride=2, padding=1))
        layers += [ResBlock(chans[-1], chans[-1]), _norm(chans[-1]), nn.SiLU(),
                   nn.Conv2d(chans[-1], cfg.embed_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        chans = [cfg.channels * m for m in cfg.channel_mult][::-1]
        layers: list[nn.Module] = [nn.Conv2d(cfg.embed_dim, chans[0], 3, padding=1), ResBlock(chans[0], chans[0])]
        for i, c in enumerate(chans):
            c_in = chans[max(0, i - 1)] if i else chans[0]
            for k in range(cfg.num_res_blocks):
                layers.append(ResBlock(c_in if k == 0 else c, c))
            if i < len(chans) - 1:
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, padding=1)]
        layers += [_norm(chans[-1]), nn.SiLU(), nn.Conv2d(chans[-1], cfg.in_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)


class EMACodebook(nn.Module):
    """Nearest-code quantisation with EMA updates and dead-code restarts."""

    def __init__(self, K: int, dim: int, decay: float, restart_after: int):
        super().__init__()
        self.K, self.dim, self.decay, self.restart_after = K, dim, decay, restart_after
        self.register_buffer("embed", torch.randn(K, dim) * 0.1)
        self.register_buffer("cluster_size", torch.ones(K))
        self.register_buffer("embed_sum", self.embed.clone())
        self.register_buffer("unused_steps", torch.zeros(K, dtype=torch.long))
        self.register_buffer("initialised", torch.tensor(False))

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the closest code (squared L2) for each row of flat [M, dim]."""
        d = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.embed.t() + self.embed.pow(2).sum(1)[None]
        return d.argmin(1)

    @torch.no_grad()
    def update(self, flat: torch.Tensor, idx: torch.Tensor, generator=None) -> None:
        """One EMA step on the batch's assignments, then restart codes unused for too long."""
        if not bool(self.initialised):  # first batch: codes from random encoder outputs
            pick = torch.randint(0, flat.shape[0], (self.K,), device=flat.device, generator=generator)
            self.embed.copy_(flat[pick])
            self.embed_sum.copy_(flat[pick])
            self.cluster_size.fill_(1.0)
            self.initialised.fill_(True)
            idx = self.nearest(flat)
        onehot = F.one_hot(idx, self.K).type(flat.dtype)
        counts = onehot.sum(0)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(onehot.t() @ flat, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + 1e-5) / (n + self.K * 1e-5) * n  # Laplace smoothing
        self.embed.copy_(self.embed_sum / smoothed.unsqueeze(1))
        self.unused_steps.add_(1).masked_fill_(counts > 0, 0)
        if self.restart_after:
            dead = (self.unused_steps >= self.restart_after).nonzero().flatten()
            if len(dead):
                pick = torch.randint(0, flat.shape[0], (len(dead),), device=flat.device, generator=generator)
                self.embed[dead] = flat[pick]
                self.embed_sum[dead] = flat[pick]
                self.cluster_size[dead] = 1.0
                self.unused_steps[dead] = 0


def check_token_ids(ids: torch.Tensor, codebook_size: int, grid: tuple[int, int] | None) -> tuple[int, int]:
    """The (h, w) grid of token ids [B, h*w] (square unless given), with every id a real code."""
    N = ids.shape[1]
    if grid is None:
        side = round(N ** 0.5)
        if side * side != N:
            raise ValueError(f"{N} tokens are not a square grid; pass grid=(h, w)")
        grid = (side, side)
    if ids.min() < 0 or ids.max() >= codebook_size:
        raise ValueError(f"token ids must be in [0, {codebook_size}), got [{int(ids.min())}, {int(ids.max())}]")
    return grid


class VQVAE(nn.Module):
    def __init__(self, config: VQVAEConfig | None = None):
        super().__init__()
        self.config = cfg = config or VQVAEConfig()
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        if cfg.quantizer == "ema":
            self.codebook = EMACodebook(cfg.codebook_size, cfg.embed_dim, cfg.ema_decay, cfg.restart_after)
        else:  # Gumbel: logits over codes, a learned embedding table (no EMA)
            self.to_logits = nn.Conv2d(cfg.embed_dim, cfg.codebook_size, 1)
            self.code_embed = nn.Embedding(cfg.codebook_size, cfg.embed_dim)
        self.last_stats: dict = {}  # the latest training batch's code usage (for progress bars)

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def token_grid(self, image_size: int | tuple[int, int]) -> tuple[int, int]:
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        f = self.config.factor
        if h % f or w % f:
            raise ValueError(f"image size {h}x{w} is not divisible by the downsampling factor {f}")
        return h // f, w // f

    def _codes(self) -> torch.Tensor:
        return self.codebook.embed if self.config.quantizer == "ema" else self.code_embed.weight

    def quantize(self, z: torch.Tensor):
        """z [B, D, h, w] -> (quantised z with straight-through gradient, ids [B, h*w], loss)."""
        B, D, h, w = z.shape
        if self.config.quantizer == "gumbel":
            logits = self.to_logits(z)
            if self.training:
                soft = F.gumbel_softmax(logits, tau=self.config.gumbel_temperature, dim=1, hard=True)
                zq = torch.einsum("bkhw,kd->bdhw", soft, self.code_embed.weight)
                probs = logits.softmax(1)
                kl = (probs * (probs.clamp_min(1e-10) * self.codebook_size).log()).sum(1).mean()
                ids = logits.argmax(1).flatten(1)
                self.last_stats = self.code_usage(ids)
                return zq, ids, 5e-4 * kl
            ids = logits.argmax(1)
            return self.code_embed(ids).permute(0, 3, 1, 2), ids.flatten(1), z.new_zeros(())
        flat = z.permute(0, 2, 3, 1).reshape(-1, D)
        ids = self.codebook.nearest(flat)
        if self.training:
            self.codebook.update(flat.detach(), ids)
            ids = self.codebook.nearest(flat)
            self.last_stats = self.code_usage(ids)
        zq = self.codebook.embed[ids].view(B, h, w, D).permute(0, 3, 1, 2)
        loss = self.config.commitment * F.mse_loss(z, zq.detach())
        zq = z + (zq - z).detach()  # straight-through
        return zq, ids.view(B, h * w), loss

    def forward(self, images: torch.Tensor):
        """images in [0, 1] -> (reconstruction in [0, 1] (unclamped), ids, quantiser loss)."""
        z = self.encoder(images * 2 - 1)
        # under bf16 autocast the nearest-code search and the EMA codebook stay float32: bf16
        # distances would tie close codes, and running means need the mantissa
        with torch.autocast(z.device.type, enabled=False):
            zq, ids, qloss = self.quantize(z.float())
        return (self.decoder(zq).float() + 1) / 2, ids, qloss

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, C, H, W] in [0, 1] -> LongTensor [B, h*w] (row-major token grid), in eval
        mode whatever the module's mode, so encoding never moves the EMA codebook."""
        if images.dim() != 4 or images.shape[1] != self.config.in_channels:
            raise ValueError(f"encode expects [B, {self.config.in_channels}, H, W] in [0, 1], got {tuple(images.shape)}")
        self.token_grid(tuple(images.shape[2:]))
        was = self.training
        self.eval()
        z = self.encoder(images.to(self._codes().dtype) * 2 - 1)
        ids = self.quantize(z)[1]
        self.train(was)
        return ids

    @torch.no_grad()
    def decode(self, ids: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """ids [B, h*w] -> images [B, C, H, W] clamped to [0, 1]; grid=(h, w) for non-square grids."""
        return ((self.decoder(self.embed_ids(ids, grid)) + 1) / 2).clamp(0, 1)

    def embed_ids(self, ids: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """ids [B, h*w] -> the decoder's input: their codes as [B, embed_dim, h, w]."""
        grid = check_token_ids(ids, self.codebook_size, grid)
        return self._codes()[ids].view(len(ids), *grid, -1).permute(0, 3, 1, 2)

    @torch.no_grad()
    def code_usage(self, ids: torch.Tensor) -> dict:
        """Share of codes used and perplexity of the code distribution in `ids`."""
        counts = torch.bincount(ids.flatten(), minlength=self.codebook_size).double()
        p = counts / counts.sum()
        perplexity = torch.exp(-(p[p > 0] * p[p > 0].log()).sum())
        return {"codes_used": int((counts > 0).sum()), "usage": float((counts > 0).double().mean()),
                "perplexity": float(perplexity)}

    # ------------------------------------------------------------------ files
    def save_pretrained(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        atomic_save_file(self.state_dict(), path / "model.safetensors")
        cfg = asdict(self.config)
        cfg["channel_mult"] = list(cfg["channel_mult"])
        atomic_write_json(cfg, path / "config.json")
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path, device=None) -> "VQVAE":
        path = Path(path)
        for name in ("config.json", "model.safetensors"):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path} is not a saved VQ-VAE: {name} is missing")
        try:
            cfg = VQVAEConfig.from_dict(json.loads((path / "config.json").read_text()))
        except (json.JSONDecodeError, TypeError, ValueError) as e:
            raise ValueError(f"{path / 'config.json'}: bad VQ-VAE config ({e})") from None
        model = cls(cfg)
        try:
            state = load_file(str(path / "model.safetensors"))
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"{path / 'model.safetensors'}: cannot read weights ({e})") from None
        try:
            model.load_state_dict(state)
        except RuntimeError as e:  # missing/unexpected keys or shapes that disagree with config.json
            raise ValueError(f"{path / 'model.safetensors'}: weights do not match config.json ({e})") from None
        return model.to(device or "cpu").eval()
