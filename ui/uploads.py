"""Uploaded files -> images, safely: corrupt files and non-images become messages, huge ones are
refused or downscaled before they can exhaust memory."""

import io

from PIL import Image

from datasets.images import as_seen, is_transparent

MAX_SIDE = 2048          # larger uploads are downscaled (detectors run at a few hundred pixels anyway)
MAX_PIXELS = 50_000_000  # refuse decompression bombs before decoding them
# what the uploaders take: the still formats PIL reads (an animated GIF or WebP gives its first frame)
IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff", "gif"]


def open_image(data: bytes, name: str, background: str = "white"):
    """(RGB image, note) or (None, error message). Transparent parts are put on white (the colour
    hidden under them is arbitrary); a photo is turned upright by its EXIF orientation, as viewers show
    it; image.info["original_size"] is the upload's (width, height) as shown, and "stored_size" the
    file's, where its orientation turned it."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            w, h = probe.size
            if w * h > MAX_PIXELS:
                return None, f"{name}: {w}x{h} is too large to open ({MAX_PIXELS // 1_000_000} MP at most)"
            transparent = is_transparent(probe)
            turned = probe.getexif().get(0x0112, 1) in range(2, 9)  # the orientations exif_transpose applies
            image = as_seen(probe, background)  # a phone photo upright, as every viewer shows it
            w, h = image.size
    except Exception:  # noqa: BLE001 - corrupt files, non-images: a message, never a traceback (PIL's
        # error, or ultralytics' patched open failing to import a HEIF plugin, says nothing to a user)
        return None, f"{name}: not a readable image (PNG, JPEG, WebP, BMP, TIFF or GIF)"
    notes = [f"{name}: transparent parts shown on {background}"] if transparent else []
    if max(image.size) > MAX_SIDE:
        image.thumbnail((MAX_SIDE, MAX_SIDE))
        notes.append(f"{name}: downscaled from {w}x{h} to {image.width}x{image.height}")
    image.info["original_size"] = (w, h)
    if turned:
        image.info["stored_size"] = probe.size
    return image, "; ".join(notes) or None


def mask_mismatch(image, mask, image_name: str, mask_name: str) -> str | None:
    """Why an opened mask does not fit its opened image, in the sizes uploaded, or None.
    (edit_inputs compares them after open_image's downscale: it quoted 2048x1536 of a 4000x3000
    upload.)"""
    size, mask_size = (x.info.get("original_size", x.size) for x in (image, mask))
    if size == mask_size and image.size == mask.size:
        return None
    return (f"{mask_name}: {mask_size[0]}x{mask_size[1]}, but the image {image_name} is {size[0]}x{size[1]}; "
            "give a mask of the image's size")


def boxes_caption(image) -> str:
    """Which pixels box_table's boxes are in: the upload's as shown, which are not the ones its file
    stores when its EXIF orientation turned it (it said "the 150x300 file" of a file of 300x150)."""
    w, h = image.info.get("original_size", image.size)
    if "stored_size" not in image.info:
        return f"Boxes in the pixels of the {w}x{h} file."
    sw, sh = image.info["stored_size"]
    return (f"Boxes in the pixels of the image as shown upright ({w}x{h}); the file stores {sw}x{sh}, turned by "
            "its EXIF orientation.")


def box_table(found, image) -> list[dict]:
    """Table rows for detections on an opened upload, boxes in the uploaded file's pixels (the
    detectors saw it downscaled when it was larger than MAX_SIDE). The header stays short: a long
    one was cut at the table's default column width."""
    w, h = image.info.get("original_size", image.size)
    scale = w / image.width
    return [{"label": d.label, "confidence": round(d.confidence, 3),
             "box x1, y1, x2, y2": ", ".join(f"{v * scale:.0f}" for v in d.box)} for d in found]
