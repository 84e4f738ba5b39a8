"""Make this process offline-safe. Import first, before ultralytics or transformers.

Every entry point (CLIs, the app, tests/conftest.py) imports this module. It
sets the offline variables with setdefault (a caller may still override
them), keeps every cache inside the project, and gives ultralytics a local
font so its `check_font` never reaches for the network.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("GENDET_CACHE", ROOT / ".cache"))

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


for _var in ("YOLO_CONFIG_DIR", "MPLCONFIGDIR", "HF_HOME"):
    Path(os.environ[_var]).mkdir(parents=True, exist_ok=True)
seed_fonts()

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
