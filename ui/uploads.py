"""Uploaded files -> images, safely: corrupt files and non-images become messages, huge ones are
refused or downscaled before they can exhaust memory."""

import io

from PIL import Image

MAX_SIDE = 2048          # larger uploads are downscaled (detectors run at a few hundred pixels anyway)
MAX_PIXELS = 50_000_000  # refuse decompression bombs before decoding them


def open_image(data: bytes, name: str):
    """(RGB image, note) or (None, error message)."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            w, h = probe.size
            if w * h > MAX_PIXELS:
                return None, f"{name}: {w}x{h} is too large to open ({MAX_PIXELS // 1_000_000} MP at most)"
            image = probe.convert("RGB")
    except Exception:  # noqa: BLE001 - corrupt files, non-images: a message, never a traceback (PIL's
        # error, or ultralytics' patched open failing to import a HEIF plugin, says nothing to a user)
        return None, f"{name}: not a readable image (PNG, JPEG or WebP)"
    note = None
    if max(image.size) > MAX_SIDE:
        image.thumbnail((MAX_SIDE, MAX_SIDE))
        note = f"{name}: downscaled from {w}x{h} to {image.width}x{image.height}"
    return image, note


