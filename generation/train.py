"""Train the text-to-image transformer (and the scratch text encoder) on a captions dataset.

    python -m generation.train --config generation/configs/demo.yaml
    python -m generation.train --config generation/configs/demo.yaml --resume       # after an interruption
    torchrun --nproc_per_node 4 -m generation.train --config generation/configs/demo.yaml  # several GPUs

Fine-tuning: a config with `init: DIR` (a saved pipeline, e.g. models/demo/generator) and no
vqvae / image_size / text / transformer / diffusion trains that pipeline further on `data`,
with its own VQ-VAE, tokenizer, weights and sampling defaults (a fresh optimizer and schedule).
`grow: {depth: N}` beside `init` appends transformer blocks that start as the identity: the
model starts where the init ended, with more capacity to train.

The VQ-VAE (trained first with `python -m generation.train_vqvae`) is frozen; the dataset
is tokenised once and cached in OUT/tokens.safetensors, so training never runs the image
encoder. Each step: random caption per image, the text dropped with probability
`drop_text` (it then becomes the learned null embedding, for classifier-free guidance),
the diffusion loss, AdamW with linear warm-up and cosine decay, gradient clipping, an EMA
of the weights. bf16 autocast where the GPU or CPU does bf16 natively (`train.precision`:
auto, the default; fp32 turns it off; the diffusion's log-space loss stays float32).
Rank 0 logs (OUT/log.jsonl, tqdm; each validation row has `val_loss` and
`val_loss_wrong_text`, the same batches with another image's caption: their gap is what
the text is worth to the model), writes sample grids (OUT/samples/: every
`train.sample_every` steps and at the last, the `sample` prompts x `per_prompt` at its
`steps`; `sample_every: 0` or --no-samples draws none) and atomic checkpoints
(OUT/checkpoint/); the final pipeline, with the EMA weights, goes to OUT/pipeline/ (load
it with TextToImage.from_pretrained).
Ctrl-C or SIGTERM (Slurm, `kill`, torchrun passing either on) ends the step under way, saves a
checkpoint and stops (exit 130; a second Ctrl-C stops at once, losing the steps since the last
checkpoint). A resumed run on CPU continues bit-identically, under torchrun too: the checkpoint
keeps every rank's random state (tested). An out folder that holds a run's checkpoint needs
--resume; one that holds other files (a VQ-VAE, a dataset) is refused, not written over.
"""

from __future__ import annotations

import gendet_env

import argparse
import contextlib
import hashlib
import itertools
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch import nn
from tqdm import tqdm

from generation.data import CaptionImageDataset, read_captions
from generation.diffusers_vq import load_image_tokenizer
from generation.diffusion import MaskReplaceDiffusion
from generation.files import atomic_save_file, atomic_write_json, load_torch_file
from generation.pipeline import TextToImage
from generation.precision import resolve_precision, training_autocast
from generation.runlog import interrupted, open_log, recover_checkpoint, run_folder_problem
from generation.schedule import cosine_lr
from generation.stop_signal import StopAfterStep, StoppedAtStep, sigterm_as_ctrl_c
from generation.text import AutoTextEncoder, ClipTextEncoder, ScratchTextEncoder
from generation.train_config import ConfigError, load_config
from generation.train_vqvae import out_folder_problem
from generation.transformer import DenoisingTransformer, TransformerConfig
from generation.vqvae import VQVAE

# what a run writes in its out folder: anything else there belongs to someone else
RUN_FILES = {"checkpoint", "checkpoint.tmp", "checkpoint.old", "pipeline", "samples", "log.jsonl",
             "tokens.safetensors", "tokens.safetensors.tmp", "tokens.json", "tokens.json.tmp"}


# ---------------------------------------------------------------------- tokens cache
def _stack_images(batch: list) -> torch.Tensor:
    return torch.stack([x[0] for x in batch])


def _json_field(path: Path, key: str):
    """One field of a JSON file, None when the file or the field is not there."""
    try:
        return json.loads(path.read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def tokenize_dataset(cfg: dict, vq, out: Path, device, progress: bool, write: bool = True) -> dict:
    """{split: (ids LongTensor [n, h*w], captions list)}; cached in OUT/tokens.safetensors under a
    key of the tokenizer's weights (as float32 values, however the file stores them), the
    captions, every image's bytes and the image size. A run with `init` also takes the cache of the run that
    trained its init, when the key matches: a round of training does not tokenise again
    (8 minutes for 20,000 images at 128 px on two cores, 18 beside other work). `write`: keep
    the cache (under torchrun rank 0 alone does: two ranks writing one file raced)."""
    data = Path(cfg["data"])
    key = hashlib.sha256()
    for name, tensor in sorted(vq.state_dict().items()):
        key.update(name.encode())
        key.update(tensor.detach().float().contiguous().cpu().numpy().tobytes())
    key.update((data / "captions.jsonl").read_bytes())
    for row in read_captions(data):  # the pixels too: images replaced under the same names get new tokens
        try:
            key.update(hashlib.sha256((data / row["image"]).read_bytes()).digest())
        except OSError as e:
            raise ValueError(f"{data / row['image']}: cannot read it ({e.strerror or e}), listed in "
                             f"{data / 'captions.jsonl'}") from None
    key.update(str(cfg["image_size"]).encode())
    digest = key.hexdigest()[:16]
    cache, meta_path = out / "tokens.safetensors", out / "tokens.json"
    folders = [out] + ([Path(cfg["init"]).parent] if "init" in cfg else [])
    for folder in folders:  # the init's training folder holds its pipeline/ and its cache
        if (folder / "tokens.safetensors").is_file() and (folder / "tokens.json").is_file():
            try:
                meta = json.loads((folder / "tokens.json").read_text())
            except ValueError:  # cut short by a kill (before it was written atomically): tokenised again
                continue
            if meta.get("key") == digest:
                tensors = load_file(str(folder / "tokens.safetensors"))
                if folder != out and write:
                    meta_path.unlink(missing_ok=True)
                    atomic_save_file(tensors, cache)
                    atomic_write_json(meta, meta_path, indent=None)
                return {s: (tensors[s], meta["captions"][s]) for s in meta["captions"]}
    result, captions = {}, {}
    for split in ("train", "val"):
        try:
            ds = CaptionImageDataset(data, split, cfg["image_size"])
        except ValueError:
            if split == "train":
                raise
            continue
        # on a GPU the PNG decoding is the bottleneck (60,000 scenes): decode in worker processes
        workers = min(8, os.cpu_count() or 1) if torch.device(device).type == "cuda" else 0
        loader = torch.utils.data.DataLoader(ds, batch_size=64, collate_fn=_stack_images, num_workers=workers)
        ids = [vq.encode(images.to(device)).cpu() for images in tqdm(loader, desc=f"tokenise {split}",
                                                                    disable=not progress)]
        result[split] = torch.cat(ids)
        captions[split] = ds.captions
    if write:
        meta_path.unlink(missing_ok=True)  # the key last: a cache is found only once both files are whole
        atomic_save_file(result, cache)
        atomic_write_json({"key": digest, "captions": captions}, meta_path, indent=None)
    return {s: (result[s], captions[s]) for s in result}


# ---------------------------------------------------------------------- model
def build_pipeline(cfg: dict, train_captions: list[list[str]], device) -> TextToImage:
    if "init" in cfg:
        return init_pipeline(cfg, device)
    vq = VQVAE.from_pretrained(cfg["vqvae"], device=device)
    vq.requires_grad_(False)
    tc = dict(cfg["text"])
    kind = tc.pop("kind", "scratch")
    if kind == "scratch":
        flat = [c for caps in train_captions for c in caps]
        text = ScratchTextEncoder.train_new(flat, **tc)
    elif kind in ("clip", "auto"):
        if "path" not in tc:
            raise ConfigError(f"text.kind {kind} needs text.path, a local folder")
        text = (ClipTextEncoder.from_pretrained(tc["path"]) if kind == "clip" else
                AutoTextEncoder.from_pretrained(tc["path"], max_length=tc.get("max_length")))
    else:
        raise ConfigError(f"text.kind must be scratch, clip or auto, got {kind!r}")
    h, w = vq.token_grid(cfg["image_size"])
    tr = dict(cfg["transformer"])
    preset = tr.pop("preset", None)
    shape = dict(num_classes=vq.codebook_size, h=h, w=w, text_dim=text.dim,
                 diffusion_steps=cfg["diffusion"].get("num_timesteps", 100))
    tcfg = TransformerConfig.preset(preset, **shape, **tr) if preset else TransformerConfig(**shape, **tr)
    diff_kw = {k: v for k, v in cfg["diffusion"].items()}
    diff_kw["num_timesteps"] = tcfg.diffusion_steps
    diffusion = MaskReplaceDiffusion(vq.codebook_size, **diff_kw)
    return TextToImage(vq, text, DenoisingTransformer(tcfg), diffusion, cfg["image_size"],
                       sampling_defaults(cfg)).to(device)


def sampling_defaults(cfg: dict) -> dict:
    """The sampling settings the config's `sample` section gives, to store with the pipeline."""
    sample = cfg.get("sample", {})
    return {k: sample[k] for k in ("steps", "guidance_scale", "truncation") if k in sample}


def init_pipeline(cfg: dict, device) -> TextToImage:
    """The saved pipeline `init`, to train further: its weights, tokenizer and shape; the config's
    sample settings, where given, replace its defaults. `grow: {depth: N}` appends blocks that
    start as the identity, so the model begins where the init ended, with more capacity."""
    pipe = TextToImage.from_pretrained(cfg["init"], device=device)
    if "grow" in cfg:
        try:
            pipe.transformer.grow(cfg["grow"]["depth"])
        except ValueError as e:
            raise ConfigError(f"{cfg['init']}: {e}") from None
    pipe.vqvae.requires_grad_(False)
    pipe.set_defaults(sampling_defaults(cfg))
    return pipe


class TrainStep(nn.Module):
    """forward(tokens, text ids, text mask, drop) -> (loss, stats): one module so DDP sees every
    parameter. The text comes tokenised (`CaptionTable`); its mask and drop stay on the CPU."""

    def __init__(self, pipe: TextToImage):
        super().__init__()
        self.pipe = pipe

    def forward(self, x0, text_ids, text_mask, drop, generator=None, update_history=True):
        pipe = self.pipe
        emb, mask = pipe.encode_text_ids(text_ids, text_mask, drop)
        ctx = pipe.transformer.prepare_text(emb, mask)
        return pipe.diffusion.loss(pipe.transformer.denoiser(ctx), x0, generator, update_history)


class CaptionTable:
    """Every image's captions, tokenised once: a step picks rows instead of running the
    tokenizer on its prompts (twice per batch, ~8 ms for 128 prompts: a sixth of a GPU step)."""

    def __init__(self, text_encoder, captions: list[list[str]]):
        if any(not caps for caps in captions):
            raise ValueError(f"image {next(i for i, c in enumerate(captions) if not c)} of the dataset has no caption")
        self.counts = [len(caps) for caps in captions]
        self.offsets = [0, *itertools.accumulate(self.counts[:-1])]
        self.ids, self.mask = text_encoder.tokenize([c for caps in captions for c in caps])

    def pick(self, images: list[int], gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, mask) of one random caption per image (the same draws as picking the strings)."""
        rows = torch.tensor([self.offsets[i] + int(torch.randint(0, self.counts[i], (), generator=gen)) for i in images])
        return self.ids[rows], self.mask[rows]


def trainable(pipe: TextToImage) -> dict[str, nn.Parameter]:
    return {n: p for n, p in pipe.named_parameters() if p.requires_grad and not n.startswith("vqvae.")}


def lr_at(step: int, tc: dict, elapsed: float = 0.0) -> float:
    return cosine_lr(step, tc["lr"], tc["steps"], tc["warmup"], elapsed)


# ---------------------------------------------------------------------- checkpoints
def random_states(gen: torch.Generator, noise_gen: torch.Generator) -> dict[str, torch.Tensor]:
    """This process's random states: what a resume needs to draw the batches it would have drawn."""
    return {"rng": gen.get_state(), "noise_rng": noise_gen.get_state(), "torch_rng": torch.get_rng_state()}


def gather_random_states(gen: torch.Generator, noise_gen: torch.Generator, group) -> list[dict]:
    """Every torchrun rank's random_states, in rank order (a collective: all ranks call it), over
    `group`, a gloo group: the states are CPU tensors. Each rank draws its own batches; a checkpoint
    with rank 0's states alone made every rank draw rank 0's batches after a resume."""
    mine = random_states(gen, noise_gen)
    packed = torch.cat(list(mine.values()))  # the same lengths on every rank: one device kind
    gathered = [torch.empty_like(packed) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, packed, group=group)
    lengths = [len(v) for v in mine.values()]
    # clones: Generator.set_state wants a tensor of its own (a view at an offset crashed the resume)
    return [dict(zip(mine, (part.clone() for part in row.split(lengths)))) for row in gathered]


def restore_random_states(saved: dict, gen: torch.Generator, noise_gen: torch.Generator, step: int) -> None:
    """Take a checkpoint's random states for this process: its own rank's where the run had as many
    ranks, else (another process count, a checkpoint from before the states were gathered) new ones
    for ranks past 0, drawn from each rank's seed and the step, so no two ranks draw alike."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    ranks = saved.get("ranks") or [{k: saved[k] for k in ("rng", "noise_rng", "torch_rng") if k in saved}]
    if len(ranks) == world or rank == 0:
        mine = ranks[rank] if len(ranks) == world else ranks[0]
        gen.set_state(mine["rng"])
        if noise_gen is not gen and "noise_rng" in mine:  # a CUDA run's own noise generator
            noise_gen.set_state(mine["noise_rng"])
        torch.set_rng_state(mine["torch_rng"])
        if rank == 0 and len(ranks) != world:
            held = (f"the random states of {len(ranks)} processes" if "ranks" in saved else
                    "one process's random state (a single-process run's, or rank 0's alone: gendet kept no "
                    "other rank's before 2026-12-08)")
            print(f"warning: the checkpoint holds {held}, this run has {world}: the run goes on, but its batches "
                  "are not those the uninterrupted run would have drawn", file=sys.stderr)
        return
    fresh = gen.initial_seed() * 1_000_003 + step  # gen was seeded per rank
    gen.manual_seed(fresh)
    if noise_gen is not gen:
        noise_gen.manual_seed(fresh)
    torch.manual_seed(fresh)


def save_checkpoint(out: Path, pipe: TextToImage, ema: dict, opt, step: int, gen: torch.Generator,
                    noise_gen: torch.Generator, ranks: list[dict] | None = None) -> None:
    """Atomic: written to checkpoint.tmp/, then swapped in. `ranks`: every torchrun rank's random
    states (gather_random_states); without it, this process's."""
    tmp, final, old = out / "checkpoint.tmp", out / "checkpoint", out / "checkpoint.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    pipe.save_pretrained(tmp / "pipeline")
    state = {f"ema.{k}": v for k, v in ema.items()}
    state |= {f"buf.{k}": v for k, v in pipe.diffusion.state_dict().items()}
    atomic_save_file(state, tmp / "train_state.safetensors")
    # rank 0's states also stand alone, as before, for a single-process resume and older readers
    torch.save({"optimizer": opt.state_dict(), "step": step, **(ranks[0] if ranks else random_states(gen, noise_gen)),
                **({"ranks": ranks} if ranks else {})}, tmp / "optimizer.pt")
    shutil.rmtree(old, ignore_errors=True)  # one a kill left half-deleted would block the rename below
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(out: Path, pipe: TextToImage, ema: dict, opt, gen: torch.Generator,
                    noise_gen: torch.Generator, device) -> int:
    ck = out / "checkpoint"
    if not (ck / "optimizer.pt").is_file():
        raise FileNotFoundError(f"--resume: no checkpoint in {ck}")
    saved = TextToImage.from_pretrained(ck / "pipeline", device=device)
    # a changed model config would otherwise fail in load_state_dict with a page of key names
    other = f"{out} holds a checkpoint of another model"
    differences = model_differences(saved, pipe)
    if differences:
        raise ConfigError(f"{other} (its config differs from this config: {', '.join(differences)}); "
                          "use a new out: folder")
    try:
        pipe.load_state_dict(saved.state_dict())
    except RuntimeError:  # a difference the comparison does not look at
        raise ConfigError(f"{other} (its weights do not fit the model this config builds); "
                          "use a new out: folder") from None
    pipe.text_encoder.tokenizer = saved.text_encoder.tokenizer
    state = load_file(str(ck / "train_state.safetensors"))
    for k in ema:
        ema[k].copy_(state[f"ema.{k}"])
    pipe.diffusion.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("buf.")})
    # on the CPU: RNG states must stay CPU tensors; the optimizer moves its state to the params
    extra = load_torch_file(ck / "optimizer.pt")  # a damaged or foreign file: one line naming it
    opt.load_state_dict(extra["optimizer"])
    restore_random_states(extra, gen, noise_gen, int(extra["step"]))
    return int(extra["step"])


def model_differences(saved: TextToImage, pipe: TextToImage) -> list[str]:
    """'transformer depth 2 vs 3' (saved vs config) for each setting that shapes the weights and
    differs between the checkpoint's model and the one the config builds."""
    def text(encoder) -> dict:
        config = getattr(getattr(encoder, "model", None), "config", None)
        sizes = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
        return {"kind": type(encoder).__name__, "max_length": encoder.max_length, "dim": encoder.dim,
                **{k: getattr(config, k, None) for k in sizes}}

    parts = {"image": ({"size": saved.image_size}, {"size": pipe.image_size}),
             "text encoder": (text(saved.text_encoder), text(pipe.text_encoder)),
             "transformer": (saved.transformer.config.to_dict(), pipe.transformer.config.to_dict()),
             "diffusion": (saved.diffusion.config(), pipe.diffusion.config())}
    return [f"{part} {key} {a.get(key)} vs {b.get(key)}" for part, (a, b) in parts.items()
            for key in dict.fromkeys([*a, *b]) if a.get(key) != b.get(key)]


# ---------------------------------------------------------------------- loop
def train(cfg: dict, resume: bool = False, device: str | None = None, progress: bool = True,
          stop_at: int | None = None, time_limit: float | None = None, schedule_by_time: bool = False,
          stop_by: float | None = None) -> Path | None:
    """Train (or resume) to cfg.train.steps; stop_at pauses after that step with a checkpoint
    (the schedule still counts toward train.steps), for time-limited machines. time_limit
    (minutes) ends training early: checkpoint and export the EMA pipeline at that step; stop_by
    (a time.time() value) likewise, at a wall-clock time (a lent machine's call ends then);
    schedule_by_time: the cosine also follows the share of the time used, so a run the clock
    ends still ends on its low learning rate (a machine lent for minutes, whatever its speed).
    Returns what rank 0 wrote last: OUT/pipeline or OUT/checkpoint (None on the other ranks)."""
    if schedule_by_time and not (time_limit or stop_by):
        raise ConfigError("--schedule-by-time needs --time-limit or --stop-by")
    distributed = int(os.environ.get("WORLD_SIZE", 1)) > 1
    rank = int(os.environ.get("RANK", 0))
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    # the per-step stop flags and the random states go over a CPU group: on NCCL a GPU tensor's .item()
    # made the CPU wait for each step
    cpu_group = dist.new_group(backend="gloo") if distributed else None
    if device is None:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    tc = cfg["train"]
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    vq = load_image_tokenizer(cfg["vqvae"], device=device)
    trained_at = _json_field(Path(cfg["vqvae"]) / "metrics.json", "size")
    if rank == 0 and trained_at not in (None, cfg["image_size"]):
        print(f"warning: the VQ-VAE {cfg['vqvae']} was trained on {trained_at} px images and is used at "
              f"{cfg['image_size']} px (image_size): its tokens then stand for other image parts", file=sys.stderr)
    data = tokenize_dataset(cfg, vq, out, device, progress and rank == 0, write=rank == 0)
    train_ids, train_caps = data["train"]
    # seeded after tokenising: its loader draws from the global RNG only when the token cache is
    # missing, and the model's first weights must not depend on whether it was there
    torch.manual_seed(tc["seed"])
    pipe = build_pipeline(cfg, train_caps, device)
    if train_ids.max() >= pipe.vqvae.codebook_size:
        raise ValueError("cached tokens do not match the VQ-VAE's codebook")
    params = trainable(pipe)
    decay = [p for n, p in params.items() if p.dim() >= 2 and "null_text" not in n]
    no_decay = [p for n, p in params.items() if p.dim() < 2 or "null_text" in n]
    # fused: one kernel for the whole update on a GPU (a CPU run keeps the reference loop)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": tc["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], lr=tc["lr"], betas=(0.9, 0.96),
                            fused=device.type == "cuda" or None)
    ema = {n: p.detach().clone() for n, p in params.items()}
    gen = torch.Generator().manual_seed(tc["seed"] * 1000 + rank)  # batches, captions, text drop
    # the diffusion's noise (t, x_t) is drawn where the tokens are: torch samples only on a
    # generator's own device, and drawing on the CPU and copying would stall a GPU every step
    noise_gen = gen if device.type == "cpu" else torch.Generator(device).manual_seed(tc["seed"] * 1000 + rank)
    if distributed and resume:  # rank 0 has recovered a checkpoint a kill left mid-swap: read it after that
        dist.barrier(group=cpu_group)
    step = load_checkpoint(out, pipe, ema, opt, gen, noise_gen, device) if resume else 0
    if resume and rank == 0:
        print(f"resumed from step {step} of {tc['steps']} ({out / 'checkpoint'})", file=sys.stderr)
    if step > tc["steps"]:
        raise ConfigError(f"train.steps (or --steps) is {tc['steps']}, but the checkpoint in {out} is already "
                          f"at step {step}")
    if stop_at is not None and stop_at <= step < tc["steps"]:
        raise ConfigError(f"--stop-at {stop_at}: the checkpoint in {out} is already at step {step}")
    if resume:
        params = trainable(pipe)
    captions = CaptionTable(pipe.text_encoder, train_caps)
    model = TrainStep(pipe)
    if distributed:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    precision = resolve_precision(tc["precision"], device)
    autocast = training_autocast(device, precision)
    log = open_log(out / "log.jsonl", step if resume else None) if rank == 0 else None
    bar = tqdm(total=tc["steps"], initial=step, desc="train", disable=not progress or rank != 0)
    tokens_seen, t0, logged_at = 0, time.time(), step  # the rates count the steps since the last row
    pipe.train()
    pipe.vqvae.eval()
    grid = out / "samples" / f"step_{step:07d}.png"
    if (resume and rank == 0 and tc["sample_every"] and (step % tc["sample_every"] == 0 or step == tc["steps"])
            and not grid.is_file()):  # stopped between its checkpoint and its grid: drawn now, as it would have been
        sample_grid(pipe, cfg, grid, progress)
        pipe.train()
        pipe.vqvae.eval()
    end = tc["steps"] if stop_at is None else min(stop_at, tc["steps"])
    start = time.time()
    ends = [t for t in (start + 60 * time_limit if time_limit else None, stop_by) if t is not None]
    deadline = min(ends) if ends else None
    timed_out = False
    wrote = None  # what this run has written, for the caller's "wrote" line
    stopping = False
    with StopAfterStep(announce=rank == 0) as stop:  # Ctrl-C, SIGTERM: this step ends with a checkpoint
        while step < end:
            idx = torch.randint(0, len(train_ids), (tc["batch_size"],), generator=gen)
            # non_blocking: a plain copy to a GPU waits for every queued kernel first
            x0 = train_ids[idx].to(device, non_blocking=True)
            text_ids, text_mask = captions.pick(idx.tolist(), gen)
            drop = torch.rand(len(idx), generator=gen) < tc["drop_text"]
            elapsed = (time.time() - start) / max(1e-9, deadline - start) if schedule_by_time else 0.0
            lr = lr_at(step, tc, elapsed)
            for group in opt.param_groups:
                group["lr"] = lr
            with autocast:
                loss, stats = model(x0, text_ids, text_mask, drop, noise_gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(list(params.values()), tc["grad_clip"])
            opt.step()
            with torch.no_grad():  # one fused update of every EMA tensor (a launch per tensor on a GPU otherwise)
                torch._foreach_lerp_([ema[n] for n in params], [p.detach() for p in params.values()],
                                     1 - tc["ema_decay"])
            step += 1
            tokens_seen += x0.numel()
            if rank == 0:
                bar.update()
                # reading a number off the GPU waits for it: only on the steps that log
                if step % tc["log_every"] == 0 or step == tc["steps"]:
                    bar.set_postfix(loss=f"{loss.item():.4f}")
                    dt = time.time() - t0
                    row = {"step": step, "loss": loss.item(), "lr": lr, "grad_norm": float(grad_norm),
                           "it_s": (step - logged_at) / dt if dt > 0 else None,
                           "tokens_s": tokens_seen / dt if dt > 0 else None, "precision": precision}
                    row |= {k: float(v) for k, v in stats.items()}
                    log.write(json.dumps(row) + "\n")
                    log.flush()
                    tokens_seen, t0, logged_at = 0, time.time(), step
                if "val" in data and (step % tc["val_every"] == 0 or step == tc["steps"]):
                    log.write(json.dumps({"step": step, **validate(model, data["val"], tc, device)}) + "\n")
                    log.flush()
            if deadline is not None:
                timed_out = time.time() >= deadline
            stopping = stop.requested
            if distributed:  # every rank stops at the same step, this one: torchrun and Slurm kill after 30 s
                flags = torch.tensor([float(timed_out), float(stop.requested)])
                dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=cpu_group)
                timed_out, stopping = bool(flags[0].item()), bool(flags[1].item())
            stopping = stopping and step < end  # on the last step the run ends as it would have
            # every rank decides alike (timed_out and stopping are agreed): the states are gathered from all
            if step % tc["ckpt_every"] == 0 or step in (tc["steps"], end) or timed_out or stopping:
                ranks = gather_random_states(gen, noise_gen, cpu_group) if distributed else None
                if rank == 0:
                    save_checkpoint(out, pipe, ema, opt, step, gen, noise_gen, ranks)
                    wrote = out / "checkpoint"
            if stopping:
                break
            # after the checkpoint: a grid that fails loses no training
            if rank == 0 and tc["sample_every"] and (step % tc["sample_every"] == 0 or step == tc["steps"]):
                sample_grid(pipe, cfg, out / "samples" / f"step_{step:07d}.png", progress)
                pipe.train()
                pipe.vqvae.eval()
            if timed_out:
                break
    bar.close()
    if rank == 0:
        if timed_out and log is not None:
            minutes = (deadline - start) / 60  # below 0: a --stop-by that had just passed at the start
            stopped = ("time limit: --stop-by passed before the start" if minutes <= 0 else
                       f"time limit: --stop-by {utc(stop_by)}" if deadline == stop_by else
                       f"time limit of {minutes:.4g} min")
            log.write(json.dumps({"step": step, "stopped": stopped}) + "\n")
        if stopping and log is not None:
            log.write(json.dumps({"step": step, "stopped": stop.name}) + "\n")
        if step == tc["steps"] or timed_out:
            wrote = export_ema(pipe, ema, out / "pipeline")
        log.close()
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    if stopping:
        raise StoppedAtStep(step)
    return wrote


@torch.no_grad()
def validate(model, val, tc, device) -> dict:
    """Validation loss with each image's own caption, and with the caption of the next image in
    the batch: the same images, t and x_t (same seed), so the gap is what the text is worth to
    the model (near 0: it draws without reading the prompt)."""
    ids, caps = val
    # the module itself, not its DistributedDataParallel wrapper: only rank 0 validates, and the
    # wrapper's forward would wait for the other ranks (torchrun hung after the last step)
    model = model.module if hasattr(model, "module") else model
    text_encoder = model.pipe.text_encoder
    result = {}
    model.eval()  # no dropout: both passes must see the same network
    for name, shift in (("val_loss", 0), ("val_loss_wrong_text", 1)):
        g = torch.Generator().manual_seed(12345)
        losses = []
        for _ in range(tc["val_batches"]):
            idx = torch.randint(0, len(ids), (min(tc["batch_size"], len(ids)),), generator=g)
            prompts = [caps[i][0] for i in idx.tolist()]
            text_ids, text_mask = text_encoder.tokenize(prompts[shift:] + prompts[:shift])
            loss, _ = model(ids[idx].to(device), text_ids, text_mask, torch.zeros(len(prompts), dtype=torch.bool), g,
                            False)
            losses.append(loss.item())
        result[name] = sum(losses) / len(losses)
    model.train()
    model.pipe.vqvae.eval()  # frozen, as in the loop
    return result


def sample_grid(pipe: TextToImage, cfg: dict, path: Path, progress: bool = False) -> None:
    """The `sample` prompts (rows) x `per_prompt` (columns), with a bar: at a real model's sampling
    steps the grid takes minutes on a CPU, too long to draw in silence."""
    from torchvision.utils import save_image

    sc = cfg.get("sample") or {}
    prompts, per_prompt = sc.get("prompts", ["a cat"]), sc.get("per_prompt", 4)
    steps = pipe.defaults["steps"]  # the sample section's, as the pipeline keeps them (at most its T)
    pipe.eval()
    with tqdm(total=steps, desc=f"drawing a {len(prompts)}x{per_prompt} sample grid", unit="step",
              disable=not progress, leave=False) as bar:
        out = pipe(prompts, num_images=per_prompt, seed=0, steps=steps,
                   callback=(lambda *_: bar.update()) if progress else None)  # the callback costs an argmax
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(out.images, path, nrow=per_prompt)


def export_ema(pipe: TextToImage, ema: dict, path: Path) -> Path:
    """Save the pipeline with the EMA weights in place of the live ones."""
    live = {n: p.detach().clone() for n, p in trainable(pipe).items()}
    with torch.no_grad():
        for n, p in trainable(pipe).items():
            p.copy_(ema[n])
        pipe.save_pretrained(path)
        for n, p in trainable(pipe).items():
            p.copy_(live[n])
    return path


def main(argv=None) -> int:
    with sigterm_as_ctrl_c():  # a scheduler's SIGTERM while loading or tokenising: as Ctrl-C, not a kill
        return _main(argv)


def _main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m generation.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="YAML config (see generation/configs/)")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    ap.add_argument("--device", type=gendet_env.device_arg, default=None,
                    help="cpu, cuda, cuda:1 (default: cuda when available)")
    ap.add_argument("--steps", type=int, default=None, help="override train.steps")
    ap.add_argument("--data", default=None, help="override the config's data folder (a scenes root or any captions dataset)")
    ap.add_argument("--out", default=None, help="override the config's out folder")
    ap.add_argument("--stop-at", type=int, default=None,
                    help="pause after this step (checkpoint written; continue later with --resume)")
    ap.add_argument("--time-limit", type=float, default=None, metavar="MIN",
                    help="stop after this many minutes: checkpoint and export the pipeline at that step")
    ap.add_argument("--stop-by", type=float, default=None, metavar="UNIX_SECONDS",
                    help="stop at this wall-clock time (seconds since 1970), like --time-limit: for a machine "
                         "lent until then, e.g. --stop-by $(( $(date +%%s) + 480 ))")
    ap.add_argument("--schedule-by-time", action="store_true",
                    help="with --time-limit or --stop-by: the lr cosine follows the time used too (whichever of steps and "
                         "time is further along), so the run ends on its low lr wherever the clock stops it")
    ap.add_argument("--no-samples", action="store_true",
                    help="draw no sample grids, not even the final one (as train.sample_every: 0)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    for flag, value in (("--steps", args.steps), ("--stop-at", args.stop_at)):
        if value is not None and value < 1:
            ap.error(f"{flag} must be at least 1, got {value}")
    if args.time_limit is not None and not 0 < args.time_limit < math.inf:  # NaN fails too
        ap.error(f"--time-limit must be a positive number of minutes, got {args.time_limit:g}")
    if args.stop_by is not None:
        # A deadline that passed moments ago is a lent machine whose start-up took its time: the run
        # takes one step and exports. One more than a day old is a mistake (minutes typed for a
        # Unix time, say), which would otherwise train a single step.
        if not math.isfinite(args.stop_by):
            ap.error(f"--stop-by {args.stop_by} is not a time; it is a Unix time, e.g. $(( $(date +%s) + 480 ))")
        if args.stop_by < time.time() - 86400:
            ap.error(f"--stop-by {args.stop_by:.10g} is in the past ({utc(args.stop_by)}); it is a Unix time, "
                     "e.g. $(( $(date +%s) + 480 ))")
    made, cfg = False, None  # whether this run made the out folder; the config, once read
    try:
        cfg = load_config(args.config)
        if args.steps is not None:
            cfg["train"]["steps"] = args.steps
        if args.data is not None:
            cfg["data"] = args.data
        if args.out is not None:
            cfg["out"] = args.out
        if args.no_samples:
            cfg["train"]["sample_every"] = 0
        option = "--out" if args.out is not None else f"the out: folder of {args.config}"
        out = Path(cfg["out"])
        problem = out_folder_problem(out, option)
        if problem:
            raise ConfigError(problem)
        made = not out.exists()
        # rank 0 holds the folder (torchrun's other ranks share it); a second run into it is refused
        rank0 = int(os.environ.get("RANK", 0)) == 0
        with gendet_env.held(out, "generation.train") if rank0 else contextlib.nullcontext():
            if rank0:  # the other ranks hold no lock: they must not move a checkpoint another job is swapping
                recover_checkpoint(out)
            problem = run_folder_problem(out, args.resume, "generation.train", RUN_FILES, trained=("checkpoint",))
            if problem:
                raise ConfigError(problem)
            # before tokenising: found afterwards, a mistyped folder cost minutes and kept a token cache. Every
            # rank checks (one refusing alone left the others waiting for it); the other ranks also count a
            # checkpoint a kill left mid-swap, which rank 0 may not have recovered yet
            kept = ("checkpoint",) if rank0 else ("checkpoint", "checkpoint.tmp", "checkpoint.old")
            if args.resume and not any((out / name / "optimizer.pt").is_file() for name in kept):
                raise ConfigError(f"--resume: no checkpoint in {out / 'checkpoint'}")
            if not (Path(cfg["data"]) / "captions.jsonl").is_file():
                given = "--data" if args.data is not None else f"data: in {args.config}"
                raise ConfigError(f"{given}: {cfg['data']} holds no captions.jsonl (give a datasets.scenes root "
                                  "or a captions dataset, e.g. from datasets.convert)")
            path = train(cfg, args.resume, args.device, not args.quiet, args.stop_at, args.time_limit,
                         args.schedule_by_time, args.stop_by)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        made = made and not isinstance(e, gendet_env.FolderBusy)  # the folder is the other run's
        if made and Path(cfg["out"]).is_dir() and not any(Path(cfg["out"]).iterdir()):
            Path(cfg["out"]).rmdir()  # a run that failed before writing anything leaves no empty folder
        return 2
    except KeyboardInterrupt as e:
        said = interrupted(Path(cfg["out"]), cfg["train"]["ckpt_every"], getattr(e, "step", None)) if cfg \
            else "interrupted"
        if int(os.environ.get("RANK", 0)) == 0:  # under torchrun, one line rather than one a rank
            print(f"\n{said}", file=sys.stderr)
        return 130
    if path is not None:  # rank 0: what it wrote
        print(f"wrote {path}")
    return 0


def utc(t: float) -> str:
    """A Unix time as a date, for messages."""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))
    except (OverflowError, OSError, ValueError):
        return "out of the calendar's range"


if __name__ == "__main__":
    sys.exit(main())
