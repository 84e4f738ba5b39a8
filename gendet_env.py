"""Make this process offline-safe. Import first, before ultralytics or transformers.

Every entry point (CLIs, the app, tests/conftest.py) imports this module. It
sets the offline variables with setdefault (a caller may still override
them), forces ultralytics' safe loading (no override: a detector file must
not run code), keeps every cache inside the project (or, in a checkout that
cannot be written, the user's), and gives ultralytics a local font so its
`check_font` never reaches for the network.

It also holds what every entry point shares about its process: paths as shown
(`shown_path`), device names (`check_device`), and the out folder a run holds
(`held`: one run at a time) or checks up front (`unwritable`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def _cache_folder() -> Path:
    """GENDET_CACHE when set; else the project's .cache/; else, for a checkout that cannot be written
    (a container image, a shared install: every command, --help too, failed at import), the
    user's cache folder, then the temporary folder."""
    import tempfile

    if os.environ.get("GENDET_CACHE"):
        return Path(os.environ["GENDET_CACHE"])
    candidates = [ROOT / ".cache"]
    try:
        candidates.append(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gendet")
    except RuntimeError:  # no home folder to be found
        pass
    shared = Path(tempfile.gettempdir()) / f"gendet-cache-{getattr(os, 'getuid', lambda: 'user')()}"
    candidates.append(shared)
    for folder in candidates:
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if folder == shared and hasattr(os, "getuid"):  # no planted configs: this user's own real folder
                st = os.lstat(folder)
                if stat.S_ISLNK(st.st_mode) or st.st_uid != os.getuid():
                    continue
                if st.st_mode & 0o077:
                    folder.chmod(0o700)  # one an older gendet made under a loose umask
            with tempfile.TemporaryFile(dir=folder):
                return folder
        except OSError:
            continue
    return candidates[0]  # none can be written: the error comes where a cache is used


CACHE = _cache_folder()

OFFLINE_VARS = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers 5 draws a bar for each (instant) local model load
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "False",
    "YOLO_VERBOSE": "False",
    "YOLO_CONFIG_DIR": str(CACHE / "yolo"),
    "MPLCONFIGDIR": str(CACHE / "mpl"),
    "HF_HOME": str(CACHE / "hf"),
    "TORCH_HOME": str(CACHE / "torch"),
    "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    "NO_ALBUMENTATIONS_UPDATE": "1",  # albumentations asks PyPI for a newer version on import
}
for _key, _value in OFFLINE_VARS.items():
    os.environ.setdefault(_key, _value)
# a detector .pt is a pickle, and a model YAML's `activation:` goes to eval: ultralytics' safe mode
# (weights_only against an allow-list of its own classes, models built without eval) is not a choice
os.environ["ULTRALYTICS_SAFE_LOAD"] = "1"

# ultralytics' USER_CONFIG_DIR is $YOLO_CONFIG_DIR/Ultralytics; check_font() looks there
# first and downloads from GitHub only when the file is missing.
FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")


def seed_fonts() -> list[Path]:
    """Copy matplotlib's DejaVuSans into ultralytics' config dir under the names it wants."""
    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    folder = Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in FONT_NAMES:
        target = folder / name
        if not target.exists():
            tmp = target.with_suffix(".tmp")  # atomic: a reader never sees half a font
            shutil.copyfile(source, tmp)
            tmp.replace(target)
        written.append(target)
    return written


_format_warning = warnings.formatwarning


class GendetWarning(UserWarning):
    """gendet's own warnings (a long prompt cut to the model's tokens): messages for the person at
    the terminal."""


def _user_warning_line(message, category, filename, lineno, line=None):
    """Ours print as one line, not the source line that raised them. Every other warning, a
    notebook user's own UserWarning included, keeps Python's format."""
    if issubclass(category, GendetWarning):
        return f"warning: {message}\n"
    return _format_warning(message, category, filename, lineno, line)


warnings.formatwarning = _user_warning_line

for _var, _make in (("MPLCONFIGDIR", None), ("HF_HOME", None), ("YOLO_CONFIG_DIR", seed_fonts)):
    try:
        Path(os.environ[_var]).mkdir(parents=True, exist_ok=True)
        if _make:
            _make()
    except OSError as _e:  # a variable set to a folder that cannot be written: said, not a traceback at import
        print(f"warning: {_var}={os.environ[_var]}: cannot write there ({_e.strerror or _e}); set it, or "
              "GENDET_CACHE, to a writable folder", file=sys.stderr)

_ULTRALYTICS_READY = False


def ultralytics():
    """Import ultralytics with sync (analytics) off and return the module."""
    global _ULTRALYTICS_READY
    import ultralytics as ul

    if not _ULTRALYTICS_READY:
        from ultralytics.utils import SETTINGS

        if SETTINGS.get("sync", True):
            SETTINGS.update({"sync": False})
        _ULTRALYTICS_READY = True
    return ul


def expand_user(path) -> Path:
    """`path` with ~ expanded, as a shell would; "~nobody/x", for a user that does not exist, stays as
    given (Path.expanduser raises RuntimeError for it)."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        return Path(path)


def shown_path(path) -> str:
    """A path as recorded in files people share (PNG settings): relative to the repository when it
    is inside it ("models/demo/generator", not the machine's absolute path), else as given."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(ROOT)) if p.is_absolute() else str(path)
    except ValueError:
        return str(path)


def check_device(value) -> str:
    """A device name checked against this machine: cpu, cuda, cuda:N, N (the Nth GPU, as cuda:N) or
    mps, lower-cased; a typo or a missing GPU is a ValueError in one clear line, not a traceback
    from deep inside torch or ultralytics at the first image."""
    v = str(value).strip().lower()
    if v == "cpu":
        return v
    if v.isdigit():
        v = f"cuda:{v}"
    if v != "mps" and v != "cuda" and not (v.startswith("cuda:") and v[5:].isdigit()):
        raise ValueError(f"{value!r} is not a device: use cpu, cuda, cuda:N or a GPU number")
    import torch  # only now: a plain cpu run and --help stay quick

    if v == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{value!r}: this machine has no Apple GPU (MPS); use cpu")
        return v
    if not torch.cuda.is_available():
        raise ValueError(f"{value!r}: CUDA is not available on this machine (torch {torch.__version__}); use cpu")
    count = torch.cuda.device_count()
    if v.startswith("cuda:") and int(v[5:]) >= count:
        raise ValueError(f"{value!r}: this machine has {count} GPU(s), numbered 0 to {count - 1}")
    return v


def device_arg(value: str) -> str:
    """argparse `type=` for every --device: check_device's message as argparse's."""
    import argparse

    try:
        return check_device(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


_HELD: set[int] = set()  # the folder locks this process holds (their descriptors)


def _drop_held_locks_in_child() -> None:
    """A forked child (a DataLoader or pool worker) shares its parent's lock through the inherited
    descriptor, and a worker that outlived the run kept the folder locked; the child lets go of its copy."""
    for fd in _HELD:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_held_locks_in_child)


class RunFolderError(ValueError):
    """The folder a run was given cannot take it: not writable, or another run is writing there.
    `reason` is the message without the folder's name, for a caller that names it its own way."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


class FolderBusy(RunFolderError):
    """Another process is writing the folder a run was given."""


@contextlib.contextmanager
def held(folder: Path, tool: str):
    """Hold `folder` (created if missing) for this run while it writes there. A second run into the
    same folder, from another terminal or a job started twice, is refused at once: two used to
    write side by side (every image counted twice, a log of both runs' rows, checkpoints torn).
    An OS lock (flock) on the folder itself: it adds no file, and a killed run holds nothing. A run
    that fails before writing anything takes away the folders it made."""
    folder = Path(folder)
    reason = unwritable_reason(folder)
    if reason:  # a clear line, not a PermissionError's traceback
        raise RunFolderError(f"out folder {folder}: {reason}", reason)
    made = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    folder.mkdir(parents=True, exist_ok=True)
    fd = _lock(folder, tool)
    try:
        yield
    except BaseException:
        for path in made:  # a run refused or failed before writing anything leaves no empty folders
            try:
                path.rmdir()
            except FileNotFoundError:  # the run took it away itself
                continue
            except OSError:  # not empty: it holds what the run wrote
                break
        raise
    finally:
        if fd in _HELD:  # not in a forked child that left the block: its copy is closed, the number maybe reused
            _HELD.discard(fd)
            os.close(fd)  # the lock goes with it


def _lock(folder: Path, tool: str) -> int | None:
    """An exclusive flock on the folder, its descriptor returned; None where there is no flock
    (Windows: runs are not guarded there)."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError as e:  # a folder that can be written but not read (mode -wx)
        return _unguarded(folder, e)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        reason = _busy(tool)
        raise FolderBusy(f"{folder}: {reason}", reason) from None
    except OSError as e:  # a file system without flock on folders (NFS, Lustre mounted noflock)
        os.close(fd)
        return _unguarded(folder, e)
    _HELD.add(fd)
    return fd


def _busy(tool: str) -> str:
    return (f"another run is writing there now (this {tool} run would mix its files with that one's); "
            "wait for it to end, or choose another out folder")


def busy_reason(folder: Path, tool: str) -> str | None:
    """Why `held(folder, tool)` would be refused now (another run holds the folder), or None: a probe,
    for saying so before other waits (the app's wait for the device). The run itself holds it later."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # missing, or not a folder: nobody holds it
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return _busy(tool)
    except OSError:  # no flock here: nothing to tell
        return None
    finally:
        os.close(fd)  # lets go of the probe's own lock, not another holder's
    return None


def _unguarded(folder: Path, e: OSError) -> None:
    warnings.warn(f"{folder}: cannot lock it ({e.strerror or e}); the run goes on, but a second run into the "
                  "same folder would not be refused", GendetWarning, stacklevel=4)


def unwritable(out, option: str = "--out") -> str | None:
    """Why `out` (a folder, made later if missing) cannot be written, or None; checked up front, so
    a run does not draw for a minute and then fail at its first file. Probed with a nameless
    temporary file in the deepest folder that exists: nothing is left behind."""
    reason = unwritable_reason(Path(out))
    return f"{option} {out}: {reason}" if reason else None


def unwritable_reason(out: Path) -> str | None:
    """unwritable's reason alone ("X is a file, not a folder"), for a caller that words the rest."""
    import tempfile

    for existing in (out, *out.parents):
        try:
            if existing.is_symlink() and not existing.exists():  # mkdir would say only "File exists"
                target = os.readlink(existing)
                try:
                    existing.resolve(strict=True)
                except RuntimeError:  # Python 3.11's word for a loop of links (3.13: OSError ELOOP)
                    return f"{existing} is a link in a loop of links ({target})"
                except OSError as e:
                    if e.errno == errno.ELOOP:
                        return f"{existing} is a link in a loop of links ({target})"
                return f"{existing} is a link to {target}, which does not exist"
            if existing.exists() or existing == existing.parent:
                break
        except OSError as e:  # inside a folder this user may not enter (another's home)
            return f"cannot reach {existing} ({e.strerror or e})"
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        return f"cannot write in {existing} ({e.strerror or e})"
    return None
