"""An image as a person sees it: turned upright by its EXIF orientation (a phone photo), and
transparent parts on white (the colour hidden under them is arbitrary, often black). Every
reader of user images goes through here, so the generator trains on, edits and the app shows
the same picture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


# PIL's own decompression-bomb limit (179 MP), checked before decoding with a message that says so
# (a 108 MP phone photo must open; a 560 KB PNG of 12000 px squared decodes to 3.3 GB all the same)
MAX_PIXELS = 2 * Image.MAX_IMAGE_PIXELS


def open_as_seen(path, background: str = "white") -> Image.Image:
    """A file (or file-like) as_seen; PIL's errors pass through for the caller to name the file.
    An inpainting mask is read on black: its transparent parts are not painted, so not redrawn.
    An image over MAX_PIXELS is refused before its pixels are decoded (an OSError)."""
    with Image.open(path) as image:
        if image.width * image.height > MAX_PIXELS:
            raise OSError(f"{image.width}x{image.height} is too large to open ({MAX_PIXELS // 1_000_000} MP at most)")
        return as_seen(image, background)


def is_tensor(x) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def rgb_uint8(image: Any) -> np.ndarray:
    """One image as an HxWx3 uint8 RGB array, whatever form a caller holds it in: a file path or a
    PIL image (as_seen), a numpy array (HxW grey, HxWx3 RGB, HxWx4 RGBA; uint8, 16-bit stretched,
    or float in [0, 1]) or a torch tensor [3,H,W] (uint8, or float in [0, 1]). Floats far above 1 are
    refused: 0-255 floats clipped to [0, 1] would be a white image, judged without a word."""
    if isinstance(image, (str, Path)):
        try:
            return np.asarray(open_as_seen(Path(image).expanduser()), dtype=np.uint8)
        except Exception as e:  # noqa: BLE001 - missing, not an image, too large (PIL raises many types, and
            # ultralytics' patched Image.open a ModuleNotFoundError for a HEIF plugin)
            raise ValueError(f"{image}: cannot read the image ({e})") from None
    if isinstance(image, Image.Image):
        return np.asarray(as_seen(image), dtype=np.uint8)
    if is_tensor(image):
        t = image.detach()
        if t.ndim != 3 or t.shape[0] not in (1, 3):
            raise ValueError(f"expected a [3,H,W] image tensor, got shape {tuple(t.shape)}")
        t = t.to("cpu")
        if t.is_floating_point():  # numpy has no bfloat16
            t = t.float()
        image = t.permute(1, 2, 0).numpy()  # then read as the array it is
    if not isinstance(image, np.ndarray):
        raise ValueError(f"unsupported image type {type(image).__name__} (a file path, PIL image, numpy "
                         "HxWx3 RGB array, or torch tensor [3,H,W]; floats in [0, 1])")
    arr = image
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an HxWx3 RGB image array, got shape {arr.shape}")
    arr = arr[..., :3]
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            top = np.nanmax(arr) if arr.size else 0
            if top > 1.5:  # a decoder's overshoot is clipped; 0-255 floats are not
                raise ValueError(f"a float image holds values up to {top:g}: floats are read in [0, 1] "
                                 "(give uint8 for 0-255)")
            arr = (np.clip(np.nan_to_num(arr), 0, 1) * 255).round()
        elif arr.size and arr.max() > 255:  # 16-bit: stretched by its brightest value, as a 16-bit file
            arr = np.asarray(arr, dtype=np.float64) / arr.max() * 255
        arr = np.clip(arr, 0, 255).round().astype(np.uint8)
    return np.ascontiguousarray(arr)
