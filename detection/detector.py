"""Load a trained gendet detector and run it on images, offline.

    from detection.detector import Detector
    det = Detector.load("runs/catdog-v1/best.pt")        # cuda:0 when available, else cpu
    det.names                                             # ['cat', 'dog']
    det.card["mAP50-95"]                                  # from metrics.json next to the weights
    results = det.detect([pil_image, rgb_uint8_array, ...])
    results[0][0].label, results[0][0].box                # 'cat', (x1, y1, x2, y2) in input pixels
    results[0].to_json()

Inputs (one call may mix sizes): RGB numpy arrays HxWx3 uint8 (HxW grayscale and
HxWx4 RGBA are accepted; float arrays in [0, 1] too), PIL images in any mode
(converted to RGB), float torch tensors [B,3,H,W] or [3,H,W] in [0, 1]. Every
image is converted to a BGR uint8 array (what ultralytics expects from numpy;
a tensor given straight to ultralytics would skip its letterbox and need sides
divisible by 32), so boxes always come back in the input's own pixels.
"""

from __future__ import annotations

import gendet_env  # noqa: F401

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from datasets.images import as_seen
from detection._common import UsageError, check_local_weights, names_list, quiet_ultralytics


@dataclass(frozen=True)
class Detection:
    label: str
    confidence: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in input pixels
    class_id: int

    def to_dict(self) -> dict:
        return {"label": self.label, "confidence": round(float(self.confidence), 5),
                "box": [round(float(v), 2) for v in self.box], "class_id": int(self.class_id)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


@dataclass
class Detections:
    """The detections in one image (a small list: len(), iteration, indexing)."""

    items: list[Detection] = field(default_factory=list)
    width: int = 0
    height: int = 0

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Detection]:
        return iter(self.items)

    def __getitem__(self, i):
        return self.items[i]

    @property
    def labels(self) -> list[str]:
        return [d.label for d in self.items]

    def count(self, label: str) -> int:
        return sum(d.label == label for d in self.items)

    def to_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "detections": [d.to_dict() for d in self.items]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def default_device() -> str:
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def to_rgb_uint8(image: Any) -> np.ndarray:
    """One image (numpy, PIL or a [3,H,W] tensor) as an HxWx3 uint8 RGB array."""
    from PIL import Image

    if isinstance(image, Image.Image):  # as predict, the app and the generator read a file
        return np.asarray(as_seen(image), dtype=np.uint8)
    if _is_tensor(image):
        t = image.detach()
        if t.ndim != 3 or t.shape[0] not in (1, 3):
            raise UsageError(f"expected a [3,H,W] image tensor, got shape {tuple(t.shape)}")
        if t.is_floating_point():
            t = (t.float().clamp(0, 1) * 255).round()
        arr = t.to("cpu").to(dtype=__import__("torch").uint8).permute(1, 2, 0).numpy()
        return np.ascontiguousarray(np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr)
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[..., 0]
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise UsageError(f"expected an HxWx3 RGB image array, got shape {arr.shape}")
        arr = arr[..., :3]
        if arr.dtype != np.uint8:
            if np.issubdtype(arr.dtype, np.floating):
                if arr.size and np.nanmax(arr) > 1.0 + 1e-6:  # 0-255 floats clipped to a white image
                    raise UsageError(f"a float image array holds values up to {np.nanmax(arr):g}: floats are "
                                     "read in [0, 1] (give uint8 for 0-255)")
                arr = (np.clip(arr, 0, 1) * 255).round()
            elif arr.size and arr.max() > 255:  # 16-bit: stretched by its brightest value, as a 16-bit file
                arr = np.asarray(arr, dtype=np.float64) / arr.max() * 255
            arr = np.clip(arr, 0, 255).round().astype(np.uint8)
        return np.ascontiguousarray(arr)
    raise UsageError(f"unsupported image type {type(image).__name__} (numpy HxWx3 uint8 RGB, PIL image, "
                     "or float torch tensor [B,3,H,W] in [0, 1])")


def _is_tensor(x) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def as_image_list(images: Any) -> list[np.ndarray]:
    """Normalise the accepted inputs to a list of HxWx3 uint8 RGB arrays."""
    from PIL import Image

    if images is None:
        raise ValueError("detect() needs at least one image; got None")
    if _is_tensor(images):
        if images.ndim == 3:
            images = [images]
        elif images.ndim == 4:
            images = list(images)
        else:
            raise UsageError(f"expected a [B,3,H,W] float tensor, got shape {tuple(images.shape)}")
    elif isinstance(images, np.ndarray):
        images = list(images) if images.ndim == 4 else [images]
    elif isinstance(images, Image.Image):
        images = [images]
    elif not isinstance(images, Sequence):
        images = list(images)
    if len(images) == 0:
        raise ValueError("detect() got an empty list of images; pass at least one image")
    out = []
    for i, im in enumerate(images):
        try:
            arr = to_rgb_uint8(im)
        except UsageError as e:
            raise UsageError(f"image {i}: {e}") from None
        if arr.shape[0] < 1 or arr.shape[1] < 1:
            raise UsageError(f"image {i}: empty image of shape {arr.shape}")
        out.append(arr)
    return out


class Detector:
    """A YOLO detector loaded from a local .pt, with gendet's class names and model card."""

    def __init__(self, model, weights: Path, device: str, card: dict):
        self.model = model
        self.weights = weights
        self.device = device
        self.card = card
        self.names: list[str] = names_list(model.names)
        args = getattr(model, "overrides", {}) or {}
        self.imgsz = int(card.get("imgsz") or args.get("imgsz") or 640)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None, verbose: bool = False) -> "Detector":
        weights = check_local_weights(path)
        quiet_ultralytics(verbose)
        from ultralytics import YOLO

        try:
            model = YOLO(str(weights), task="detect")
        except Exception as e:
            raise UsageError(f"{path}: not a loadable YOLO checkpoint ({type(e).__name__}: {e})") from None
        if model.task != "detect":
            raise UsageError(f"{path}: a {model.task!r} model, expected a detection model")
        device = device or default_device()
        return cls(model, weights, str(device), load_card(weights, model))

    def detect(self, images, conf: float | None = None, iou: float | None = None, imgsz: int | None = None,
               max_det: int = 300, batch: int = 16) -> list[Detections]:
        """Detect objects in each image; boxes are (x1, y1, x2, y2) in that image's own pixels."""
        arrays = as_image_list(images)
        conf = 0.25 if conf is None else float(conf)
        iou = 0.7 if iou is None else float(iou)
        imgsz = int(imgsz or self.imgsz)
        out: list[Detections | None] = [None] * len(arrays)
        import torch

        # batches of one size: ultralytics pads a batch of mixed sizes to a square, and an image's
        # boxes would then depend on the other files given with it
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, a in enumerate(arrays):
            by_size.setdefault(a.shape[:2], []).append(i)
        chunks = [idx[k:k + batch] for idx in by_size.values() for k in range(0, len(idx), batch)]
        # ultralytics' select_device sets torch's global thread count to cpu_count - 1 on CPU: on a
        # 2-core machine the generator sharing this process would then sample on one thread
        threads = torch.get_num_threads()
        try:
            for chunk in chunks:
                bgr = [np.ascontiguousarray(arrays[i][..., ::-1]) for i in chunk]  # ultralytics reads numpy as BGR
                results = self.model.predict(bgr, conf=conf, iou=iou, imgsz=imgsz, device=_ul_device(self.device),
                                             max_det=max_det, verbose=False, save=False)
                for i, r in zip(chunk, results):
                    out[i] = self._to_detections(r, arrays[i].shape[1], arrays[i].shape[0])
        finally:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
        return out

    def _to_detections(self, result, width: int, height: int) -> Detections:
        items = []
        boxes = result.boxes
        if boxes is not None and len(boxes):
            xyxy = boxes.xyxy.cpu().numpy().astype(float)
            confs = boxes.conf.cpu().numpy().astype(float)
            classes = boxes.cls.cpu().numpy().astype(int)
            order = np.argsort(-confs, kind="stable")
            for i in order:
                x1, y1, x2, y2 = (float(v) for v in xyxy[i])
                c = int(classes[i])
                label = self.names[c] if 0 <= c < len(self.names) else str(c)
                items.append(Detection(label, float(confs[i]), (x1, y1, x2, y2), c))
        return Detections(items, width, height)

    def __repr__(self) -> str:
        return f"Detector({str(self.weights)!r}, names={self.names}, device={self.device!r}, imgsz={self.imgsz})"


def _ul_device(device: str):
    d = str(device).lower()
    return d.replace("cuda:", "") if d.startswith("cuda") else d


def load_card(weights: Path, model=None) -> dict:
    """metrics.json (and README.md text) next to the weights, else what the checkpoint itself records.
    A bundle holding several detectors keeps each one's metrics as `<name>.metrics.json`."""
    card: dict = {}
    metrics = weights.with_suffix(".metrics.json")
    in_bundle = metrics.is_file()  # then README.md beside it is the bundle's card, not this detector's
    if not in_bundle:
        metrics = weights.parent / "metrics.json"
    if metrics.is_file():
        try:
            card.update(json.loads(metrics.read_text()))
        except json.JSONDecodeError:
            pass
    readme = weights.parent / "README.md"
    if readme.is_file() and not in_bundle:
        card["readme"] = readme.read_text()
    if model is not None:
        card.setdefault("names", names_list(model.names))
        ckpt = getattr(model, "ckpt", None) or {}
        args = ckpt.get("train_args") or {}
        if args.get("imgsz"):
            card.setdefault("imgsz", args["imgsz"])
        for key in ("date", "version"):
            if ckpt.get(key):
                card.setdefault("checkpoint_" + key, ckpt[key])
    card["weights"] = str(weights)
    return card
