"""Generation settings inside PNG text chunks, so an image remembers how it was made.

    save_png(image, "cat.png", {"prompt": "a black cat", "seed": 3, "steps": 25, ...})
    read_settings("cat.png")  ->  {"prompt": "a black cat", "seed": 3, "steps": 25, ...}

Each setting is its own tEXt chunk under the key `gendet:<name>` (readable by any
PNG tool), and the whole dict also goes in one `gendet` chunk as JSON, which is
what `read_settings` trusts: values keep their types.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image, PngImagePlugin

from generation.files import atomic_write_bytes

KEY = "gendet"


def png_bytes(image: Image.Image, settings: dict) -> bytes:
    """The image as PNG bytes with the settings embedded (for downloads)."""
    info = PngImagePlugin.PngInfo()
    info.add_text(KEY, json.dumps(settings, sort_keys=True))
    for name, value in settings.items():
        info.add_text(f"{KEY}:{name}", value if isinstance(value, str) else json.dumps(value))
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def save_png(image: Image.Image, path: str | Path, settings: dict) -> Path:
    """Write atomically (temp file + rename): a crash never leaves half a PNG."""
    path = Path(path)
    atomic_write_bytes(png_bytes(image, settings), path)
    return path


def read_settings(source) -> dict:
    """Settings from a PNG path, bytes or file object; ValueError if it holds none."""
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    name = getattr(source, "name", None) or (source if isinstance(source, (str, Path)) else "the image")
    try:
        with Image.open(source) as im:
            # our chunk comes before the pixels: read without decoding them (a 12000 px square cost 565 MB)
            text = {k: v for k, v in im.info.items() if isinstance(v, str)}
            if KEY not in text and im.width * im.height <= 50_000_000:  # a chunk after the pixels (other tools)
                im.load()
                text = dict(getattr(im, "text", {}) or {})
    except Exception:  # noqa: BLE001 - PIL raises many types; ultralytics' patched open even ModuleNotFoundError
        raise ValueError(f"{name}: not a readable PNG") from None
    if KEY not in text:
        raise ValueError(f"{name}: no gendet settings in this image (it was not saved by gendet)")
    try:
        settings = json.loads(text[KEY])
    except json.JSONDecodeError as e:
        raise ValueError(f"{name}: the gendet settings chunk is not valid JSON ({e})") from None
    if not isinstance(settings, dict):
        raise ValueError(f"{name}: the gendet settings chunk is not a mapping")
    return settings
