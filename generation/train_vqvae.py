"""Train the VQ-VAE image tokenizer on the images of a captions dataset or scenes root.

    python -m generation.train_vqvae --data data/scenes --out runs/vqvae --size 128 --steps 20000
    python -m generation.train_vqvae --data data/scenes --out runs/vqvae --resume
    python -m generation.train_vqvae --data data/scenes --out runs/vqvae_ft --init runs/vqvae \
        --decoder-only --loss mse --steps 5000      # a sharper decoder for the same tokens

L1 + MSE reconstruction (or MSE alone: --loss mse, what PSNR measures), the quantiser's
commitment loss, and optionally a patch-GAN hinge loss after --gan-start steps.
--decoder-only trains the decoder of an --init model on its frozen encoder and codebook: the
tokens stay exactly the same, so a generator trained on them keeps working with the new decoder.
Every --val-every steps: PSNR on val images (pooled and per image), codebook usage and
perplexity, to OUT/metrics.jsonl; at the end OUT/metrics.json and the model in
OUT/ (config.json + model.safetensors). Checkpoints (OUT/checkpoint/) are atomic; Ctrl-C or
SIGTERM ends the step under way with one (a second Ctrl-C stops at once); --resume
with the same --steps (the cosine lr follows them) continues bit-identically on CPU. An --out
that holds a run needs --resume, and one that holds other files is refused, not written over.
Convolutions run channels-last under bf16 autocast where the hardware has native bf16
(--precision auto; generation/precision.py), the codebook in float32.
"""

from __future__ import annotations

import gendet_env

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from generation.data import load_image, read_captions
from generation.files import atomic_write_json, load_torch_file
from generation.precision import PRECISIONS, resolve_precision, training_autocast
from generation.runlog import interrupted, open_log, recover_checkpoint, run_folder_problem
from generation.schedule import cosine_lr
from generation.stop_signal import StopAfterStep, StoppedAtStep, sigterm_as_ctrl_c
from generation.vqvae import VQVAE, VQVAEConfig

# what a run writes in its out folder (the model itself lands beside its checkpoint)
RUN_FILES = {"checkpoint", "checkpoint.tmp", "checkpoint.old", "metrics.jsonl", "metrics.json", "metrics.json.tmp",
             "model.safetensors", "model.safetensors.tmp", "config.json", "config.json.tmp"}

# The architecture options and their defaults. The options default to None, so that a saved model's
# architecture (--resume, --init) stands unless an option given on the command line contradicts it.
ARCHITECTURE = dict(channels=64, codebook_size=512, embed_dim=64, downsample=8, quantizer="ema", restart_after=200)


def image_paths(root: Path, split: str) -> list[Path]:
    """The split's images: from captions.jsonl when there is one, else images/<split>/."""
    if (root / "captions.jsonl").is_file():
        return [root / r["image"] for r in read_captions(root, split)]
    folder = root / "images" / split
    if folder.is_dir():
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    if not root.is_dir():
        raise FileNotFoundError(f"--data {root} does not exist")
    raise FileNotFoundError(f"{root}: no captions.jsonl and no images/{split}/ folder (expected a captions "
                            "dataset or a datasets.scenes root)")


def load_images(paths: list[Path], size: int, desc: str = "load", quiet: bool = False) -> torch.Tensor:
    """All images as uint8 [N, 3, size, size]: a quarter of float32's memory (a few thousand 128x128
    images stay well under 1 GB), converted to float per batch. Exact: load_image divides uint8 by 255."""
    out = torch.zeros(len(paths), 3, size, size, dtype=torch.uint8)
    for i, p in enumerate(tqdm(paths, desc=desc, disable=quiet or not paths)):
        out[i] = load_image(p, size).mul(255).round().to(torch.uint8)
    return out


def as_float(images: torch.Tensor, device) -> torch.Tensor:
    return images.to(device).float().div_(255.0)


class PatchDiscriminator(nn.Module):
    """A small PatchGAN (Isola et al.): real/fake logits per image patch."""

    def __init__(self, channels: int = 64):
        super().__init__()
        c = channels
        self.net = nn.Sequential(nn.Conv2d(3, c, 4, 2, 1), nn.LeakyReLU(0.2),
                                 nn.Conv2d(c, 2 * c, 4, 2, 1), nn.GroupNorm(8, 2 * c), nn.LeakyReLU(0.2),
                                 nn.Conv2d(2 * c, 1, 3, 1, 1))

    def forward(self, x):
        return self.net(x * 2 - 1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of a (clamped to [0, 1]) against b, over the whole set (one pooled MSE)."""
    mse = F.mse_loss(a.clamp(0, 1), b).item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(1.0 / mse)).item()


def psnr_per_image(a: torch.Tensor, b: torch.Tensor) -> float:
    """The mean over images [B, ...] of each one's PSNR in dB: the usual way PSNR is reported. It is
    higher than the pooled `psnr`, which the hardest images dominate."""
    mse = (a.clamp(0, 1) - b).pow(2).flatten(1).mean(1).double().clamp_min(1e-12)
    return (-10 * mse.log10()).mean().item()


def save_checkpoint(out: Path, vq, disc, opt, opt_d, step, gen, decoder_only=False) -> None:
    tmp, final = out / "checkpoint.tmp", out / "checkpoint"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    vq.save_pretrained(tmp / "model")
    torch.save({"step": step, "opt": opt.state_dict(), "disc": disc.state_dict() if disc else None,
                "opt_d": opt_d.state_dict() if opt_d else None, "rng": gen.get_state(),
                "torch_rng": torch.get_rng_state(), "decoder_only": decoder_only}, tmp / "state.pt")
    old = out / "checkpoint.old"
    shutil.rmtree(old, ignore_errors=True)  # one a kill left half-deleted would block the rename below
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def model_config(args, saved: VQVAEConfig | None, source: str = "") -> VQVAEConfig:
    """The architecture to train: a saved model's (`source`: --resume or --init), which an option
    given on the command line may repeat but not change (the weights fix it), or else a new one
    from the options and their defaults."""
    if saved is None:
        a = {k: v if getattr(args, k) is None else getattr(args, k) for k, v in ARCHITECTURE.items()}
        return VQVAEConfig(channels=a["channels"], channel_mult=(1, 2, 2, 4) if a["downsample"] == 8 else (1, 2, 2),
                           codebook_size=a["codebook_size"], embed_dim=a["embed_dim"], quantizer=a["quantizer"],
                           restart_after=a["restart_after"])
    have = dict(channels=saved.channels, codebook_size=saved.codebook_size, embed_dim=saved.embed_dim,
                downsample=saved.factor, quantizer=saved.quantizer, restart_after=saved.restart_after)
    for key, value in have.items():
        given = getattr(args, key)
        if given is not None and given != value:
            flag = "--" + key.replace("_", "-")
            raise ValueError(f"{flag} {given} disagrees with {source} ({flag[2:]} {value}): a saved model keeps "
                             f"its architecture; leave {flag} out")
    return saved


def train(args) -> dict:
    out = Path(args.out)
    root = Path(args.data)
    ck = out / "checkpoint"
    torch.manual_seed(args.seed)  # first: loading a saved model draws from it too, as it always has
    if args.resume:
        if not (ck / "state.pt").is_file():
            raise FileNotFoundError(f"--resume: no checkpoint in {ck} (state.pt missing)")
        cfg = model_config(args, VQVAE.from_pretrained(ck / "model").config, f"the checkpoint in {ck}")
    elif args.init:
        cfg = model_config(args, VQVAE.from_pretrained(args.init).config, f"--init {args.init}")
    else:
        cfg = model_config(args, None)
    if args.size % cfg.factor:  # the encoder halves the image len(channel_mult) - 1 times
        raise ValueError(f"--size {args.size} must be a multiple of the downsampling factor {cfg.factor}"
                         + (f" of {ck}" if args.resume else f" of --init {args.init}" if args.init else ""))
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    precision = resolve_precision(args.precision, device)
    try:  # channels_last: the layout oneDNN and cuDNN convolve fastest (1.3-1.5x at 128 px on the CPU in float32)
        vq = VQVAE(cfg).to(device, memory_format=torch.channels_last)
    except ValueError as e:  # group norms need channel counts their group count divides
        raise ValueError(f"--channels {cfg.channels} does not make a model ({e}); try a multiple of 8") from None
    if args.threads:
        torch.set_num_threads(args.threads)
    train_imgs = load_images(image_paths(root, "train"), args.size, "load train", args.quiet)
    val_imgs = load_images(image_paths(root, "val")[:args.val_images], args.size, "load val", args.quiet)
    if len(train_imgs) == 0:
        raise ValueError(f"{root}: no training images (captions.jsonl train rows or images/train/)")
    disc = PatchDiscriminator().to(device) if args.gan_weight > 0 else None
    if args.init and not args.resume:
        vq.load_state_dict(VQVAE.from_pretrained(args.init).state_dict())
    if args.decoder_only:  # encoder and codebook frozen: the codes of every image stay the same
        vq.requires_grad_(False).decoder.requires_grad_(True)
    trained = vq.decoder if args.decoder_only else vq
    opt = torch.optim.Adam(trained.parameters(), lr=args.lr, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(disc.parameters(), lr=args.lr, betas=(0.5, 0.9)) if disc else None
    gen = torch.Generator().manual_seed(args.seed)
    step = 0
    if args.resume:
        vq.load_state_dict(VQVAE.from_pretrained(ck / "model", device=device).state_dict())
        # on the CPU: RNG states must stay CPU tensors; the optimizer moves its state to the params
        state = load_torch_file(ck / "state.pt")  # a damaged or foreign file: one line naming it
        if state.get("decoder_only", False) != args.decoder_only:
            raise ValueError(f"--resume: {ck} was trained {'with' if state.get('decoder_only') else 'without'} "
                             "--decoder-only; resume it the same way")
        step = state["step"]
        print(f"resumed from step {step} of {args.steps} ({ck})", file=sys.stderr)
        opt.load_state_dict(state["opt"])
        if disc and state["disc"] is not None:  # a GAN switched on at resume starts fresh
            disc.load_state_dict(state["disc"])
            opt_d.load_state_dict(state["opt_d"])
        gen.set_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])
    train_ids = encode_all(vq, train_imgs, device, args.quiet) if args.decoder_only else None
    out.mkdir(parents=True, exist_ok=True)
    log = open_log(out / "metrics.jsonl", step if args.resume else None)
    bar = tqdm(total=args.steps, initial=step, desc="vqvae", disable=args.quiet)
    metrics: dict = {}
    start = time.time()
    rate = Throughput(step, args.batch)
    deadline = start + 60 * args.time_limit if args.time_limit else None
    stopped_at = None
    with StopAfterStep() as stop:
        while step < args.steps:
            vq.train()
            idx = torch.randint(0, len(train_imgs), (args.batch,), generator=gen)
            x = as_float(train_imgs[idx], device).contiguous(memory_format=torch.channels_last)
            lr = lr_at(step, args, (time.time() - start) / (60 * args.time_limit) if args.schedule_by_time else 0.0)
            for group in [*opt.param_groups, *(opt_d.param_groups if opt_d else [])]:
                group["lr"] = lr
            with training_autocast(device, precision):
                if args.decoder_only:  # the tokens were computed once, up front
                    rec, qloss = (vq.decoder(vq.embed_ids(train_ids[idx].to(device))).float() + 1) / 2, 0.0
                else:
                    rec, ids, qloss = vq(x)
                loss = F.mse_loss(rec, x) + qloss
                if args.loss == "l1+mse":
                    loss = loss + (rec - x).abs().mean()
                if disc and step >= args.gan_start:
                    loss = loss + args.gan_weight * -disc(rec).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if disc and step >= args.gan_start:
                with training_autocast(device, precision):
                    d_loss = F.relu(1 - disc(x)).mean() + F.relu(1 + disc(rec.detach())).mean()
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
            step += 1
            bar.update()
            if step % args.val_every == 0 or step == args.steps:
                images_s = rate(step)
                metrics = evaluate(vq, val_imgs if len(val_imgs) else train_imgs[:64], device)
                rate.restart()
                metrics["val_split"] = "val" if len(val_imgs) else "train[:64] (no val images)"
                metrics |= {"step": step, "train_loss": loss.item(), "precision": precision, "images_s": images_s}
                log.write(json.dumps(metrics) + "\n")
                log.flush()
            if step % 10 == 0 or step == args.steps:  # .item() syncs the GPU: not every step
                # the training batch's PSNR, beside the last validation's (metrics.jsonl's figure)
                bar.set_postfix(loss=f"{loss.item():.4f}", batch_psnr=f"{psnr(rec.detach(), x):.2f}",
                                val_psnr=f"{metrics['val_psnr']:.2f}" if metrics else "-",
                                **({} if args.decoder_only else {"codes": vq.last_stats.get("codes_used")}))
            if step % args.ckpt_every == 0 or step == args.steps:
                save_checkpoint(out, vq, disc, opt, opt_d, step, gen, args.decoder_only)
            if deadline is not None and time.time() >= deadline and step < args.steps:
                # out of time: this step's numbers, a checkpoint to --resume from, and the model
                metrics = evaluate(vq, val_imgs if len(val_imgs) else train_imgs[:64], device) | {
                    "step": step, "stopped": f"time limit of {args.time_limit} min (of {args.steps} steps)"}
                log.write(json.dumps(metrics) + "\n")
                save_checkpoint(out, vq, disc, opt, opt_d, step, gen, args.decoder_only)
                break
            if stop.requested and step < args.steps:  # Ctrl-C or SIGTERM: keep this step, end here
                if step % args.ckpt_every:
                    save_checkpoint(out, vq, disc, opt, opt_d, step, gen, args.decoder_only)
                log.write(json.dumps({"step": step, "stopped": stop.name}) + "\n")
                stopped_at = step
                break
    bar.close()
    if stopped_at is not None:
        log.close()
        raise StoppedAtStep(stopped_at)
    if not metrics:  # resumed a finished run: report its numbers again
        metrics = evaluate(vq, val_imgs if len(val_imgs) else train_imgs[:64], device) | {"step": step}
    log.close()
    vq.save_pretrained(out)
    metrics["size"] = args.size  # what it was trained at: generation.train says when it is used at another
    metrics["val_images"] = len(val_imgs)  # what the PSNR is over (0: measured on 64 training images)
    atomic_write_json(metrics, out / "metrics.json")
    return metrics


class Throughput:
    """rate(step) -> images per second since the previous call: it counts the steps taken, as the
    last row of a run may come fewer than --val-every steps after the one before. The clock stops
    during validation, so the rate is the training's alone."""

    def __init__(self, step: int, batch: int, clock=None):
        self.step, self.batch, self.clock = step, batch, clock or time.time
        self.t = self.clock()

    def __call__(self, step: int) -> float:
        now = self.clock()
        images_s = self.batch * (step - self.step) / max(1e-9, now - self.t)
        self.step, self.t = step, now
        return images_s

    def restart(self) -> None:
        self.t = self.clock()


def lr_at(step: int, args, elapsed: float = 0.0) -> float:
    """Constant, or cosine from --lr down to a tenth of it at --steps (a function of the step
    alone, so a resumed run follows the same curve; with --schedule-by-time, of the share of the
    time limit used too, `elapsed`, where that is further along: the run ends on the low rate)."""
    return args.lr if args.lr_schedule == "constant" else cosine_lr(step, args.lr, args.steps, 0, elapsed)


@torch.no_grad()
def encode_all(vq: VQVAE, images: torch.Tensor, device, quiet: bool = False) -> torch.Tensor:
    """The token ids of every image [N, h*w], on the CPU (what a frozen encoder gives each step)."""
    batches = range(0, len(images), 64)
    return torch.cat([vq.encode(as_float(images[i:i + 64], device)).cpu()
                      for i in tqdm(batches, desc="encode", disable=quiet)])


@torch.no_grad()
def evaluate(vq: VQVAE, images: torch.Tensor, device) -> dict:
    """Reconstruction PSNR through the tokens (encode -> decode, what the generator sees), pooled and
    per image, and the codebook usage/perplexity of those tokens."""
    vq.eval()
    ids = encode_all(vq, images, device, quiet=True)
    rec = torch.cat([vq.decode(ids[i:i + 64].to(device)).cpu() for i in range(0, len(ids), 64)])
    x = as_float(images, "cpu")
    return {"val_psnr": psnr(rec, x), "val_psnr_per_image": psnr_per_image(rec, x)} | vq.code_usage(ids)


# the smallest value of each whole-number option (None: not given); --lr and --time-limit must be > 0
AT_LEAST = dict(size=1, steps=1, batch=1, codebook_size=2, embed_dim=1, channels=1, restart_after=0, gan_start=0,
                val_every=1, val_images=0, ckpt_every=1, threads=0)


def number_problems(args) -> str | None:
    """What is wrong with the numeric options, checked up front: a bad value is one line that names
    the option, not a traceback from deep in the first step (or, for --steps -5, an untrained model)."""
    for key, low in AT_LEAST.items():
        value = getattr(args, key)
        if value is not None and value < low:
            return f"--{key.replace('_', '-')} must be at least {low}, got {value}"
    for key in ("lr", "time_limit"):
        value = getattr(args, key)
        if value is not None and not 0 < value < math.inf:  # not `value <= 0`: NaN must fail too
            return f"--{key.replace('_', '-')} must be a positive number, got {value:g}"
    if not 0 <= args.gan_weight < math.inf:
        return f"--gan-weight must be 0 (off) or more, got {args.gan_weight:g}"
    return None


def out_folder_problem(out: Path, option: str) -> str | None:
    """Why `out` cannot become the output folder (it, or a folder above it, is a file), or None."""
    for folder in (out, *out.parents):
        if folder.exists():
            if folder.is_dir():
                return None
            return f"{out}: {option} exists and is not a folder" if folder == out else \
                f"{out}: {option} is inside {folder}, which is a file"
    return None


def main(argv=None) -> int:
    with sigterm_as_ctrl_c():  # a scheduler's SIGTERM while loading or tokenising: as Ctrl-C, not a kill
        return _main(argv)


def _main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m generation.train_vqvae", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="captions dataset or datasets.scenes root")
    ap.add_argument("--out", required=True, help="output folder (the trained model is written here)")
    ap.add_argument("--size", type=int, default=128, help="image side (default 128)")
    ap.add_argument("--steps", type=int, default=20000, help="training steps (default 20000)")
    ap.add_argument("--batch", type=int, default=32, help="images per step (default 32)")
    ap.add_argument("--lr", type=float, default=2e-4, help="peak learning rate (default 2e-4)")
    ap.add_argument("--lr-schedule", choices=("cosine", "constant"), default="cosine",
                    help="cosine: from --lr down to --lr/10 at --steps (default)")
    # architecture options default to None: see ARCHITECTURE
    ap.add_argument("--codebook-size", type=int, default=None, help="codes K (default 512)")
    ap.add_argument("--embed-dim", type=int, default=None, help="code vector width (default 64)")
    ap.add_argument("--channels", type=int, default=None, help="base conv channels (default 64)")
    ap.add_argument("--downsample", type=int, choices=(4, 8), default=None,
                    help="image side / token grid side: 128 px at 8 gives 16x16 tokens (default 8)")
    ap.add_argument("--quantizer", choices=("ema", "gumbel"), default=None,
                    help="EMA codebook with dead-code restarts, or Gumbel-softmax (default ema)")
    ap.add_argument("--loss", choices=("l1+mse", "mse"), default="l1+mse",
                    help="reconstruction loss; mse is what PSNR measures (default l1+mse)")
    ap.add_argument("--init", metavar="DIR", help="start from this saved VQ-VAE (its architecture wins)")
    ap.add_argument("--decoder-only", action="store_true",
                    help="with --init: train the decoder alone on the frozen encoder and codebook, "
                         "so every image keeps its tokens")
    ap.add_argument("--restart-after", type=int, default=None,
                    help="re-seed a code unused for this many steps (0: never)")
    ap.add_argument("--gan-weight", type=float, default=0.0, help="patch-GAN weight (0: off)")
    ap.add_argument("--gan-start", type=int, default=5000, help="step at which the GAN term starts")
    ap.add_argument("--val-every", type=int, default=500, help="steps between val PSNR and code usage (default 500)")
    ap.add_argument("--val-images", type=int, default=256, help="val images measured (default 256)")
    ap.add_argument("--ckpt-every", type=int, default=1000, help="steps between checkpoints (default 1000)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the weights and batches (default 0)")
    ap.add_argument("--device", type=gendet_env.device_arg, default=None,
                    help="cpu, cuda, cuda:1 (default: cuda when available)")
    ap.add_argument("--precision", choices=PRECISIONS, default="auto",
                    help="bf16 autocast or float32; auto: bf16 where the GPU or CPU has native bf16 "
                         "(2.3-3.3x faster at 128 px on an AVX512-BF16 CPU), else fp32")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint, bit for bit")
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads for torch (0: torch's default; 1 is much faster on a busy machine)")
    ap.add_argument("--time-limit", type=float, default=None, metavar="MIN",
                    help="stop after this many minutes: evaluate, checkpoint and save the model at that step")
    ap.add_argument("--schedule-by-time", action="store_true",
                    help="with --time-limit: the lr cosine follows the time used too (whichever of steps and "
                         "time is further along), so the run ends on its low lr wherever the clock stops it")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    out = Path(args.out)
    for problem in (out_folder_problem(out, "--out"), number_problems(args)):
        if problem:
            ap.error(problem)
    if args.schedule_by_time and not args.time_limit:
        ap.error("--schedule-by-time needs --time-limit")
    if args.decoder_only and not (args.init or args.resume):
        ap.error("--decoder-only needs --init DIR (the trained VQ-VAE whose decoder to fine-tune)")
    made = not out.exists()
    try:
        with gendet_env.held(out, "train_vqvae"):  # a second run into the same folder is refused
            recover_checkpoint(out)
            problem = run_folder_problem(out, args.resume, "train_vqvae", RUN_FILES,
                                         trained=("checkpoint", "model.safetensors"))
            if problem:
                ap.error(problem)
            metrics = train(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        if made and not isinstance(e, gendet_env.FolderBusy) and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a run that failed before writing anything leaves no empty folder
        return 2
    except KeyboardInterrupt as e:
        print(f"\n{interrupted(Path(args.out), args.ckpt_every, getattr(e, 'step', None))}", file=sys.stderr)
        return 130
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
