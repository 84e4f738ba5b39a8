"""Captions dataset loading (format: datasets/FORMATS.md, "A captions dataset").

``DIR/captions.jsonl`` rows: ``{"image": "images/train/000000.png", "split": "train",
"captions": ["two black cats", ...]}``; image paths are relative to DIR; a row
without ``split`` counts as ``train``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from datasets.augment import apply, generation_transforms
from datasets.convert.common import MAX_CAPTION
from datasets.images import as_seen, open_as_seen, rgb_uint8


def read_captions(root: str | Path, split: str | None = None, need_captions: bool = False) -> list[dict]:
    """Rows of ROOT/captions.jsonl (optionally one split), in file order, checked: a row the
    format does not allow is an error naming the file and line. A row may leave out its captions
    (a VQ-VAE trains on the images alone) unless `need_captions`."""
    path = Path(root) / "captions.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no captions.jsonl in {root}")
    rows = []
    with open(path, encoding="utf-8-sig") as fh:  # -sig: a byte-order mark (Notepad's) is not text
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not a JSON row ({e.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("image"), str) or not row["image"]:
                raise ValueError(f"{path}:{n}: a row is an object with an 'image' path")
            row.setdefault("split", "train")
            if row["split"] not in ("train", "val"):  # any other value dropped the row from both
                raise ValueError(f"{path}:{n}: 'split' must be train or val, got {row['split']!r}")
            caps = row.setdefault("captions", [])
            if isinstance(caps, str):
                caps = row["captions"] = [caps]
            if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
                raise ValueError(f"{path}:{n}: 'captions' must be a list of strings, got {caps!r}")
            long = next((c for c in caps if len(c) > MAX_CAPTION), None)
            if long is not None:
                raise ValueError(f"{path}:{n}: a caption of {len(long):,} characters; captions are at most "
                                 f"{MAX_CAPTION:,}")
            if any(not c.strip() for c in caps):
                raise ValueError(f"{path}:{n}: caption {next(k for k, c in enumerate(caps, 1) if not c.strip())} "
                                 "is empty")
            if need_captions and not caps:
                raise ValueError(f"{path}:{n}: {row['image']} has no captions (the generator learns from them)")
            if split is None or row["split"] == split:
                rows.append(row)
    return rows


def open_image_file(path: str | Path, background: str = "white") -> Image.Image:
    """An image file as a person sees it (datasets.images), or a ValueError naming the file."""
    try:
        return open_as_seen(path, background)
    except Exception as e:  # noqa: BLE001 - PIL raises many types (and ultralytics patches Image.open)
        raise ValueError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None


def load_image(path: str | Path, size: int | None = None, transform=None) -> torch.Tensor:
    """RGB image file -> float tensor [3, H, W] in [0, 1], as a person sees the file (upright by
    its EXIF orientation, transparency on white); `size` and `transform` as in image_tensor."""
    return image_tensor(np.asarray(open_image_file(path), dtype=np.uint8), size, transform)


def image_tensor(image, size: int | None = None, transform=None) -> torch.Tensor:
    """A PIL image or an HxWx3 uint8 array -> float tensor [3, H, W] in [0, 1]. With `size`:
    shortest side resized to size and a centre crop (datasets.augment.generation_transforms: never
    flips, because captions say "left" and "right"); `transform` replaces that pipeline."""
    arr = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.uint8)
    if transform is None and size is not None and arr.shape[:2] != (size, size):
        transform = generation_transforms(size)
    if transform is not None:
        arr = apply(transform, arr)[0]
    return torch.from_numpy(np.array(arr)).permute(2, 0, 1).float().div_(255.0)


def edit_inputs(size: int, image=None, mask=None) -> dict:
    """TextToImage's `init_image` and `inpaint_mask` from an image and a mask (files, PIL images,
    arrays or tensors, as `datasets.images.rgb_uint8` reads them) of one size, each cut to the same
    centre square of `size` px; the mask's white (over half grey) is redrawn, and its transparent
    parts are not (read on black). A mask without white is an error: it would redraw nothing."""
    def opened(x, background="white"):
        if isinstance(x, (str, Path)):
            return open_image_file(x, background)
        if isinstance(x, Image.Image):
            return as_seen(x, background)
        return Image.fromarray(rgb_uint8(x))  # a float [0, 1] array was cast to uint8: black

    def dims(x):
        return x.size if isinstance(x, Image.Image) else (np.asarray(x).shape[1], np.asarray(x).shape[0])

    image = None if image is None else opened(image)
    mask_name = mask if isinstance(mask, (str, Path)) else "the mask"
    mask = None if mask is None else opened(mask, "black")
    if image is not None and mask is not None and dims(image) != dims(mask):
        (w, h), (mw, mh) = dims(image), dims(mask)  # each is cut to its own centre square: they would not line up
        raise ValueError(f"{mask_name}: {mw}x{mh}, but the image is {w}x{h}; give a mask of the image's size")
    out = {}
    if image is not None:
        out["init_image"] = image_tensor(image, size)
    if mask is not None:
        out["inpaint_mask"] = image_tensor(mask, size).mean(0) >= 0.5
        if not out["inpaint_mask"].any():
            raise ValueError(f"{mask_name}: no white pixel (white = redraw): nothing to inpaint")
    return out


class CaptionImageDataset(Dataset):
    """(image [3, size, size] float in [0, 1], list of captions) per row of one split.
    augment=True: random crops and a light brightness/contrast change (never flips or hue)."""

    def __init__(self, root: str | Path, split: str = "train", size: int = 128, augment: bool = False):
        self.root = Path(root)
        self.split = split
        self.size = size
        self.rows = read_captions(self.root, split, need_captions=True)
        if not self.rows:
            raise ValueError(f"{self.root}/captions.jsonl has no rows for split {split!r}")
        self.transform = generation_transforms(size, random_crop=augment, color_jitter=augment)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        row = self.rows[i]
        return load_image(self.root / row["image"], self.size, self.transform), list(row["captions"])

    @property
    def captions(self) -> list[list[str]]:
        return [list(r["captions"]) for r in self.rows]


def collate_captions(batch):
    """DataLoader collate: (images [B, 3, H, W], list of caption lists) — keeps captions as lists."""
    images, captions = zip(*batch)
    return torch.stack(images), [list(c) for c in captions]
