"""TextToImage: VQ-VAE tokenizer + text encoder + denoising transformer + diffusion, one object.

    pipe = TextToImage.from_pretrained("models/demo/generator")
    out = pipe(["a black cat", "two dogs"], num_images=2, steps=25, guidance_scale=3.0, seed=0)
    out.images      # float tensor [4, 3, H, W] in [0, 1]: prompt-major, 2 per prompt
    out.seeds       # [0, 1, 2, 3]: image i used seed + i, and only that seed
    out.pil()       # the same as PIL images

A saved pipeline is a folder (safetensors + JSON, no pickle):

    pipeline.json          format, image size, sampling defaults, component folders
    vqvae/                 generation.vqvae.VQVAE.save_pretrained (or a diffusers VQModel folder,
                           for converted VQ-Diffusion weights: generation.diffusers_vq)
    text_encoder/          generation.text (scratch: tokenizer + model; clip or auto: a local CLIP or
                           sentence-transformers / transformers folder, frozen)
    transformer/           config.json + model.safetensors (+ the learned null text embedding)
    diffusion.json         MaskReplaceDiffusion config

Every image draws its randomness from its own torch.Generator seeded with its own
seed, so image i is the same whether it is generated alone or in a batch (on the
same device; the batch changes only the denoiser's float rounding, ~1e-6, which
changed no token where measured, and images are decoded one by one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from safetensors.torch import load_file
from torch import nn

from generation.diffusion import MaskReplaceDiffusion
from generation.files import atomic_save_file, atomic_write_json
from generation.sampling_options import check_settings
from generation.transformer import DenoisingTransformer, TextContext, TransformerConfig

FORMAT = "gendet-text-to-image-1"
DEFAULTS = {"steps": 25, "guidance_scale": 3.0, "truncation": 0.86, "purity": False}


@dataclass
class GenerationOutput:
    images: torch.Tensor                 # [B, 3, H, W] float in [0, 1]
    tokens: torch.Tensor                 # [B, h*w] code ids
    prompts: list[str]
    seeds: list[int]
    settings: dict = field(default_factory=dict)

    def pil(self):
        from PIL import Image

        arr = self.images.detach().clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        return [Image.fromarray(a) for a in arr]


class TextToImage(nn.Module):
    def __init__(self, vqvae, text_encoder, transformer: DenoisingTransformer, diffusion: MaskReplaceDiffusion,
                 image_size: int, defaults: dict | None = None):
        super().__init__()
        cfg = transformer.config
        if diffusion.num_classes != cfg.num_classes:
            raise ValueError(f"diffusion has {diffusion.num_classes} classes, transformer {cfg.num_classes}")
        if diffusion.num_timesteps != cfg.diffusion_steps:
            raise ValueError(f"diffusion has {diffusion.num_timesteps} steps, transformer {cfg.diffusion_steps}")
        if text_encoder.dim != cfg.text_dim:
            raise ValueError(f"text encoder width {text_encoder.dim} != transformer text_dim {cfg.text_dim}")
        self.vqvae = vqvae
        self.text_encoder = text_encoder
        self.transformer = transformer
        self.diffusion = diffusion
        self.image_size = int(image_size)
        self.defaults = dict(DEFAULTS)
        self.set_defaults(defaults or {})
        # classifier-free guidance: a learned stand-in for "no text" (Improved VQ-Diffusion)
        self.null_text = nn.Parameter(torch.zeros(text_encoder.max_length, cfg.text_dim))
        nn.init.normal_(self.null_text, std=0.02)

    def set_defaults(self, defaults: dict) -> None:
        """Replace some sampling defaults. A model has T t values to visit, so a default above T
        (DEFAULTS' 25 on a tiny 10-step model) means all T: capped here, the one place it is set."""
        unknown = set(defaults) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown sampling defaults {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        self.defaults.update(defaults)
        self.defaults["steps"] = min(int(self.defaults["steps"]), self.diffusion.num_timesteps)

    @property
    def device(self) -> torch.device:
        return self.null_text.device

    # ------------------------------------------------------------------ text
    def encode_text(self, prompts: Sequence[str], drop: torch.Tensor | None = None):
        """(embeddings [B, L, D] on the pipeline's device, mask [B, L] bool on the CPU); rows
        with drop=True become the null text."""
        return self.encode_text_ids(*self.text_encoder.tokenize(list(prompts)), drop)

    def encode_text_ids(self, ids: torch.Tensor, mask: torch.Tensor, drop: torch.Tensor | None = None):
        """`encode_text` for ids and mask from `text_encoder.tokenize` (a trainer tokenises its
        captions once). mask and drop are CPU tensors: they are read on the host, and on a GPU
        reading one back would wait for every queued kernel."""
        emb = self.text_encoder.encode_ids(ids).to(self.device)
        if drop is not None:  # in the graph even when no row drops: DDP needs every parameter in every step
            null = self.null_text.to(emb.dtype).unsqueeze(0).expand_as(emb)
            emb = torch.where(drop.to(self.device, non_blocking=True).view(-1, 1, 1), null, emb)
            mask = torch.where(drop.view(-1, 1), torch.ones_like(mask), mask)
        return emb, mask

    def null_context(self, batch: int) -> TextContext:
        emb = self.null_text.unsqueeze(0).expand(batch, -1, -1)
        return self.transformer.prepare_text(emb, torch.ones(emb.shape[:2], dtype=torch.bool))

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def __call__(self, prompts: str | Sequence[str], num_images: int = 1, seed: int | None = 0,
                 seeds: Sequence[int] | None = None, steps: int | None = None, guidance_scale: float | None = None,
                 truncation: float | None = None, purity: bool | None = None,
                 callback: Callable[[int, int, torch.Tensor], None] | None = None,
                 init_image: torch.Tensor | None = None, filter_ratio: float | None = None,
                 inpaint_mask: torch.Tensor | None = None) -> GenerationOutput:
        """Generate num_images per prompt (or one per entry of `seeds`, for one prompt).

        callback(step_index, t, x0_tokens [B, h*w]) runs after every diffusion step; decode
        the tokens with `decode_tokens` for previews.
        Editing: init_image (float [3, H, W] or [1, 3, H, W] in [0, 1], the model's size) is
        tokenised; with filter_ratio in (0, 1] sampling starts from its tokens noised to that
        depth (official VQ-Diffusion filter_ratio); with inpaint_mask (bool [H, W] pixels,
        True = regenerate) every token outside the mask stays the image's."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            raise ValueError("no prompts given")
        if seeds is not None:
            if len(prompts) != 1:
                raise ValueError("seeds= is for one prompt; for several, use seed= and num_images=")
            seeds = [int(s) for s in seeds]
            num_images = len(seeds)
        else:
            base = int(torch.randint(0, 2**31 - 1, ()).item()) if seed is None else int(seed)
            seeds = list(range(base, base + len(prompts) * num_images))
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        T = self.diffusion.num_timesteps
        settings = {"steps": self.defaults["steps"] if steps is None else int(steps),
                    "guidance_scale": float(self.defaults["guidance_scale"] if guidance_scale is None else guidance_scale),
                    "truncation": float(self.defaults["truncation"] if truncation is None else truncation),
                    "purity": bool(self.defaults["purity"] if purity is None else purity)}
        check_settings(settings["steps"], settings["truncation"])
        if settings["steps"] > T:  # asked for more t values than there are: say so, do not clamp silently
            raise ValueError(f"steps must be at most this model's {T} diffusion steps, got {settings['steps']}")
        expanded = [p for p in prompts for _ in range(num_images)]
        B = len(expanded)
        emb, mask = self.encode_text(prompts)
        ctx = self.transformer.prepare_text(emb, mask).repeat_interleave(num_images)
        if settings["guidance_scale"] != 1.0:
            ctx = TextContext.cat([ctx, self.null_context(B)])
        denoise = self.transformer.denoiser(ctx)
        generators = [torch.Generator(device=self.device).manual_seed(s) for s in seeds]
        cfg = self.transformer.config
        x_init, start_t, token_mask = self._edit_inputs(init_image, filter_ratio, inpaint_mask, B)
        if start_t is not None:
            settings["filter_ratio"] = float(filter_ratio)
        tokens = self.diffusion.sample(denoise, B, cfg.seq_len, steps=settings["steps"],
                                       guidance_scale=settings["guidance_scale"], truncation=settings["truncation"],
                                       purity=settings["purity"], generator=generators, callback=callback,
                                       device=self.device, x_init=x_init, start_t=start_t, inpaint_mask=token_mask)
        images = self.decode_tokens(tokens)
        return GenerationOutput(images, tokens, expanded, seeds, settings)

    def _edit_inputs(self, init_image, filter_ratio, inpaint_mask, batch: int):
        """(x_init tokens [B, N], start_t, token mask [B, N]) for editing/inpainting, or Nones."""
        if init_image is None:
            if filter_ratio is not None or inpaint_mask is not None:
                raise ValueError("filter_ratio and inpaint_mask need init_image")
            return None, None, None
        image = init_image.unsqueeze(0) if init_image.dim() == 3 else init_image
        if image.shape[0] != 1 or image.shape[1:] != (3, self.image_size, self.image_size):
            raise ValueError(f"init_image must be [3, {self.image_size}, {self.image_size}] in [0, 1], "
                             f"got {tuple(init_image.shape)}")
        x_init = self.vqvae.encode(image.to(self.device)).expand(batch, -1)
        start_t = None if filter_ratio is None else self.diffusion.start_t_for_filter_ratio(filter_ratio)
        token_mask = None
        if inpaint_mask is not None:
            h, w = self.transformer.config.h, self.transformer.config.w
            if tuple(inpaint_mask.shape) != (self.image_size, self.image_size):
                raise ValueError(f"inpaint_mask must be [{self.image_size}, {self.image_size}] pixels, "
                                 f"got {tuple(inpaint_mask.shape)}")
            # a token is regenerated if any of its pixels is
            pooled = torch.nn.functional.adaptive_max_pool2d(inpaint_mask.float()[None, None], (h, w))
            token_mask = pooled.flatten().bool().to(self.device).expand(batch, -1)
        if start_t is None and token_mask is None:
            raise ValueError("init_image needs filter_ratio (editing) and/or inpaint_mask (inpainting)")
        return x_init, start_t, token_mask

    def generate_for_judge(self, prompt: str, seeds: Sequence[int], **settings) -> torch.Tensor:
        """The evaluation runner's generate(prompt, seeds) -> images."""
        return self(prompt, seeds=seeds, **settings).images

    @torch.no_grad()
    def decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        # one image at a time: a batched convolution sums in another order (~1e-6), enough to move a
        # few pixels by 1/255, and an image must not depend on its batch (no slower on CPU, measured)
        return torch.cat([self.vqvae.decode(t[None].to(self.device)) for t in tokens]).clamp(0, 1)

    # ------------------------------------------------------------------ files
    def save_pretrained(self, path: str | Path) -> Path:
        path = Path(path)
        (path / "transformer").mkdir(parents=True, exist_ok=True)
        self.vqvae.save_pretrained(path / "vqvae")
        self.text_encoder.save_pretrained(path / "text_encoder")
        atomic_write_json(self.transformer.config.to_dict(), path / "transformer" / "config.json")
        state = dict(self.transformer.state_dict())
        state["null_text"] = self.null_text.data
        atomic_save_file(state, path / "transformer" / "model.safetensors")
        atomic_write_json(self.diffusion.config(), path / "diffusion.json")
        atomic_write_json({"format": FORMAT, "image_size": self.image_size, "defaults": self.defaults,
                           "text_encoder": type(self.text_encoder).__name__}, path / "pipeline.json")
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None) -> "TextToImage":
        from generation.diffusers_vq import load_image_tokenizer
        from generation.text import load_text_encoder

        path = Path(path)
        meta_path = path / "pipeline.json"
        if not meta_path.is_file():
            if not path.exists():
                raise FileNotFoundError(f"{path}: no such folder (a generator folder holds pipeline.json)")
            inner = path / "pipeline" / "pipeline.json"  # a training run's folder: its model is in pipeline/
            saved = path / "checkpoint" / "pipeline" / "pipeline.json"  # an unfinished run: its last checkpoint's
            hint = (f"; did you mean {path / 'pipeline'}?" if inner.is_file() else
                    f"; an unfinished training run: its last checkpoint's model is {saved.parent} "
                    "(or finish the run with --resume)" if saved.is_file() else "")
            raise FileNotFoundError(f"{path} is not a gendet text-to-image folder (no pipeline.json){hint}")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT!r}")
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        vqvae = load_image_tokenizer(path / "vqvae", device=device)
        text = load_text_encoder(path / "text_encoder", device=device)
        cfg = TransformerConfig.from_dict(json.loads((path / "transformer" / "config.json").read_text()))
        transformer = DenoisingTransformer(cfg)
        weights = path / "transformer" / "model.safetensors"
        try:
            state = load_file(str(weights))
        except Exception as e:  # noqa: BLE001 - safetensors raises several types
            raise ValueError(f"{weights}: cannot read weights ({e})") from None
        null = state.pop("null_text", None)
        if null is None:
            raise ValueError(f"{weights}: no 'null_text' tensor")
        transformer.load_state_dict(state)
        diffusion = MaskReplaceDiffusion(**json.loads((path / "diffusion.json").read_text()))
        try:
            pipe = cls(vqvae, text, transformer, diffusion, meta["image_size"], meta.get("defaults"))
        except ValueError as e:  # parts that disagree, or a defaults typo in pipeline.json
            raise ValueError(f"{path}: {e}") from None
        pipe.null_text.data.copy_(null)
        return pipe.to(device).eval()
