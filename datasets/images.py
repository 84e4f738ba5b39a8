"""An image as a person sees it: turned upright by its EXIF orientation (a phone photo), and
transparent parts on white (the colour hidden under them is arbitrary, often black). Every
reader of user images goes through here, so the generator trains on, edits and the app shows
the same picture."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps


def is_transparent(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def as_seen(image: Image.Image, background: str = "white") -> Image.Image:
    """An opened image as RGB: upright, transparent parts on white, and 16- or 32-bit grey
    stretched to 8 bits by its brightest value (convert("RGB") clips them to 255: all white)."""
    transparent = is_transparent(image)
    upright = ImageOps.exif_transpose(image)
    if upright.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        grey = np.asarray(upright, dtype=np.float64)
        upright = Image.fromarray((grey / max(grey.max(), 1) * 255).round().astype(np.uint8))
    if transparent:
        rgba = upright.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, background), rgba).convert("RGB")
    return upright.convert("RGB")


def open_as_seen(path, background: str = "white") -> Image.Image:
    """A file (or file-like) as_seen; PIL's errors pass through for the caller to name the file.
    An inpainting mask is read on black: its transparent parts are not painted, so not redrawn."""
    with Image.open(path) as image:
        return as_seen(image, background)
