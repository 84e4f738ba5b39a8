"""Load a trained gendet detector and run it on images, offline.

    from detection.detector import Detector
    det = Detector.load("runs/catdog-v1/best.pt")        # cuda:0 when available, else cpu
    det.names                                             # ['cat', 'dog']
    det.card["mAP50-95"]                                  # from metrics.json next to the weights
    results = det.detect([pil_image, rgb_uint8_array, ...])
    results[0][0].label, results[0][0].box                # 'cat', (x1, y1, x2, y2) in input pixels
    results[0].to_json()

Inputs (one call may mix sizes): file paths, RGB numpy arrays HxWx3 uint8 (HxW grayscale and
HxWx4 RGBA are accepted; float arrays in [0, 1] too), PIL images in any mode
(converted to RGB), torch tensors [B,3,H,W] or [3,H,W] (uint8, or float in [0, 1]);
`datasets.images.rgb_uint8` reads each, and files and PIL images as a viewer shows them. Every
image is converted to a BGR uint8 array (what ultralytics expects from numpy;
a tensor given straight to ultralytics would skip its letterbox and need sides
divisible by 32), so boxes always come back in the input's own pixels.
"""

from __future__ import annotations

import gendet_env

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from datasets.images import is_tensor as _is_tensor
from datasets.images import rgb_uint8
from detection._common import BUNDLED, UsageError, check_local_weights, names_list, quiet_ultralytics, resolve_model
from generation.files import NOT_PYTORCH, not_pytorch
from generation.sampling_options import whole  # any integer type, or 128.0 (no torch: stays light)


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
    """One image (a file path, numpy array, PIL image or [3,H,W] tensor) as an HxWx3 uint8 RGB array."""
    try:
        return rgb_uint8(image)
    except ValueError as e:
        raise UsageError(str(e)) from None


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
    elif isinstance(images, (Image.Image, str, Path)):  # one image, or one file
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
        """A detector from a local .pt (ultralytics weights: a pickle, so only files you trust), or the
        bundle's "catdog" / "face" (models/demo), on
        `device` (cpu, cuda, cuda:N, mps; default: the first GPU, else cpu), with its card."""
        try:  # at once, not at the first image ('mps' ran on the CPU, saying nothing; 'cuda' failed in detect)
            device = gendet_env.check_device(device) if device not in (None, "") else default_device()
        except ValueError as e:
            raise UsageError(f"device: {e}") from None
        weights = check_local_weights(resolve_model(path) if str(path) in BUNDLED else path)
        quiet_ultralytics(verbose)
        if not_pytorch(weights):  # ultralytics' safe mode would call it a pickle to refuse
            raise UsageError(f"{path}: {NOT_PYTORCH}")
        from ultralytics import YOLO

        try:
            model = YOLO(str(weights), task="detect")
        except Exception as e:
            if "references types outside" in str(e):  # ultralytics' safe mode (gendet_env) refused it
                raise UsageError(f"{path}: refused: it holds Python objects outside ultralytics' checkpoint format, "
                                 "and unpickling them could run code") from None
            raise UsageError(f"{path}: not a loadable YOLO checkpoint ({type(e).__name__}: {e})") from None
        if model.task != "detect":
            raise UsageError(f"{path}: a {model.task!r} model, expected a detection model")
        return cls(model, weights, device, load_card(weights, model))

    def detect(self, images, conf: float | None = None, iou: float | None = None, imgsz: int | None = None,
               max_det: int = 300, batch: int = 16) -> list[Detections]:
        """Detect objects in each image; boxes are (x1, y1, x2, y2) in that image's own pixels."""
        if whole(batch) is None or batch < 1:
            raise UsageError(f"batch must be an integer >= 1, got {batch!r}")
        if imgsz is not None and (whole(imgsz) is None or imgsz < 32):
            raise UsageError(f"imgsz must be an integer >= 32 (ultralytics rounds it to a multiple of 32), "
                             f"got {imgsz!r}")
        batch, imgsz = whole(batch), None if imgsz is None else whole(imgsz)
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
            found = json.loads(metrics.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            found = {}
        if not isinstance(found, dict):
            raise UsageError(f"{metrics}: not a detector's metrics (a JSON object); move it away from {weights.name}")
        card.update(found)
        if "imgsz" in card and not (isinstance(card["imgsz"], int) and not isinstance(card["imgsz"], bool)
                                    and card["imgsz"] > 0):
            raise UsageError(f"{metrics}: imgsz must be a positive integer, got {card['imgsz']!r}")
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
