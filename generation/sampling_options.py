"""The sampling options every command that samples takes (generation.sample, evaluation.run,
evaluation.checked), and their range checks; no torch here, so --help and a typo answer at once."""

from __future__ import annotations

import argparse
import math
import operator
import unicodedata


def whole(value) -> int | None:
    """An integer given as any integer type (int, numpy, a 0-d tensor) or a float with nothing after
    the point (2.0), else None. True and "2" are not taken for numbers (purity='no' once ran as on)."""
    if isinstance(value, (bool, str, bytes)):
        return None
    try:
        return operator.index(value)
    except TypeError:
        pass
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return int(f) if f.is_integer() else None


def finite_number(value) -> bool:
    """Whether `value` is a finite number of any numeric type (not a bool or a string)."""
    if isinstance(value, (bool, str, bytes)):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def clean_prompt(prompt: str) -> str:
    """A prompt as meant: without a leading UTF-8 BOM (a file saved by Windows Notepad, read with
    `$(cat prompt.txt)`: "\\ufefftwo cats" was not a prompt the judge reads) or the spaces, CR and
    newline around it. Every CLI and suite reads prompts through it, so a run records the same text."""
    return prompt.strip().lstrip("\ufeff").strip()


def text_problem(prompt: str) -> str | None:
    """Why a prompt is not text a run can keep, or None: a lone surrogate (argv bytes that were not
    UTF-8: the tokenizer failed mid-run), or a control character such as NUL (written raw into
    results.jsonl, PNG text and report.html)."""
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError:
        return f"{prompt!r:.60} is not valid text (a lone surrogate: bytes that were not UTF-8?)"
    bad = next((c for c in prompt if unicodedata.category(c) == "Cc" and c not in "\t\n\r"), None)
    if bad is not None:
        return f"{prompt!r:.60} holds the control character U+{ord(bad):04X}"
    return None


def check_settings(steps: int | None = None, truncation: float | None = None, guidance: float | None = None) -> None:
    """Raise ValueError naming a sampling setting out of range; None (the model's default) passes.
    The CLIs call it before loading a model, the pipeline on every call."""
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if truncation is not None and not 0 < truncation <= 1:
        raise ValueError(f"truncation must be in (0, 1], got {truncation}")
    if guidance is not None and not (math.isfinite(guidance) and guidance >= 0):  # NaN passed a `< 0` test
        raise ValueError(f"guidance must be >= 0 (1 = off), got {guidance}")


def add_sampling_options(ap: argparse.ArgumentParser) -> None:
    """--steps, --guidance, --truncation and --purity, for every command that samples; unset, the model's."""
    ap.add_argument("--steps", type=int, default=None, help="denoiser calls (default: the model's)")
    ap.add_argument("--guidance", type=float, default=None,
                    help="classifier-free guidance scale; 1 = off (default: the model's)")
    ap.add_argument("--truncation", type=float, default=None,
                    help="keep this top probability mass, in (0, 1] (default: the model's)")
    ap.add_argument("--purity", action=argparse.BooleanOptionalAction, default=None,
                    help="purity sampling: unmask the surest positions first (default: the model's)")


def sampling_settings(ap: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
    """The pipeline keywords of the options given (checked now, before any model loads: a typo fails
    at once); the others stay the model's own."""
    try:
        check_settings(args.steps, args.truncation, args.guidance)
    except ValueError as e:
        ap.error(f"--{e}")  # the message starts with the setting's name: here it is the option's
    given = {"steps": args.steps, "guidance_scale": args.guidance, "truncation": args.truncation,
             "purity": args.purity}
    return {k: v for k, v in given.items() if v is not None}


def describe_settings(settings: dict) -> str:
    """A GenerationOutput's settings in words: '50 steps, guidance 3, truncation 0.86, purity'
    (and what an edit started from), for captions and history."""
    parts = []
    if "steps" in settings:
        steps = int(settings["steps"])
        parts.append(f"{steps} step" + ("s" if steps != 1 else ""))
    if "guidance_scale" in settings:
        g = float(settings["guidance_scale"])
        parts.append("no guidance" if g == 1.0 else f"guidance {g:g}")
    if "truncation" in settings:
        r = float(settings["truncation"])
        parts.append("no truncation" if r == 1.0 else f"truncation {r:g}")
    if settings.get("purity"):
        parts.append("purity")
    if "init_image" in settings:
        how = (f"redrawn at strength {float(settings['filter_ratio']):g}" if "filter_ratio" in settings
               else "inpainted")
        where = f" inside {settings['mask']}" if "mask" in settings else ""
        parts.append(f"{settings['init_image']} {how}{where}")
    return ", ".join(parts)
