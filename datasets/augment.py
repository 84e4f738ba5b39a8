"""Box-aware augmentations (albumentations 2.x).

* :func:`detection_transforms` - for detector training: optional letterbox to ``imgsz``,
  horizontal flip, small affine, colour jitter, blur. Boxes follow the image; boxes
  less than ``min_visibility`` visible after the geometry are dropped with their labels.
* :func:`generation_transforms` - for the generator's image loader: resize + crop to
  ``size``. NO flips (captions say "left"/"right") and no colour change by default
  (captions name colours: "a black cat").
* :func:`apply` - run either on ``(image, boxes, labels)``; returns numpy arrays.

Boxes are ``yolo`` (normalised cx cy w h, as in the label files) by default, or
``pascal_voc`` (pixel x1 y1 x2 y2) with ``fmt="pascal_voc"``. The label field is
always named ``class_labels``.

albumentations checks PyPI for updates on import unless ``NO_ALBUMENTATIONS_UPDATE``
is set; this module sets it (setdefault) before importing, so gendet stays offline.
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from typing import Literal, Sequence  # noqa: E402

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["STRENGTHS", "PAD_FILL", "bbox_params", "detection_transforms", "generation_transforms", "apply",
           "ultralytics_augmentations"]

STRENGTHS = ("none", "light", "default")
PAD_FILL = (114, 114, 114)  # ultralytics' letterbox grey
BoxFormat = Literal["yolo", "pascal_voc"]


def bbox_params(fmt: BoxFormat = "yolo", min_visibility: float = 0.0) -> A.BboxParams:
    """BboxParams with ``class_labels`` as the label field. ``clip`` + ``filter_invalid_bboxes``
    make float noise at the border (a yolo edge at 1.0000001) harmless instead of an error."""
    if fmt not in ("yolo", "pascal_voc"):
        raise ValueError(f"fmt must be 'yolo' or 'pascal_voc', got {fmt!r}")
    return A.BboxParams(format=fmt, label_fields=["class_labels"], min_visibility=min_visibility,
                        clip=True, filter_invalid_bboxes=True)


def _letterbox(imgsz: int | None) -> list:
    if imgsz is None:
        return []
    return [
        A.LongestMaxSize(max_size=int(imgsz), interpolation=cv2.INTER_LINEAR),
        A.PadIfNeeded(min_height=int(imgsz), min_width=int(imgsz), position="center",
                      border_mode=cv2.BORDER_CONSTANT, fill=PAD_FILL),
    ]


def detection_transforms(imgsz: int | None, strength: str = "default", *, fmt: BoxFormat = "yolo",
                         min_visibility: float | None = None, hflip: float | None = None,
                         seed: int | None = None) -> A.Compose:
    """Detector training pipeline.

    imgsz: letterbox to imgsz x imgsz (longest side resized, centred, padded with grey 114);
        None keeps the input size (ultralytics letterboxes itself).
    strength: "none" (no augmentation: with imgsz=None an identity), "light" or "default".
    hflip: override the horizontal-flip probability (0.5 for light/default, 0 for none).
    min_visibility: drop boxes less visible than this after the geometry
        (default 0.0 for none, 0.3 otherwise).
    seed: seeds the Compose (reproducible draws).
    """
    if strength not in STRENGTHS:
        raise ValueError(f"strength must be one of {STRENGTHS}, got {strength!r}")
    fill = PAD_FILL
    aug: list = []
    if strength == "light":
        aug = [
            A.Affine(scale=(0.95, 1.05), translate_percent=(-0.03, 0.03), rotate=0.0,
                     border_mode=cv2.BORDER_CONSTANT, fill=fill, p=0.3),
            A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=0.3),
            A.HueSaturationValue(hue_shift_limit=3, sat_shift_limit=10, val_shift_limit=10, p=0.3),
        ]
    elif strength == "default":
        aug = [
            A.Affine(scale=(0.8, 1.2), translate_percent=(-0.1, 0.1), rotate=(-5.0, 5.0),
                     shear=(-2.0, 2.0), border_mode=cv2.BORDER_CONSTANT, fill=fill, p=0.5),
            A.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25, hue=0.02, p=0.5),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5), p=1.0),
                     A.MotionBlur(blur_limit=(3, 5), p=1.0)], p=0.1),
            A.ToGray(p=0.02),
        ]
    flip_p = hflip if hflip is not None else (0.0 if strength == "none" else 0.5)
    if flip_p > 0:
        aug.insert(0, A.HorizontalFlip(p=flip_p))
    if min_visibility is None:
        min_visibility = 0.0 if strength == "none" else 0.3
    transforms = _letterbox(imgsz) + aug or [A.NoOp(p=1.0)]  # NoOp: an empty Compose warns
    return A.Compose(transforms, bbox_params=bbox_params(fmt, min_visibility), seed=seed)


def generation_transforms(size: int, *, color_jitter: bool = False, random_crop: bool = False,
                          fmt: BoxFormat | None = None, seed: int | None = None) -> A.Compose:
    """The generator's image loader: shortest side -> ``size``, then a centre (or, with
    ``random_crop``, random) ``size`` x ``size`` crop. Never flips. ``color_jitter`` adds a
    light brightness/contrast change only (no hue/saturation: captions name colours).
    ``fmt`` attaches BboxParams when boxes should follow (e.g. objects.jsonl boxes)."""
    size = int(size)
    crop = A.RandomCrop(height=size, width=size) if random_crop else A.CenterCrop(height=size, width=size)
    transforms = [A.SmallestMaxSize(max_size=size, interpolation=cv2.INTER_AREA), crop]
    if color_jitter:
        transforms.append(A.RandomBrightnessContrast(brightness_limit=0.08, contrast_limit=0.08, p=0.5))
    params = bbox_params(fmt, 0.0) if fmt is not None else None
    return A.Compose(transforms, bbox_params=params, seed=seed)


def apply(transform: A.Compose, image, boxes: Sequence | np.ndarray | None = None,
          labels: Sequence | None = None) -> tuple[np.ndarray, np.ndarray, list]:
    """Run ``transform`` on an HxWxC uint8 image (numpy or PIL) with boxes in the
    transform's format and their labels. Returns (image, boxes float32 (N, 4), labels).
    Boxes dropped by the transform (pushed out, too little visible) are dropped with their
    labels. A transform without BboxParams accepts only ``boxes=None``/empty."""
    image = np.ascontiguousarray(np.asarray(image))
    boxes_arr = np.zeros((0, 4), np.float32) if boxes is None else np.asarray(boxes, np.float32).reshape(-1, 4)
    labels = [] if labels is None else list(labels)
    if len(labels) != len(boxes_arr):
        raise ValueError(f"{len(boxes_arr)} boxes but {len(labels)} labels")
    has_bbox = "bboxes" in getattr(transform, "processors", {})
    if not has_bbox:
        if len(boxes_arr):
            raise ValueError("this transform has no bbox_params: it cannot move boxes")
        return transform(image=image)["image"], boxes_arr, labels
    fmt = transform.processors["bboxes"].params.format
    if fmt in ("yolo", "albumentations") and len(boxes_arr) and boxes_arr.max() > 1.0 + 1e-6:
        # albumentations drops such boxes without a word: every box of a pixel-box call was lost
        raise ValueError(f"boxes must be in the transform's {fmt!r} format, normalised to [0, 1]; got values up to "
                         f"{boxes_arr.max():g} (pixel boxes? use bbox format 'pascal_voc')")
    # pass indices, map back: albumentations 2.x returns numeric labels as floats
    out = transform(image=image, bboxes=boxes_arr, class_labels=list(range(len(labels))))
    out_boxes = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
    return out["image"], out_boxes, [labels[int(i)] for i in out["class_labels"]]


def ultralytics_augmentations(mode: str = "default") -> list:
    """Pixel-level albumentations for detection.train, given to ultralytics' `augmentations=`
    (applied after its own mosaic / affine / HSV / flip, boxes untouched). "default" leans on
    blur, noise and JPEG artefacts because the detectors also judge decoded VQ-VAE images,
    which are softer and blockier than the training photos."""
    if mode not in STRENGTHS:
        raise ValueError(f"mode must be one of {STRENGTHS}, got {mode!r}")
    if mode == "none":
        return []
    if mode == "light":
        return [A.Blur(blur_limit=(3, 5), p=0.01), A.ToGray(p=0.01)]
    return [
        A.GaussianBlur(blur_limit=(3, 5), p=0.05),
        A.MedianBlur(blur_limit=3, p=0.02),
        A.GaussNoise(std_range=(0.01, 0.04), p=0.05),
        A.ImageCompression(quality_range=(60, 95), p=0.1),
        A.CLAHE(p=0.02),
        A.ToGray(p=0.02),
    ]
