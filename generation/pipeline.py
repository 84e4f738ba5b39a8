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
from typing import Callable, Iterable, Sequence

import torch
from safetensors.torch import load_file
from torch import nn

from generation.diffusion import MaskReplaceDiffusion
from generation.files import atomic_save_file, atomic_write_json
from generation.sampling_options import check_settings, finite_number, whole
from generation.transformer import DenoisingTransformer, TextContext, TransformerConfig

FORMAT = "gendet-text-to-image-1"
SEED_LIMIT = 2**63  # torch.Generator.manual_seed reads a seed as 64 bits: -1 drew what 2**64 - 1 draws
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


def check_seed(seed, name: str = "seed", count: int = 1) -> int:
    """A seed as an int in [0, 2**63), with room for `count` consecutive seeds; else a ValueError naming it."""
    n = whole(seed)
    if n is None or not 0 <= n <= SEED_LIMIT - count:
        raise ValueError(f"{name} must be an integer in [0, 2**63), got {seed!r}")
    return n


def sampling_arguments(steps, guidance_scale, truncation, purity, where: str = "") -> dict:
    """The four sampling settings checked for type and range (a float step count, purity='no' or a
    NaN guidance used to run as something else, or fail deep in the sampler)."""
    at = f"{where}: " if where else ""
    n_steps = whole(steps)
    if n_steps is None:
        raise ValueError(f"{at}steps must be an integer, got {steps!r}")
    numbers_ = {}
    for name, value in (("guidance_scale", guidance_scale), ("truncation", truncation)):
        try:
            if isinstance(value, (bool, str, bytes)):
                raise TypeError
            numbers_[name] = float(value)  # a numpy or 0-d tensor number too
        except (TypeError, ValueError):
            raise ValueError(f"{at}{name} must be a number, got {value!r}") from None
    if isinstance(purity, (str, bytes)) or purity not in (True, False):  # 'no' ran as True
        raise ValueError(f"{at}purity must be True or False, got {purity!r}")
    try:
        check_settings(n_steps, numbers_["truncation"], numbers_["guidance_scale"])
    except ValueError as e:
        raise ValueError(f"{at}{e}".replace("guidance must", "guidance_scale must")) from None
    return {"steps": n_steps, **numbers_, "purity": bool(purity)}


def read_json(path: Path) -> dict:
    """A part's JSON file; a broken one is named (json's own message gives a line, not the file)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing (a generator folder holds pipeline.json, diffusion.json, "
                                "transformer/, vqvae/ and text_encoder/)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


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
        merged = {**self.defaults, **defaults}
        checked = sampling_arguments(merged["steps"], merged["guidance_scale"], merged["truncation"],
                                     merged["purity"], where="defaults")  # "steps": 0 loaded, then every call failed
        self.defaults.update(checked)
        self.defaults["steps"] = min(self.defaults["steps"], self.diffusion.num_timesteps)

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

        Seeds are integers in [0, 2**63): image i uses seed + i (or seeds[i]). Settings left None
        are the model's defaults (`self.defaults`).
        callback(step_index, t, x0_tokens [B, h*w]) runs after every diffusion step; decode
        the tokens with `decode_tokens` for previews.
        Editing: init_image (float [3, H, W] or [1, 3, H, W] in [0, 1], the model's size; or a
        file, PIL image or array, cut to the model's size by `generation.data.edit_inputs`) is
        tokenised; with filter_ratio in (0, 1] sampling starts from its tokens noised to that
        depth (official VQ-Diffusion filter_ratio); with inpaint_mask (bool [H, W] pixels,
        True = regenerate; or a mask image, white = regenerate) every token outside the mask
        stays the image's."""
        if isinstance(prompts, str):
            prompts = [prompts]
        elif isinstance(prompts, Iterable) and not isinstance(prompts, bytes):
            prompts = [str(p) if isinstance(p, str) else p for p in prompts]  # numpy's str_ too
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            raise TypeError(f"prompts must be a string or a list of strings, got {prompts!r:.80}")
        if not prompts:
            raise ValueError("no prompts given")
        if seeds is not None:
            if len(prompts) != 1:
                raise ValueError("seeds= is for one prompt; for several, use seed= and num_images=")
            if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):  # '12' drew seeds 1 and 2
                raise TypeError(f"seeds must be a list of integers, got {seeds!r:.80}")
            seeds = list(seeds)  # a tuple, range, array or tensor of seeds
            if not seeds:
                raise ValueError("seeds is empty: give at least one seed")
            if num_images not in (1, len(seeds)):
                raise ValueError(f"seeds gives {len(seeds)} image(s) and num_images {num_images}: give one of them")
            seeds = [check_seed(s, "seeds") for s in seeds]
            num_images = len(seeds)
        else:
            if whole(num_images) is None or num_images < 1:
                raise ValueError(f"num_images must be an integer >= 1, got {num_images!r}")
            count = len(prompts) * int(num_images)
            base = int(torch.randint(0, 2**31 - 1, ()).item()) if seed is None else check_seed(seed, "seed", count)
            seeds = list(range(base, base + count))
        num_images = whole(num_images)
        T = self.diffusion.num_timesteps
        d = self.defaults
        settings = sampling_arguments(d["steps"] if steps is None else steps,
                                      d["guidance_scale"] if guidance_scale is None else guidance_scale,
                                      d["truncation"] if truncation is None else truncation,
                                      d["purity"] if purity is None else purity)
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
        if token_mask is not None:  # an inpainting says so, and how much of the image it redrew
            settings["inpaint_tokens"] = int(token_mask[0].sum())
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
        if not torch.is_tensor(init_image) or inpaint_mask is not None and not torch.is_tensor(inpaint_mask):
            from generation.data import edit_inputs  # files, PIL images, arrays: cut to the model's size

            made = edit_inputs(self.image_size, None if torch.is_tensor(init_image) else init_image,
                               None if inpaint_mask is None or torch.is_tensor(inpaint_mask) else inpaint_mask)
            init_image, inpaint_mask = made.get("init_image", init_image), made.get("inpaint_mask", inpaint_mask)
        if not init_image.is_floating_point():  # a uint8 tensor was read as values far above 1
            raise ValueError(f"init_image is a {init_image.dtype} tensor: give floats in [0, 1] "
                             "(or a PIL image, array or file)")
        if init_image.numel() and not (init_image.min() >= -0.01 and init_image.max() <= 1.01):
            raise ValueError(f"init_image holds values in [{init_image.min():g}, {init_image.max():g}]: "
                             "give floats in [0, 1]")
        if filter_ratio is not None and not finite_number(filter_ratio):
            raise ValueError(f"filter_ratio must be a number in (0, 1], got {filter_ratio!r}")
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
            if not inpaint_mask.any():  # nothing to redraw: the image's own tokens, drawn "again"
                raise ValueError("inpaint_mask marks no pixel to regenerate (True = regenerate)")
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
        """A saved pipeline folder (`save_pretrained`'s; a bundle's generator/), on `device` (cpu,
        cuda, cuda:N, mps; default: cuda when there is one). Loading leaves torch's global random
        state as it was."""
        import gendet_env  # offline, and transformers' loading bars off, before any part loads

        path = Path(path).expanduser()
        if path.name == "pipeline.json" and path.is_file():  # the file itself: its folder is meant
            path = path.parent
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
        meta = read_json(meta_path)
        if meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT!r}")
        # checked before anything loads: 'cuda' on a machine without one failed 12 frames deep
        device = torch.device(gendet_env.check_device(device) if device is not None else
                              "cuda" if torch.cuda.is_available() else "cpu")
        with torch.random.fork_rng(devices=[]):  # the random initial weights, replaced below, draw here
            return cls._load(path, meta, device)

    @classmethod
    def _load(cls, path: Path, meta: dict, device: torch.device) -> "TextToImage":
        from generation.diffusers_vq import load_image_tokenizer
        from generation.text import load_text_encoder

        vqvae = load_image_tokenizer(path / "vqvae", device=device)
        text = load_text_encoder(path / "text_encoder", device=device)
        cfg = TransformerConfig.from_dict(read_json(path / "transformer" / "config.json"))
        transformer = DenoisingTransformer(cfg)
        weights = path / "transformer" / "model.safetensors"
        try:
            state = load_file(str(weights))
        except Exception as e:  # noqa: BLE001 - safetensors raises several types
            raise ValueError(f"{weights}: cannot read weights ({e})") from None
        null = state.pop("null_text", None)
        if null is None:
            raise ValueError(f"{weights}: no 'null_text' tensor")
        try:
            transformer.load_state_dict(state)
        except RuntimeError as e:  # torch lists every key: the first lines say which shapes differ
            lines = [line.strip() for line in str(e).splitlines()[1:] if line.strip()]
            raise ValueError(f"{weights}: the weights do not fit {path / 'transformer' / 'config.json'} "
                             f"({'; '.join(lines[:3])[:300]})") from None
        diffusion = MaskReplaceDiffusion(**read_json(path / "diffusion.json"))
        try:
            pipe = cls(vqvae, text, transformer, diffusion, meta["image_size"], meta.get("defaults"))
        except ValueError as e:  # parts that disagree, or a defaults typo in pipeline.json
            raise ValueError(f"{path}: {e}") from None
        pipe.null_text.data.copy_(null)
        return pipe.to(device).eval()
