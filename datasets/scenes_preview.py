"""A contact sheet of procedural scenes with their ground-truth boxes and first caption.

    python -m datasets.scenes_preview --out docs/scenes.png --rows 4 --cols 6 --size 128 --seed 0

Renders scenes straight from `datasets.scenes.render_scene` (nothing is written
but the sheet), so it is a quick way to see what a seed produces and to check
by eye that boxes sit on their objects.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from datasets.scenes import MIN_SIZE, render_scene

BOX_RGB = {"cat": (255, 64, 64), "dog": (64, 128, 255), "face": (255, 210, 0)}
CAPTION_H = 30
SUFFIXES = (".png", ".jpg", ".jpeg")


def contact_sheet(rows: int, cols: int, size: int = 128, seed: int = 0, start: int = 0,
                  boxes: bool = True) -> Image.Image:
    """Scenes start..start+rows*cols-1 in a grid, each with its first caption underneath."""
    font = ImageFont.load_default()
    cell_h = size + CAPTION_H
    sheet = Image.new("RGB", (cols * size, rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for k in range(rows * cols):
        image, objects, captions = render_scene(start + k, size, seed)
        x0, y0 = (k % cols) * size, (k // cols) * cell_h
        sheet.paste(image, (x0, y0))
        if boxes:
            for o in objects:
                x1, y1, x2, y2 = o["box"]  # exclusive x2/y2
                draw.rectangle((x0 + x1, y0 + y1, x0 + x2 - 1, y0 + y2 - 1), outline=BOX_RGB[o["label"]])
        lines = textwrap.wrap(captions[0], width=max(8, size // 6))[:2]
        draw.multiline_text((x0 + 2, y0 + size + 2), "\n".join(lines), fill="black", font=font, spacing=1)
    return sheet


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m datasets.scenes_preview",
                                 description="Draw a contact sheet of procedural scenes with boxes and captions.")
    ap.add_argument("--out", type=Path, required=True, help="image file to write (.png or .jpg)")
    ap.add_argument("--rows", type=int, default=4, help="rows of scenes (default 4)")
    ap.add_argument("--cols", type=int, default=6, help="scenes per row (default 6)")
    ap.add_argument("--size", type=int, default=128, help=f"scene side in pixels (>= {MIN_SIZE}, default 128)")
    ap.add_argument("--seed", type=int, default=0, help="the world's seed, as datasets.scenes --seed (default 0)")
    ap.add_argument("--start", type=int, default=0, help="first scene index (>= 0, default 0)")
    ap.add_argument("--no-boxes", action="store_true", help="images and captions only")
    args = ap.parse_args(argv)
    if args.rows < 1 or args.cols < 1:
        ap.error(f"--rows and --cols must be >= 1 (got {args.rows}, {args.cols})")
    if args.size < MIN_SIZE:  # as datasets.scenes --size
        ap.error(f"--size must be at least {MIN_SIZE} pixels (got {args.size})")
    for flag, value in (("--seed", args.seed), ("--start", args.start)):
        if value < 0:  # numpy's seed sequence takes no negative numbers
            ap.error(f"{flag} must be >= 0 (got {value})")
    if args.out.suffix.lower() not in SUFFIXES or args.out.is_dir():
        ap.error(f"--out must be an image file name ending in .png or .jpg (got {args.out})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(args.rows, args.cols, args.size, args.seed, args.start, not args.no_boxes).save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
