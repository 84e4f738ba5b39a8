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
    drawn = []  # (text, box, colour): every box first, then the labels over them
    for d in detections:
        get = d.get if isinstance(d, dict) else (lambda k: getattr(d, k))
        label, conf, box = get("label"), float(get("confidence")), tuple(map(float, get("box")))
        drawn.append((f"{label} {conf:.2f}", box, color_for(label)))
        draw.rectangle(box, outline=drawn[-1][2], width=line)
    placed = []
    for text, box, color in drawn:
        w, h = _text_size(draw, text, font)
        spot = label_spot(box, (w, h), pil.size, placed, [b for _, b, _ in drawn])
        placed.append((spot[0], spot[1], spot[0] + w, spot[1] + h))
        draw.rectangle(placed[-1], fill=color)
        draw.text((spot[0] + 1, spot[1]), text, fill=(0, 0, 0), font=font)
    return pil


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    x1, y1, x2, y2 = draw.textbbox((0, 0), text, font=font)
    return x2 + 2, y2 + 2  # a pixel of margin on each side


def label_spot(box, size, image_size, placed, boxes=()) -> tuple[int, int]:
    """Where a label of `size` (w, h) goes for `box`: above its top-left corner, inside it, below
    it, inside its bottom, or at its right edge above or below; kept inside the image. The spot
    chosen covers least: other labels already `placed` (two labels on each other could not be
    read) weigh most, then the share of each box in `boxes` it hides (a label over a small box hid
    it), then the order above, so a free spot above the box wins."""
    (x1, y1, x2, y2), (w, h), (W, H) = box, size, image_size

    def inside(x, y):  # moved into the image: a label past an edge moves in
        return int(min(max(0, x), max(0, W - w))), int(min(max(0, y), max(0, H - h)))

    candidates = [inside(x, y) for x, y in ((x1, y1 - h), (x1, y1), (x1, y2), (x1, y2 - h),
                                            (x2 - w, y1 - h), (x2 - w, y2))]

    def overlap(spot, rect):
        sx, sy = spot
        return max(0, min(sx + w, rect[2]) - max(sx, rect[0])) * max(0, min(sy + h, rect[3]) - max(sy, rect[1]))

    def cost(k):
        spot = candidates[k]
        labels = sum(overlap(spot, p) for p in placed) / (w * h)
        hidden = sum(overlap(spot, b) / max(1.0, (b[2] - b[0]) * (b[3] - b[1])) for b in boxes)
        return 4 * labels + hidden + 0.1 * k

    return candidates[min(range(len(candidates)), key=cost)]
