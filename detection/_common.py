"""Shared pieces of the detection package: task classes, user-facing errors, CLI runner."""

from __future__ import annotations

import gendet_env  # first: offline variables before anything imports ultralytics

import json
import re
import shlex
import sys
from pathlib import Path
from typing import Callable, Sequence

from datasets.convert.common import YOLO_SUFFIXES

#: class names per task, in YOLO class-id order (datasets/FORMATS.md).
TASKS: dict[str, list[str]] = {"catdog": ["cat", "dog"], "face": ["face"]}

IMAGE_SUFFIXES = set(YOLO_SUFFIXES)  # the files ultralytics lists in a folder

#: --model shortcuts for the demo bundle's detectors (models/demo/<name>.pt).
DEMO = gendet_env.ROOT / "models" / "demo"
BUNDLED = ("catdog", "face")


class UsageError(ValueError):
    """A problem with what the user passed (a file, a field, an argument).

    The CLIs print it as one line and exit with code 2; library callers get a
    ValueError subclass with the same message.
    """


class DataError(UsageError):
    """A dataset on disk does not follow datasets/FORMATS.md (message names the file and line)."""


class ModelFileError(UsageError, FileNotFoundError):
    """Weights that are not a usable local file."""


def task_for_names(names: Sequence[str]) -> str | None:
    """The task whose classes are exactly `names`, or None."""
    for task, task_names in TASKS.items():
        if list(names) == task_names:
            return task
    return None


def names_list(names) -> list[str]:
    """ultralytics keeps names as {id: name}; return them as a list in id order."""
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names)]
    return [str(n) for n in names]


def check_local_weights(path: str | Path) -> Path:
    """A local .pt file, or a ModelFileError that tells the user to pass one (no hub downloads)."""
    p = Path(path).expanduser()
    if p.suffix != ".pt":
        raise ModelFileError(f"{path}: expected a local .pt weights file")
    if p.is_dir():
        raise ModelFileError(f"{path}: a folder, not a .pt weights file")
    if not p.is_file():
        hint = (
            " (a bare hub name: ultralytics would download it, and gendet is offline)"
            if len(p.parts) == 1
            else ""
        )
        raise ModelFileError(f"{path}: no such file{hint}; pass a local file (a .pt written by detection.train)")
    return p


def resolve_model(model: str | Path) -> Path:
    """A detector .pt, or the name of a bundled demo detector (catdog, face)."""
    if str(model) in BUNDLED:
        path = DEMO / f"{model}.pt"
        if not path.is_file():
            raise UsageError(f"the demo {model} detector {path} is not built yet: run `make demo-models`, "
                             "or pass --model PATH.pt")
        return path
    if Path(model).suffix != ".pt":
        raise ModelFileError(f"{model}: expected a local .pt weights file, or {' / '.join(BUNDLED)} "
                             "for the demo bundle's detectors")
    return Path(model)


def out_folder(out: str | Path) -> Path:
    """--out as a folder path; refused up front when it names an existing file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: --out exists and is not a folder")
    return out


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name, "-m", _module_name()] + sys.argv[1:])


def _module_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return spec.name if spec is not None else Path(sys.argv[0]).stem


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    tmp.replace(path)


def _json_default(x):
    if hasattr(x, "item"):
        return x.item()
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def run_cli(main: Callable[..., int | None], argv: list[str] | None = None) -> None:
    """Run `main(argv)`: UsageError and friends become one line on stderr and exit code 2."""
    try:
        code = main(argv)
    except (UsageError, gendet_env.RunFolderError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except (FileNotFoundError, PermissionError, NotADirectoryError) as e:  # an input missing, an --out not writable
        print(f"error: {e.filename or ''}{': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    raise SystemExit(code or 0)


def quiet_ultralytics(verbose: bool) -> None:
    """Turn ultralytics' logger and progress bars on (CLIs) or off (library use)."""
    import logging

    ul = gendet_env.ultralytics()
    from ultralytics import utils as ul_utils

    ul_utils.VERBOSE = bool(verbose)  # read at call time by ultralytics.utils.tqdm
    level = logging.INFO if verbose else logging.ERROR
    ul_utils.LOGGER.setLevel(level)
    for handler in ul_utils.LOGGER.handlers:
        handler.setLevel(level)
    if not sys.stdout.isatty() and not any(isinstance(f, PlainText) for f in ul_utils.LOGGER.filters):
        ul_utils.LOGGER.addFilter(PlainText())  # a log file or pipe gets text, not colour codes
    return ul


class PlainText:
    """A logging filter that takes terminal colour codes out of a record's message: ultralytics
    colours its lines whatever the output is."""

    CODES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

    def filter(self, record) -> bool:
        if isinstance(record.msg, str):
            record.msg = self.CODES.sub("", record.msg)
        return True
