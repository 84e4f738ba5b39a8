"""Evaluate a detector: pycocotools COCOeval on its predictions, cross-checked against ultralytics' val.

    python -m detection.evaluate --model runs/catdog/best.pt --data data/scenes --out runs/catdog/eval

Reports mAP50, mAP50-95 and per-class AP from both, and whether they agree within
--tolerance (0.02 by default; the two implementations interpolate and batch differently).
Writes OUT/eval.json and OUT/pr_curve.png (precision-recall at IoU 0.5, per class).
"""

from __future__ import annotations

import gendet_env  # noqa: F401

import argparse
import json
from pathlib import Path

from detection._common import run_cli, task_for_names, write_json
from detection.coco_metrics import coco_map, ground_truth_coco, predictions_coco
from detection.data import load_dataset
from detection.detector import Detector


def ultralytics_val(det: Detector, dataset, split: str, imgsz: int, out: Path) -> dict:
    yaml_path = dataset.write_resolved_yaml(out / "data.resolved.yaml")
    m = det.model.val(data=str(yaml_path), split=split, imgsz=imgsz, conf=0.001, iou=0.7, plots=False,
                      verbose=False, device=det.device.replace("cuda:", ""), project=str(out), name="ultralytics",
                      exist_ok=True)
    per_class = {det.names[int(c)]: {"AP50": float(m.box.ap50[i]), "AP50-95": float(m.box.ap[i])}
                 for i, c in enumerate(m.box.ap_class_index)}
    return {"mAP50": float(m.box.map50), "mAP50-95": float(m.box.map), "precision": float(m.box.mp),
            "recall": float(m.box.mr), "per_class": per_class}


def plot_pr(coco: dict, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    for name, prec in coco["precision_curve_50"].items():
        ap = coco["per_class"][name]["AP50"]
        ax.plot(coco["recall_points"], [max(p, 0) for p in prec], label=f"{name} (AP50 {ap:.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def evaluate(model: str | Path, data: str | Path, split: str = "val", out: str | Path | None = None,
             imgsz: int | None = None, device: str | None = None, tolerance: float = 0.02) -> dict:
    det = Detector.load(model, device=device)
    task = task_for_names(det.names)
    dataset = load_dataset(data, task, splits=(split,))
    out = Path(out or Path(model).parent / "eval")
    out.mkdir(parents=True, exist_ok=True)
    imgsz = int(imgsz or det.imgsz)
    gt = ground_truth_coco(dataset, split)
    coco = coco_map(gt, predictions_coco(det, gt), det.names)
    ul = ultralytics_val(det, dataset, split, imgsz, out)
    gap = max(abs(coco["mAP50"] - ul["mAP50"]), abs(coco["mAP50-95"] - ul["mAP50-95"]))
    report = {"model": str(model), "data": str(dataset.yaml_path), "split": split, "images": len(gt["images"]),
              "objects": len(gt["annotations"]), "imgsz": imgsz, "data_hash": dataset.data_hash(),
              "pycocotools": {k: coco[k] for k in ("mAP50", "mAP50-95", "per_class")}, "ultralytics": ul,
              "max_gap": gap, "agree": gap <= tolerance, "tolerance": tolerance}
    write_json(out / "eval.json", report)
    plot_pr(coco, out / "pr_curve.png", f"{Path(model).name} on {split}")
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m detection.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a detector .pt (from detection.train)")
    ap.add_argument("--data", required=True, help="data.yaml, YOLO dataset folder or scenes root")
    ap.add_argument("--split", default="val", choices=("train", "val"))
    ap.add_argument("--imgsz", type=int, default=None, help="default: the model's training size")
    ap.add_argument("--device", default=None)
    ap.add_argument("--tolerance", type=float, default=0.02, help="allowed mAP gap between the two (default 0.02)")
    ap.add_argument("--out", default=None, help="output folder (default: next to the model, eval/)")
    args = ap.parse_args(argv)
    r = evaluate(args.model, args.data, args.split, args.out, args.imgsz, args.device, args.tolerance)
    print(f"{'':12}{'pycocotools':>12}{'ultralytics':>12}")
    for key in ("mAP50", "mAP50-95"):
        print(f"{key:12}{r['pycocotools'][key]:>12.4f}{r['ultralytics'][key]:>12.4f}")
    for name, v in r["pycocotools"]["per_class"].items():
        u = r["ultralytics"]["per_class"].get(name, {})
        print(f"{name + ' AP50-95':12}{v['AP50-95']:>12.4f}{u.get('AP50-95', float('nan')):>12.4f}")
    verdict = "agree" if r["agree"] else "DISAGREE"
    print(f"{verdict}: largest gap {r['max_gap']:.4f} (tolerance {r['tolerance']}); "
          f"{r['images']} images, {r['objects']} objects")
    return 0 if r["agree"] else 1


if __name__ == "__main__":
    run_cli(main)
