"""Boxes, labels and confidences drawn on an image (PIL), for predict, the report and the app."""

from __future__ import annotations

from typing import Iterable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

COLORS = {"cat": (255, 64, 64), "dog": (64, 128, 255), "face": (255, 200, 0)}
FALLBACK = [(0, 200, 120), (200, 0, 200), (0, 200, 200), (240, 120, 0)]


def color_for(label: str) -> tuple[int, int, int]:
    return COLORS.get(label, FALLBACK[sum(map(ord, label)) % len(FALLBACK)])


def draw_detections(image, detections: Iterable, width: int | None = None) -> Image.Image:
    """A copy of `image` (PIL or HxWx3 uint8) with each detection's box and "label 0.87".
    Detections are objects or dicts with label, confidence and box (x1, y1, x2, y2)."""
    pil = image.convert("RGB").copy() if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image)).convert("RGB")
    draw = ImageDraw.Draw(pil)
    line = width or max(1, round(min(pil.size) / 100))
    font = ImageFont.load_default(size=max(10, min(pil.size) // 14))
    for d in detections:
        get = d.get if isinstance(d, dict) else (lambda k: getattr(d, k))
        label, conf, (x1, y1, x2, y2) = get("label"), float(get("confidence")), get("box")
        color = color_for(label)
        draw.rectangle((x1, y1, x2, y2), outline=color, width=line)
        text = f"{label} {conf:.2f}"
        tx, ty = x1, max(0, y1 - font.size - 2)
        box = draw.textbbox((tx, ty), text, font=font)
        draw.rectangle(box, fill=color)
        draw.text((tx, ty), text, fill=(0, 0, 0), font=font)
    return pil
