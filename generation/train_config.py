"""generation.train's config: the YAML read, defaults filled in and every field checked before any
work, so a typo or an impossible number is one line naming the file and the field."""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path

import yaml

from generation.diffusion import MaskReplaceDiffusion
from generation.precision import PRECISIONS
from generation.transformer import TransformerConfig

TRAIN_DEFAULTS = dict(steps=1000, batch_size=32, lr=4.5e-4, weight_decay=0.01, warmup=100, grad_clip=1.0,
                      ema_decay=0.999, drop_text=0.1, seed=0, log_every=10, sample_every=500, val_every=250,
                      ckpt_every=250, val_batches=4, precision="auto")
# the train fields that count or space things out: whole numbers, at least this (sample_every 0: no grids)
TRAIN_AT_LEAST = dict(steps=1, batch_size=1, warmup=0, log_every=1, sample_every=0, val_every=1, ckpt_every=1,
                      val_batches=1)
# the numeric train fields: (lowest, highest) allowed
TRAIN_RANGE = dict(lr=(0, math.inf), weight_decay=(0, math.inf), grad_clip=(0, math.inf), ema_decay=(0, 1),
                   drop_text=(0, 1))


class ConfigError(ValueError):
    pass


def load_config(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder; give a YAML file (e.g. generation/configs/tiny.yaml)")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a YAML config (not UTF-8 text)") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(e)}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: a config is a mapping of fields (data: ..., vqvae: ..., out: ...), "
                          f"got {type(cfg).__name__}")
    unknown = set(cfg) - {"data", "vqvae", "init", "grow", "out", "image_size", "text", "transformer", "diffusion",
                          "train", "sample"}
    if unknown:
        raise ConfigError(f"{path}: unknown field(s) {', '.join(sorted(unknown))}")
    if "init" in cfg:  # fine-tuning: the model, its VQ-VAE and its shape all come from the saved pipeline
        init = Path(cfg["init"])
        if not (init / "pipeline.json").is_file():
            raise ConfigError(f"{path}: init {init} is not a saved text-to-image pipeline (no pipeline.json)")
        clash = sorted({"vqvae", "image_size", "text", "transformer", "diffusion"} & set(cfg))
        if clash:
            raise ConfigError(f"{path}: init {init} fixes the model; remove {', '.join(clash)}")
        grow = cfg.get("grow")
        if grow is not None and (not isinstance(grow, dict) or set(grow) != {"depth"}
                                 or type(grow["depth"]) is not int or grow["depth"] < 1):
            raise ConfigError(f"{path}: grow must be {{depth: N}} with N a positive whole number, got {grow!r}")
        cfg["vqvae"] = str(init / "vqvae")
        cfg["image_size"] = json.loads((init / "pipeline.json").read_text())["image_size"]
    elif "grow" in cfg:
        raise ConfigError(f"{path}: grow adds blocks to a trained model; it needs init")
    for key in ("data", "vqvae", "out"):
        if key not in cfg:
            raise ConfigError(f"{path}: missing field {key!r}")
    cfg["train"] = {**TRAIN_DEFAULTS, **(cfg.get("train") or {})}
    unknown = set(cfg["train"]) - set(TRAIN_DEFAULTS)
    if unknown:
        raise ConfigError(f"{path}: unknown train field(s) {', '.join(sorted(unknown))}")
    check_train_numbers(path, cfg["train"])
    if cfg["train"]["precision"] not in PRECISIONS:
        raise ConfigError(f"{path}: train.precision must be one of {', '.join(PRECISIONS)}, "
                          f"got {cfg['train']['precision']!r}")
    cfg.setdefault("image_size", 128)
    cfg.setdefault("text", {"kind": "scratch"})
    cfg.setdefault("transformer", {"preset": "demo"})
    cfg.setdefault("diffusion", {})
    cfg.setdefault("sample", {"prompts": ["a cat", "a dog", "a face", "two black cats"]}
                   | ({} if "init" in cfg else {"steps": 25, "guidance_scale": 3.0}))  # init keeps its own
    check_sample(path, cfg["sample"])
    if "init" not in cfg:
        check_model(path, cfg)
    return cfg


SAMPLE_FIELDS = {"prompts", "per_prompt", "steps", "guidance_scale", "truncation"}


def check_sample(path: Path, sample) -> None:
    """The sample section: its grids' prompts, and the sampling defaults the pipeline is saved with
    (a truncation of 1.5 trained to the end, then made every generation.sample of the model fail)."""
    if not isinstance(sample, dict):
        raise ConfigError(f"{path}: sample must be a mapping of fields, got {sample!r}")
    unknown = set(sample) - SAMPLE_FIELDS
    if unknown:
        raise ConfigError(f"{path}: unknown sample field(s) {', '.join(sorted(map(str, unknown)))}; "
                          f"known: {', '.join(sorted(SAMPLE_FIELDS))}")
    prompts = sample.get("prompts", ["a cat"])
    if not isinstance(prompts, list) or not prompts or not all(isinstance(x, str) and x.strip() for x in prompts):
        raise ConfigError(f"{path}: sample.prompts must be a list of prompts, got {prompts!r}")
    for key in ("per_prompt", "steps"):
        if key in sample and (type(sample[key]) is not int or sample[key] < 1):
            raise ConfigError(f"{path}: sample.{key} must be a whole number >= 1, got {sample[key]!r}")
    g = sample.get("guidance_scale", 1.0)
    if type(g) not in (int, float) or g < 0:  # as generation.sample's --guidance
        raise ConfigError(f"{path}: sample.guidance_scale must be a number >= 0 (1 = no guidance), got {g!r}")
    r = sample.get("truncation", 1.0)
    if type(r) not in (int, float) or not 0 < r <= 1:
        raise ConfigError(f"{path}: sample.truncation must be in (0, 1], got {r!r}")


def yaml_problem(e: yaml.YAMLError) -> str:
    """PyYAML's error in one line: its problem and where (its own text spans several lines)."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark else problem


def check_train_numbers(path: Path, tc: dict) -> None:
    """Each numeric train field in range, before any work: a negative step count ran nothing and
    claimed to have written a checkpoint; a value PyYAML read as text ("1e-3") failed mid-run."""
    for key, low in TRAIN_AT_LEAST.items():
        if type(tc[key]) is not int or tc[key] < low:
            raise ConfigError(f"{path}: train.{key} must be a whole number >= {low}, got {tc[key]!r}")
    for key, (low, high) in TRAIN_RANGE.items():
        if type(tc[key]) not in (int, float) or not low <= tc[key] <= high:
            limit = f">= {low}" if high == math.inf else f"from {low} to {high}"
            hint = " (YAML reads 1e-3 as text: write 0.001)" if isinstance(tc[key], str) else ""
            raise ConfigError(f"{path}: train.{key} must be a number {limit}, got {tc[key]!r}{hint}")


# the text encoder fields each kind takes (scratch: ScratchTextEncoder.train_new's sizes)
TEXT_FIELDS = {"scratch": {"vocab_size", "dim", "layers", "heads", "max_length"}, "clip": {"path"},
               "auto": {"path", "max_length"}}
# transformer fields that come from the VQ-VAE, the text encoder and the diffusion, not the config
DERIVED = {"num_classes", "h", "w", "text_dim", "diffusion_steps"}


def check_model(path: Path, cfg: dict) -> None:
    """The model the config describes, checked before the data is tokenised (minutes on a big set):
    a wrong shape is one line naming the file and the field, not a traceback after the wait."""
    if type(cfg["image_size"]) is not int or cfg["image_size"] < 1:
        raise ConfigError(f"{path}: image_size must be a whole number of pixels, got {cfg['image_size']!r}")
    for key in ("text", "transformer", "diffusion"):
        if not isinstance(cfg[key], dict):
            raise ConfigError(f"{path}: {key} must be a mapping of fields, got {cfg[key]!r}")
    check_text(path, cfg["text"])
    check_transformer(path, cfg["transformer"])
    steps = cfg["diffusion"].get("num_timesteps", 100)
    if type(steps) is not int or steps < 2:
        raise ConfigError(f"{path}: diffusion.num_timesteps must be a whole number >= 2, got {steps!r}")
    try:  # the schedule's own checks; 16 codes stand in for the VQ-VAE's, which it does not depend on
        MaskReplaceDiffusion(16, **cfg["diffusion"])
    except TypeError as e:  # an unknown field: "...() got an unexpected keyword argument 'x'"
        raise ConfigError(f"{path}: diffusion: {str(e).split('() ')[-1]}") from None
    except ValueError as e:
        raise ConfigError(f"{path}: diffusion: {e}") from None


def check_text(path: Path, section: dict) -> None:
    text = dict(section)
    kind = text.pop("kind", "scratch")
    if kind not in TEXT_FIELDS:
        raise ConfigError(f"{path}: text.kind must be scratch, clip or auto, got {kind!r}")
    unknown = set(text) - TEXT_FIELDS[kind]
    if unknown:
        raise ConfigError(f"{path}: text.kind {kind} takes {', '.join(sorted(TEXT_FIELDS[kind]))}; "
                          f"unknown: {', '.join(sorted(unknown))}")
    for key in sorted(set(text) - {"path"}):
        if type(text[key]) is not int or text[key] < 1:
            raise ConfigError(f"{path}: text.{key} must be a whole number >= 1, got {text[key]!r}")
    dim, heads = text.get("dim", 256), text.get("heads", 4)
    if kind == "scratch" and dim % heads:
        raise ConfigError(f"{path}: text.dim {dim} is not divisible by text.heads {heads}")
    if kind != "scratch" and not Path(str(text.get("path", ""))).is_dir():
        raise ConfigError(f"{path}: text.kind {kind} needs text.path, a local folder"
                          + (f"; {text['path']} is not one" if "path" in text else ""))


def check_transformer(path: Path, section: dict) -> None:
    tr = dict(section)
    preset = tr.pop("preset", None)
    derived = sorted(DERIVED & set(tr))
    if derived:
        raise ConfigError(f"{path}: transformer.{derived[0]} follows from the VQ-VAE, the text encoder and the "
                          "diffusion; remove it")
    unknown = sorted(set(tr) - {f.name for f in fields(TransformerConfig)})
    if unknown:
        raise ConfigError(f"{path}: unknown transformer field(s) {', '.join(unknown)}")
    for key, value in tr.items():
        expected = type(getattr(TransformerConfig, key))
        if type(value) is not expected and not (expected is float and type(value) is int):
            what = "a number" if expected is float else "a whole number" if expected is int else "text"
            raise ConfigError(f"{path}: transformer.{key} must be {what}, got {value!r}")
    try:
        config = TransformerConfig.preset(preset, **tr) if preset is not None else TransformerConfig(**tr)
    except KeyError as e:  # an unknown preset
        raise ConfigError(f"{path}: transformer: {e.args[0]}") from None
    except ValueError as e:  # width not divisible by heads, an unknown activation...
        raise ConfigError(f"{path}: transformer: {e}") from None
    for key in ("width", "depth", "heads", "mlp_ratio"):
        if getattr(config, key) < 1:
            raise ConfigError(f"{path}: transformer.{key} must be at least 1, got {getattr(config, key)}")
