"""Evaluate a detector: pycocotools COCOeval cross-checked against ultralytics' own val.

    python -m detection.evaluate --model runs/catdog/best.pt --data data/scenes --out runs/catdog/eval

Three numbers per metric (mAP50, mAP50-95, per-class AP):
  ultralytics   its validator (DetMetrics) on its own predictions;
  pycocotools   COCOeval on exactly those predictions (val's predictions.json, mapped
                onto ground truth built here from the YOLO labels): the cross-check.
                The two must agree within --tolerance (0.02; they interpolate the PR
                curve differently). A larger gap means the labels, the box format or
                the class ids are read differently, and prints a warning on stderr
                (exit code 1 with --strict);
  detector      COCOeval on Detector.detect() output (conf 0.001): what the rest of
                gendet sees. Not part of the agreement check: val's NMS is multi-label
                (one box may count for several classes), predict's is not, so on a weak
                model this differs by more than 0.02; on a good one it is close.
Writes OUT/eval.json and OUT/pr_curve.png (COCOeval precision-recall at IoU 0.5 per class, on
the cross-checked predictions).
"""

from __future__ import annotations

import gendet_env  # noqa: F401

import argparse
import sys
from pathlib import Path

from detection._common import BUNDLED, UsageError, out_folder, resolve_model, run_cli, task_for_names, write_json
from detection.coco_metrics import coco_map, ground_truth_coco, predictions_coco, predictions_from_ultralytics
from detection.data import load_dataset
from detection.detector import Detector


def ultralytics_val(det: Detector, dataset, split: str, imgsz: int, out: Path) -> tuple[dict, Path]:
    """ultralytics' own validator on the split (conf 0.001, NMS IoU 0.7); its metrics and predictions.json."""
    yaml_path = dataset.write_resolved_yaml(out / "data.resolved.yaml")
    (out / "ultralytics" / "predictions.json").unlink(missing_ok=True)  # never score a previous run's file
    m = det.model.val(data=str(yaml_path), split=split, imgsz=imgsz, conf=0.001, iou=0.7, plots=False,
                      save_json=True, verbose=False, device=det.device.replace("cuda:", ""), project=str(out),
                      name="ultralytics", exist_ok=True)
    per_class = {det.names[int(c)]: {"AP50": float(m.box.ap50[i]), "AP50-95": float(m.box.ap[i])}
                 for i, c in enumerate(m.box.ap_class_index)}
    metrics = {"mAP50": float(m.box.map50), "mAP50-95": float(m.box.map), "precision": float(m.box.mp),
               "recall": float(m.box.mr), "per_class": per_class}
    return metrics, Path(m.save_dir) / "predictions.json"


def plot_pr(coco: dict, path: Path, title: str) -> Path:
    """COCOeval's interpolated precision at 101 recall points, IoU 0.5, one line per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    for name, prec in coco["precision_curve_50"].items():
        ap = coco["per_class"][name]["AP50"]
        ax.plot(coco["recall_points"], [max(p, 0) for p in prec], label=f"{name} (AP50 {ap:.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def default_out(model: str | Path) -> Path:
    """eval/ next to the weights; for a demo shortcut runs/eval-NAME/, so the shipped bundle stays as it is."""
    if str(model) in BUNDLED:
        return Path("runs") / f"eval-{model}"
    return Path(model).parent / "eval"


def evaluate(model: str | Path, data: str | Path, split: str = "val", out: str | Path | None = None,
             imgsz: int | None = None, device: str | None = None, tolerance: float = 0.02) -> dict:
    """Both implementations on one split; writes eval.json and pr_curve.png into `out`, returns the report.
    `model` is a detector .pt or a demo bundle shortcut (catdog, face)."""
    if imgsz is not None and int(imgsz) < 32:  # as detection.train: smaller sizes silently score 0
        raise UsageError(f"--imgsz {imgsz}: must be >= 32")
    # absolute: ultralytics puts a relative `project` under its own runs folder, so its predictions
    # (and the stale-file guard) went elsewhere
    out = out_folder(out or default_out(model)).resolve()
    model = resolve_model(model)
    det = Detector.load(model, device=device)
    task = task_for_names(det.names)
    dataset = load_dataset(data, task, splits=(split,))
    names = [p.name for p in dataset.images[split]]
    if len(set(names)) != len(names):  # before the val run: its predictions.json names images by file name
        dup = sorted({n for n in names if names.count(n) > 1})[0]
        raise UsageError(f"{dataset.yaml_path}: {split} holds several images named {dup!r} (in different "
                         "folders); ultralytics' predictions name images by file name: rename them")
    out.mkdir(parents=True, exist_ok=True)
    imgsz = -(-int(imgsz or det.imgsz) // 32) * 32  # ultralytics rounds up to its stride: record what ran
    gt = ground_truth_coco(dataset, split)
    ul, ul_predictions = ultralytics_val(det, dataset, split, imgsz, out)
    preds = predictions_from_ultralytics(ul_predictions, gt) if ul_predictions.is_file() else []
    coco = coco_map(gt, preds, det.names)
    own = coco_map(gt, predictions_coco(det, gt, imgsz=imgsz), det.names)
    if not gt["annotations"]:  # ultralytics says 0 for want of objects; pycocotools says "no data"
        ul.update({"mAP50": None, "mAP50-95": None})
    gap = max_gap(coco, ul)
    keys = ("mAP50", "mAP75", "mAP50-95", "per_class")
    report = {"model": str(model), "data": str(dataset.yaml_path), "split": split, "images": len(gt["images"]),
              "objects": len(gt["annotations"]), "imgsz": imgsz,
              # over data.yaml and this split's files only; the training card's data_hash covers every split
              "split_hash": dataset.data_hash(),
              "pycocotools": _nulls({k: coco[k] for k in keys}), "ultralytics": ul,
              "detector": _nulls({k: own[k] for k in keys}), "predictions": len(preds),
              "max_gap": gap, "agree": gap is None or gap <= tolerance, "tolerance": tolerance}
    write_json(out / "eval.json", report)
    plot_pr(coco, out / "pr_curve.png", f"{Path(model).name} on {split}")
    return report


def max_gap(coco: dict, ul: dict) -> float | None:
    """Largest mAP50 / mAP50-95 gap over the metrics both could measure; None when there are none."""
    gaps = [abs(coco[k] - ul[k]) for k in ("mAP50", "mAP50-95") if coco[k] is not None and ul[k] is not None]
    return max(gaps) if gaps else None


def _nulls(metrics: dict) -> dict:
    """Undefined per-class AP (NaN: no such object in the split) as None, so eval.json holds null."""
    per_class = {n: {k: None if v != v else v for k, v in ap.items()} for n, ap in metrics["per_class"].items()}
    return {**metrics, "per_class": per_class}


def _cell(v) -> str:
    return f"{'n/a':>12}" if v is None or v != v else f"{v:>12.4f}"


# what the table's three columns are (the module's docstring says more)
COLUMNS = ("columns: pycocotools = COCOeval on ultralytics' val predictions (the cross-check); ultralytics = "
           "its own validator; detector = COCOeval on Detector.detect(), the boxes gendet's judge sees "
           "(not in the check: its NMS is single-label)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m detection.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True,
                    help="a detector .pt (from detection.train), or catdog / face for the demo bundle's")
    ap.add_argument("--data", required=True, help="data.yaml, YOLO dataset folder or scenes root")
    ap.add_argument("--split", default="val", choices=("train", "val"), help="split to measure (default val)")
    ap.add_argument("--imgsz", type=int, default=None, help="default: the model's training size")
    ap.add_argument("--device", type=gendet_env.device_arg, default=None,
                    help="cpu, cuda, cuda:N, N or mps (default: cuda:0 when available)")
    ap.add_argument("--tolerance", type=float, default=0.02, help="allowed mAP gap between the two (default 0.02)")
    ap.add_argument("--out", default=None,
                    help="output folder (default: eval/ next to the model; runs/eval-NAME for catdog / face)")
    ap.add_argument("--strict", action="store_true", help="exit code 1 when the two disagree beyond --tolerance")
    args = ap.parse_args(argv)
    out = Path(args.out or default_out(args.model))
    r = evaluate(args.model, args.data, args.split, out, args.imgsz, args.device, args.tolerance)
    print(f"{'':14}{'pycocotools':>12}{'ultralytics':>12}{'detector':>12}")
    for key in ("mAP50", "mAP50-95"):
        print(f"{key:14}" + "".join(_cell(r[c][key]) for c in ("pycocotools", "ultralytics", "detector")))
    for name, v in r["pycocotools"]["per_class"].items():
        u = r["ultralytics"]["per_class"].get(name, {})
        d = r["detector"]["per_class"].get(name, {})
        for key in ("AP50", "AP50-95"):
            print(f"{name + ' ' + key:14}{_cell(v[key])}{_cell(u.get(key))}{_cell(d.get(key))}")
    print(COLUMNS)
    gap = "n/a (no objects)" if r["max_gap"] is None else f"{r['max_gap']:.4f}"
    print(f"largest gap, pycocotools against ultralytics: {gap} (tolerance {r['tolerance']}); "
          f"{r['images']} images, {r['objects']} objects -> {out / 'eval.json'}")
    if not r["agree"]:
        print(f"warning: pycocotools and ultralytics disagree by {r['max_gap']:.4f} > {r['tolerance']}",
              file=sys.stderr)
        return 1 if args.strict else 0
    return 0


if __name__ == "__main__":
    run_cli(main)
