"""COCO-style detection metrics through pycocotools' COCOeval, independent of ultralytics.

    gt = ground_truth_coco(dataset, "val")                 # YOLO labels -> COCO ground truth
    preds = predictions_coco(detector, gt)                  # Detector output -> COCO results
    m = coco_map(gt, preds, names)                         # {"mAP50", "mAP50-95", "per_class", ...}

Ground truth boxes are the YOLO labels in pixel [x, y, w, h] (top-left corner);
category ids are class index + 1 (COCO reserves 0).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np


def ground_truth_coco(dataset, split: str) -> dict:
    """COCO ground truth from a YoloDataset split: pixel [x, y, w, h] boxes, category id = class + 1."""
    images, anns = [], []
    for image_id, (path, w, h, boxes) in enumerate(dataset.ground_truth(split), start=1):
        images.append({"id": image_id, "file_name": str(path), "width": w, "height": h})
        for cls, x1, y1, x2, y2 in boxes:
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": int(cls) + 1,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(dataset.names)]
    return {"images": images, "annotations": anns, "categories": cats}


def predictions_coco(detector, gt: dict, conf: float = 0.001, iou: float = 0.7, imgsz: int | None = None,
                     batch: int = 32) -> list[dict]:
    """Run the detector on every ground-truth image (low threshold, as mAP needs the tail).

    conf 0.001 / iou 0.7 / max_det 300 are ultralytics' val defaults, so the two
    implementations score the same kind of prediction list.
    """
    from datasets.images import open_as_seen

    results = []
    imgs = gt["images"]
    for start in range(0, len(imgs), batch):
        chunk = imgs[start:start + batch]
        arrays = []
        for im in chunk:
            arrays.append(np.asarray(open_as_seen(im["file_name"])))  # upright, as ultralytics reads it too
        for im, dets in zip(chunk, detector.detect(arrays, conf=conf, iou=iou, imgsz=imgsz)):
            for d in dets:
                x1, y1, x2, y2 = d.box
                results.append({"image_id": im["id"], "category_id": int(d.class_id) + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(d.confidence)})
    return results


def predictions_from_ultralytics(path: str | Path, gt: dict) -> list[dict]:
    """ultralytics' val `predictions.json` (save_json=True) re-keyed to `gt`'s image ids.

    ultralytics names an image by its file stem and writes `category_id = cls + 1` for a
    non-COCO dataset, like ground_truth_coco. Scoring these with COCOeval compares the two
    metric implementations on the very same boxes (val's NMS is multi-label, predict's is not,
    so Detector predictions differ a little, and at low mAP that is more than 0.02).
    """
    ids = {Path(im["file_name"]).name: im["id"] for im in gt["images"]}
    if len(ids) != len(gt["images"]):
        raise ValueError("ground-truth images share file names; ultralytics' predictions.json cannot tell them apart")
    out = []
    for p in json.loads(Path(path).read_text()):
        name = p.get("file_name") or f"{p['image_id']}"
        if name not in ids:
            raise ValueError(f"{path}: prediction for {name!r}, which is not in the ground truth")
        out.append({"image_id": ids[name], "category_id": int(p["category_id"]), "bbox": p["bbox"],
                    "score": float(p["score"])})
    return out


def coco_map(gt: dict, predictions: list[dict], names: list[str] | None = None) -> dict:
    """mAP50, mAP75, mAP50-95 and per-class AP with COCOeval (maxDets 100, all areas).

    A class without ground truth gets NaN (undefined), not 0: averaging a 0 in
    would punish a model for a class the data never shows. A split without any
    object gets None for the means (pycocotools' -1, "no data"): nothing to measure.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    names = names or [c["name"] for c in sorted(gt["categories"], key=lambda c: c["id"])]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it goes
        coco_gt = COCO()
        coco_gt.dataset = {k: v for k, v in gt.items()}
        coco_gt.createIndex()
        if not predictions:
            return _empty(gt, names)
        coco_dt = coco_gt.loadRes([dict(p) for p in predictions])
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # precision: [T iou thresholds, R recall points, K classes, A areas, M maxDets]; -1 = no ground truth
    prec = ev.eval["precision"][:, :, :, 0, -1]
    per_class = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = prec[:, :, k]
        ap = lambda q: float(np.mean(q[q > -1])) if (q > -1).any() else float("nan")  # noqa: E731
        per_class[names[cat_id - 1]] = {"AP50": ap(p[0]), "AP50-95": ap(p)}
    stat = lambda i: float(ev.stats[i]) if ev.stats[i] > -1 else None  # noqa: E731
    return {"mAP50": stat(1), "mAP75": stat(2), "mAP50-95": stat(0),
            "per_class": per_class,
            "precision_curve_50": {names[c - 1]: prec[0, :, k].tolist() for k, c in enumerate(ev.params.catIds)},
            "recall_points": ev.params.recThrs.tolist()}


def _empty(gt: dict, names) -> dict:
    """No predictions: 0 where there was something to find, else undefined (as coco_map)."""
    seen = {a["category_id"] for a in gt["annotations"]}
    v = 0.0 if seen else None
    ap = lambda k: 0.0 if k + 1 in seen else float("nan")  # noqa: E731
    return {"mAP50": v, "mAP75": v, "mAP50-95": v,
            "per_class": {n: {"AP50": ap(k), "AP50-95": ap(k)} for k, n in enumerate(names)},
            "precision_curve_50": {}, "recall_points": []}
