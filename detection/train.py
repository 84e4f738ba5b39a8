"""Train a YOLO detector for one gendet task (catdog or face), offline.

Usage::

    python -m detection.train --task catdog --data data/scenes --model yolo11n.yaml \\
        --epochs 60 --imgsz 128 --batch 16 --device cpu --out runs/catdog-v1
    python -m detection.train --task face --data data/faces/data.yaml \\
        --model runs/face-v1/best.pt --epochs 20 --device 0 --out runs/face-v2   # fine-tune
    python -m detection.train ... --out runs/catdog-v1 --resume    # continue an interrupted run

--data is a data.yaml, a YOLO dataset folder holding one, or a scenes root
(then DATA/<task>/data.yaml). The dataset is validated first (datasets/FORMATS.md:
names must equal the task's classes, image folders must exist, every label line
must be "cls cx cy w h" with cls in range and values in [0, 1]); a problem is
one line naming the file and line, exit code 2. ultralytics then gets a copy
of data.yaml with an absolute `path:` written into --out (our data.yaml has no
`path:`; ultralytics would resolve a relative one against its own datasets dir).

--model is a model YAML (``yolo11n.yaml``, ``yolov8n.yaml``, any ultralytics
model config or a local .yaml): built from scratch with nc = the task's class
count. Or a local .pt to fine-tune from. A hub name such as ``yolov8n.pt`` that
is not a local file is refused: ultralytics would try to download it.

--augment (albumentations on top of ultralytics' own augmentation):
  default  ultralytics' pipeline (mosaic, random affine, HSV, horizontal flip)
           plus its built-in albumentations step (Blur, MedianBlur, ToGray,
           CLAHE, each p=0.01). If the project module ``datasets.augment``
           defines ``ultralytics_augmentations(mode) -> list | None``, its
           albumentations transforms replace ultralytics' default list (passed
           as the ``augmentations=`` train argument, which ultralytics feeds to
           its ``Albumentations`` transform and stores in the checkpoint).
  light    no mosaic/mixup, mild affine and HSV, horizontal flip; the same
           albumentations list as ``default``.
  none     every ultralytics augmentation off and ``augmentations=[]`` (an
           empty albumentations list: no albumentations at all).
metrics.json records what was used under "augment".

Writes into --out: best.pt, metrics.json, curves.png (plotted from
results.csv), results.png (ultralytics' own plot, when it made one), README.md
(model card), data.yaml (the resolved copy), run.json (the run's settings, for
--resume) and ultralytics/ (the raw run).

An --out that holds a run's trained state (best.pt, metrics.json, ultralytics
weights) is refused unless --resume is given, and one holding files that are
not a detection.train run's (a dataset, a generator run) is refused always,
before anything is loaded. ``--stop-at N`` pauses after epoch N with
ultralytics' last.pt still resumable; ``--resume`` continues an interrupted or
paused run from OUT/ultralytics/weights/last.pt (ultralytics' own resume:
optimizer, EMA, epoch, early-stopping state). On resume --model, --epochs,
--augment and --seed are the run's own (run.json and the checkpoint); --data,
--device, --batch, --workers, --imgsz, --patience, --time-limit (ultralytics
refits the run's total epochs to it) and plotting may change. metrics.json covers the whole run and its
"command" lists the first command and each resume, one per line.

Devices: ``--device cpu``, ``--device 0`` or ``--device 0,1``. On one GPU,
ultralytics' AMP check (which downloads yolo26n.pt) is replaced by "AMP on"
unless that file already sits in its weights dir.

Multi-GPU, the supported launcher is torchrun::

    torchrun --standalone --nproc_per_node 2 -m detection.train --device 0,1 --task catdog ...

Every rank then runs this module (offline variables, dataset validation, the
AMP patch) and ultralytics sees LOCAL_RANK, so it joins that process group
instead of spawning its own; only rank 0 writes best.pt, metrics.json, the
plots and the card. Plain ``--device 0,1`` without torchrun also trains:
ultralytics writes a temporary script and starts its own torch.distributed run
in subprocesses. That path drops custom callbacks (an upstream limitation;
gendet adds none today) and the AMP patch does not reach the subprocesses, so
rank 0 may try to download yolo26n.pt (ultralytics catches the failure, logs
"checks skipped" and keeps AMP on); metrics are then re-computed by validating
best.pt in this process. Neither
multi-GPU path has been run in this project's CI (no GPUs there).

Progress: ultralytics' log and tqdm bars are on for the CLI (--quiet turns them
off). Plots stay offline: ``gendet_env`` seeds the Arial fonts ultralytics
otherwise fetches from GitHub.
"""

from __future__ import annotations

import gendet_env  # first: offline variables, fonts

import argparse
import contextlib
import csv
import datetime as _dt
import re
import shutil
import sys
import time
from pathlib import Path

from detection._common import (
    TASKS,
    UsageError,
    check_local_weights,
    command_line,
    out_folder,
    quiet_ultralytics,
    run_cli,
    write_json,
)
from detection.data import load_dataset
from detection.resume import (
    LAST,
    Pause,
    close_loaders,
    earlier_seconds,
    out_problem,
    pause_after,
    resume_point,
    run_settings,
    trim_results,
)

AUGMENT_MODES = ("default", "light", "none")

_LIGHT = dict(mosaic=0.0, mixup=0.0, cutmix=0.0, copy_paste=0.0, close_mosaic=0, degrees=0.0, translate=0.05,
              scale=0.2, shear=0.0, perspective=0.0, hsv_h=0.01, hsv_s=0.3, hsv_v=0.2, fliplr=0.5, flipud=0.0)
_NONE = dict(mosaic=0.0, mixup=0.0, cutmix=0.0, copy_paste=0.0, close_mosaic=0, degrees=0.0, translate=0.0,
             scale=0.0, shear=0.0, perspective=0.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, fliplr=0.0, flipud=0.0)


# --------------------------------------------------------------------------------------------- arguments
def parse_device(value: str):
    """'cpu' -> 'cpu', '0' -> 0, 'cuda' -> 0, '0,1' -> [0, 1] (ultralytics' DDP launcher), 'mps' -> 'mps'.
    'cuda' and 'cuda:N' as gendet_env.device_arg takes them: build_demo passes its --device on."""
    v = str(value).strip().lower()
    if v in ("cpu", "mps"):
        return v
    if v == "cuda":
        return 0
    if v.startswith("cuda:"):
        v = v[5:]
    if re.fullmatch(r"\d+(,\d+)*", v):
        ids = [int(x) for x in v.split(",")]
        return ids[0] if len(ids) == 1 else ids
    raise UsageError(f"--device {value!r}: expected cpu, 0, 0,1, ...")


def check_device(dev, value: str) -> None:
    """The parsed --device exists on this machine (the messages of gendet_env.device_arg)."""
    if dev == "cpu":
        return
    import torch

    if dev == "mps":
        if not torch.backends.mps.is_available():
            raise UsageError(f"--device {value!r}: this machine has no Apple GPU (MPS); use cpu")
        return
    if not torch.cuda.is_available():
        raise UsageError(f"--device {value!r}: CUDA is not available on this machine "
                         f"(torch {torch.__version__}); use cpu")
    count = torch.cuda.device_count()
    if max(dev if isinstance(dev, list) else [dev]) >= count:
        raise UsageError(f"--device {value!r}: this machine has {count} GPU(s), numbered 0 to {count - 1}")


def resolve_model(value: str) -> tuple[str, str]:
    """(source, kind) with kind 'yaml' (build from scratch) or 'pt' (fine-tune a local checkpoint)."""
    p = Path(value).expanduser()
    if p.suffix in (".yaml", ".yml"):
        if p.is_file():
            return str(p), "yaml"
        if len(p.parts) == 1:  # an ultralytics model config name, e.g. yolo11n.yaml
            gendet_env.ultralytics()
            from ultralytics.nn.tasks import yaml_model_load

            try:
                yaml_model_load(p.name)
            except Exception:
                raise UsageError(f"--model {value}: no such model YAML (a local file or an ultralytics config "
                                 "such as yolo11n.yaml / yolov8n.yaml)") from None
            return p.name, "yaml"
        raise UsageError(f"--model {value}: no such file")
    if p.suffix == ".pt":
        return str(check_local_weights(p)), "pt"
    raise UsageError(f"--model {value}: expected a model YAML (yolo11n.yaml) or a local .pt file")


def augment_settings(mode: str) -> tuple[dict, str]:
    """ultralytics train overrides for --augment, and a one-line description for metrics.json."""
    if mode not in AUGMENT_MODES:
        raise UsageError(f"--augment {mode!r}: choose from {', '.join(AUGMENT_MODES)}")
    if mode == "none":
        return {**_NONE, "augmentations": []}, "none: ultralytics augmentation off, no albumentations"
    overrides = dict(_LIGHT) if mode == "light" else {}
    what = "ultralytics defaults" if mode == "default" else "light ultralytics settings (no mosaic)"
    project = _project_albumentations(mode)
    if project is not None:
        overrides["augmentations"] = project
        names = ", ".join(type(t).__name__ for t in project) or "nothing"
        return overrides, f"{mode}: {what} + datasets.augment albumentations ({names})"
    return overrides, f"{mode}: {what} + ultralytics' built-in albumentations (Blur, MedianBlur, ToGray, CLAHE at p=0.01)"


def _project_albumentations(mode: str):
    """datasets.augment.ultralytics_augmentations(mode) when the project provides it, else None."""
    try:
        from datasets import augment as project_augment
    except ImportError:
        return None
    except Exception as e:  # a half-written module must not break training
        print(f"warning: datasets.augment failed to import ({type(e).__name__}: {e}); using ultralytics' own",
              file=sys.stderr)
        return None
    fn = getattr(project_augment, "ultralytics_augmentations", None)
    if not callable(fn):
        return None
    transforms = fn(mode)
    return None if transforms is None else list(transforms)


# --------------------------------------------------------------------------------------------- training
def train(
    data: str | Path,
    task: str,
    out: str | Path,
    model: str = "yolo11n.yaml",
    epochs: int = 50,
    imgsz: int = 128,
    batch: int = 16,
    device: str = "cpu",
    workers: int = 2,
    augment: str = "default",
    patience: int = 50,
    seed: int = 0,
    time_limit: float | None = None,
    plots: bool = True,
    verbose: bool = False,
    command: str | None = None,
    resume: bool = False,
    stop_at: int | None = None,
) -> dict:
    """Validate the data, train with ultralytics, write best.pt/metrics.json/curves.png/README.md; return
    metrics. `resume` continues the run in `out` (model, epochs, augment and seed are then the run's);
    `stop_at` pauses after that epoch, writing nothing but ultralytics' resumable last.pt, and returns
    {"paused_after": N, "epochs": M}."""
    if task not in TASKS:
        raise UsageError(f"--task {task!r}: choose from {', '.join(TASKS)}")
    for name, value, low in (("--epochs", epochs, 1), ("--imgsz", imgsz, 32), ("--batch", batch, 1),
                             ("--workers", workers, 0), ("--patience", patience, 0)):
        if int(value) < low:
            raise UsageError(f"{name} {value}: must be >= {low}")
    if time_limit is not None and not time_limit > 0:
        raise UsageError(f"--time-limit {time_limit}: must be > 0 minutes")
    if stop_at is not None and (stop_at < 1 or (not resume and stop_at >= epochs)):
        raise UsageError(f"--stop-at {stop_at}: must be >= 1 and below --epochs {epochs}")
    out = Path(out).expanduser().resolve()
    # rank 0 holds the folder (torchrun's other ranks share it): a second run into it is refused
    with gendet_env.held(out_folder(out), "detection.train") if _rank() <= 0 else contextlib.nullcontext():
        return _train_held(out, data, task, model, epochs, imgsz, batch, device, workers, augment, patience,
                           seed, time_limit, plots, verbose, command, resume, stop_at)


def _train_held(out, data, task, model, epochs, imgsz, batch, device, workers, augment, patience, seed, time_limit,
                plots, verbose, command, resume, stop_at) -> dict:
    problem = out_problem(out_folder(out), resume)  # before anything slow: the error is instant
    if problem:
        raise UsageError(problem)
    dev = parse_device(device)
    check_device(dev, device)
    if stop_at is not None and isinstance(dev, list) and _rank() < 0:
        raise UsageError(f"--stop-at with --device {device}: ultralytics' own multi-GPU launcher drops "
                         "callbacks; start the run with torchrun")
    command = command or _api_command(task, data, model, out, epochs=int(epochs), imgsz=int(imgsz),
                                      batch=int(batch), device=dev, workers=int(workers), patience=int(patience),
                                      seed=int(seed), **({"resume": True} if resume else {}),
                                      **({"stop_at": int(stop_at)} if stop_at is not None else {}))
    run = run_settings(out, dict(task=task, model=model, epochs=int(epochs), augment=augment, seed=int(seed),
                                  time_limit=time_limit), command, resume)
    ds = load_dataset(data, task)
    given = Path(data).expanduser().resolve()  # a scenes root or YOLO folder; a data.yaml may live elsewhere
    for root in ([given] if given.is_dir() else []) + [Path(ds.root).resolve()] + ds.split_folders():
        if out == root or root in out.parents:  # predict and convert refuse the same
            raise UsageError(f"--out {out} is inside the dataset {root}: the run's plots would join its training "
                             "images, and rebuilding the dataset would delete the run; choose a folder outside it")
    overrides = augment_settings(run["augment"])[0]
    if not resume:
        source, kind = resolve_model(model)
        run["init"] = "fine-tuned from " + source if kind == "pt" else "from scratch (" + source + ")"

    out.mkdir(parents=True, exist_ok=True)
    data_yaml = ds.write_resolved_yaml(out / "data.yaml")
    quiet_ultralytics(verbose)
    from ultralytics import YOLO

    weights = str(out / LAST) if resume else source
    try:
        yolo = YOLO(weights, task="detect")
    except Exception as e:
        said = (str(e).strip().splitlines() or [""])[0]  # ultralytics' own advice (re-download ...) does not apply
        if not resume:
            raise UsageError(f"--model {model}: cannot load ({type(e).__name__}: {said})") from None
        best = out / LAST.parent / "best.pt"  # ultralytics writes last.pt in place: a kill can cut it short
        way = (f"train on from its best epoch with --model {best} and a new --out" if best.is_file() else
               f"delete {out} to start over")
        raise UsageError(f"{weights}: cannot load ({type(e).__name__}: {said}); if a kill cut it short, {way}") \
            from None
    if yolo.task != "detect":
        raise UsageError(f"--model {model}: a {yolo.task!r} model, expected a detection model")
    if resume:
        try:
            done, total = resume_point(yolo.ckpt or {}, out)
        except UsageError:
            if (out / "metrics.json").is_file() or _rank() > 0:
                raise
            # trained to its end and stopped before its outputs were written (ultralytics' final
            # validation, our copies): they are written now, from the run's own best weights
            print("the run was trained to its end; writing its outputs", flush=True)
            return _write_outputs(out, run, ds, data_yaml, YOLO, dev, imgsz, batch, metrics_obj=None,
                                  weights=_finished_weights(out), session_seconds=None, device=dev)
        if stop_at is not None and not done < stop_at < total:
            raise UsageError(f"--stop-at {stop_at}: the run in {out} is at epoch {done} of {total}")
        run["resumed_from"] = run["resumed_from"] + [done]
        run.setdefault("init", "not recorded (a run started before run.json)")
        if _rank() <= 0:  # rank 0 writes results.csv
            trim_results(out / "ultralytics" / "results.csv", done)
            print(f"resumed from epoch {done} of {total}", flush=True)
    if _rank() <= 0:
        write_json(out / "run.json", run)
    _offline_amp_check()
    if _without_polars():
        plots = False

    # what a resume may change; the rest comes from the checkpoint
    args = dict(data=str(data_yaml), imgsz=int(imgsz), batch=int(batch), device=dev, workers=int(workers),
                patience=int(patience), plots=bool(plots))
    if resume:  # save_dir: the checkpoint names the folder it was written in, which may have moved
        args.update(resume=True, save_dir=str(out / "ultralytics"),
                    **{k: v for k, v in overrides.items() if k == "augmentations"})
    else:
        args.update(epochs=int(epochs), seed=int(seed), deterministic=True, project=str(out), name="ultralytics",
                    exist_ok=True, verbose=bool(verbose), pretrained=kind == "pt", val=True,
                    amp=dev not in ("cpu", "mps"), **overrides)
    if run["time_limit"]:  # ultralytics fits the epochs (and their schedule) to the time, in hours
        args["time"] = float(run["time_limit"]) / 60
    if stop_at is not None:
        yolo.add_callback("on_fit_epoch_end", pause_after(int(stop_at)))
    start = time.time()
    try:
        yolo.train(**args)
    except Pause:
        close_loaders(yolo.trainer)
        return _paused(yolo.trainer)
    seconds = time.time() - start
    if _rank() > 0:  # torchrun worker: rank 0 writes the outputs
        return {}
    trainer = yolo.trainer
    weights = Path(trainer.best) if Path(trainer.best).exists() else Path(trainer.last)
    if not weights.exists():
        raise RuntimeError(f"ultralytics wrote no weights into {Path(trainer.save_dir) / 'weights'}")
    return _write_outputs(out, run, ds, data_yaml, YOLO, dev, imgsz, batch, metrics_obj=getattr(yolo, "metrics", None),
                          weights=weights, session_seconds=seconds, device=getattr(trainer, "device", dev))


def _finished_weights(out: Path) -> Path:
    folder = out / LAST.parent
    return next(p for p in (folder / "best.pt", folder / "last.pt") if p.is_file())


def _write_outputs(out: Path, run: dict, ds, data_yaml: Path, YOLO, dev, imgsz: int, batch: int, *, metrics_obj,
                   weights: Path, session_seconds: float | None, device) -> dict:
    """best.pt, curves, README.md, and metrics.json last (with best.pt, the mark of a finished run:
    a run stopped before it can be completed with --resume). metrics_obj: ultralytics' final
    validation, or None to validate best.pt here (DDP ran it in a subprocess; a completion has none).
    session_seconds: this session's training time, or None to take it from results.csv."""
    task = run["task"]
    best = out / "best.pt"
    tmp = out / "best.pt.tmp"
    if session_seconds is None:  # killed before ultralytics' end may have left it with its optimizer: strip as it does
        from ultralytics.utils.torch_utils import strip_optimizer

        strip_optimizer(weights, s=str(tmp))
    else:
        shutil.copyfile(weights, tmp)
    tmp.replace(best)
    if not hasattr(metrics_obj, "box"):
        val_device = dev[0] if isinstance(dev, list) else dev
        metrics_obj = YOLO(str(best)).val(data=str(data_yaml), imgsz=int(imgsz), batch=int(batch),
                                          device=val_device, plots=False, verbose=False,
                                          project=str(out), name="val", exist_ok=True)
    run_dir = out / "ultralytics"
    rows = _read_results_csv(run_dir / "results.csv")
    earlier = earlier_seconds(rows, run["resumed_from"])
    completed = session_seconds is None
    if completed:  # `time` is cumulative within a session: its epochs, not its start and final validation
        session_seconds = rows[-1]["time"] if rows and isinstance(rows[-1].get("time"), float) else 0.0
    metrics = {
        "task": task,
        "names": ds.names,
        **summarize_metrics(metrics_obj, ds.names),
        "epochs": run["epochs"],
        "epochs_completed": len(rows),
        "resumed_from": run["resumed_from"],
        "time_limit_minutes": run["time_limit"],
        "imgsz": int(imgsz),
        "batch": int(batch),
        "model": run["model"],
        "init": run["init"],
        "augment": augment_settings(run["augment"])[1],
        "data": str(ds.yaml_path),
        "data_hash": ds.data_hash(),
        "n_train": len(ds.images["train"]),
        "n_val": len(ds.images["val"]),
        "command": "\n".join(run["commands"]),
        "seconds": round(session_seconds + earlier, 2),
        "seconds_per_epoch": _seconds_per_epoch(rows, session_seconds + earlier, earlier),
        "device": str(device),
        "seed": run["seed"],
        "ultralytics": _ul_version(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **({"seconds_from": "results.csv (the epochs' time): the run stopped before its outputs, which a --resume "
                            "wrote"} if completed else {}),
    }
    if (run_dir / "results.png").exists():
        shutil.copyfile(run_dir / "results.png", out / "results.png")
    plot_curves(rows, out / "curves.png", title=f"{task} ({Path(run['model']).name})")
    (out / "README.md").write_text(model_card(metrics))
    write_json(out / "metrics.json", metrics)
    return metrics


def _paused(trainer) -> dict:
    done, total = trainer.epoch + 1, trainer.epochs
    if _rank() <= 0:
        print(f"paused after epoch {done} of {total}; continue with --resume", flush=True)
    return {"paused_after": done, "epochs": total}


def summarize_metrics(m, names: list[str]) -> dict:
    """mAP50, mAP50-95, precision, recall and per-class APs out of an ultralytics DetMetrics."""
    box = m.box
    per_class = {n: {"AP50": None, "AP50-95": None, "precision": None, "recall": None} for n in names}
    for i, c in enumerate(box.ap_class_index):
        c = int(c)
        if 0 <= c < len(names):
            per_class[names[c]] = {"AP50": float(box.ap50[i]), "AP50-95": float(box.ap[i]),
                                   "precision": float(box.p[i]), "recall": float(box.r[i])}
    return {"mAP50": float(box.map50), "mAP50-95": float(box.map), "precision": float(box.mp),
            "recall": float(box.mr), "per_class": per_class}


def _offline_amp_check() -> None:
    """ultralytics' AMP check downloads yolo26n.pt on CUDA; without that file, assume AMP works."""
    from ultralytics.engine import trainer as ul_trainer
    from ultralytics.utils import WEIGHTS_DIR

    if not (Path(WEIGHTS_DIR) / "yolo26n.pt").is_file():
        ul_trainer.check_amp = lambda model: True


def _without_polars() -> bool:
    """ultralytics reads results.csv with polars each epoch and plots labels with it; the GPU
    image has no polars (its runtime wheel, 54 MB, is too big to carry). There, read the CSV
    with the csv module and skip ultralytics' own plots (curves.png is ours). True if patched."""
    try:
        import polars  # noqa: F401
        return False
    except ImportError:
        pass
    from ultralytics.engine.trainer import BaseTrainer

    def read_results_csv(self) -> dict:
        try:
            rows = list(csv.DictReader(self.csv.read_text().splitlines()))
        except OSError:
            return {}
        return {k.strip(): [float(r[k]) for r in rows] for k in rows[0]} if rows else {}

    BaseTrainer.read_results_csv = read_results_csv
    return True


def _rank() -> int:
    """This process's torch.distributed rank (torchrun sets RANK), -1 outside distributed runs."""
    import os

    return int(os.environ.get("RANK", -1))


def _ul_version() -> str:
    import ultralytics

    return ultralytics.__version__


def _api_command(task: str, data, model: str, out: Path, **values) -> str:
    return (f"detection.train.train(task={task!r}, data={str(data)!r}, model={model!r}, out={str(out)!r}, "
            + ", ".join(f"{k}={v!r}" for k, v in values.items()) + ")")


def _seconds_per_epoch(rows: list[dict], total: float, earlier: float = 0.0) -> float:
    """Training + per-epoch validation time from results.csv's cumulative `time` column (no setup,
    no final validation), `earlier` sessions' included; the whole run divided by the epochs when the
    column is missing."""
    last = rows[-1].get("time") if rows else None
    return round((earlier + last if isinstance(last, float) else total) / max(len(rows), 1), 2)


def _read_results_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as f:
        rows = []
        for row in csv.DictReader(f):
            rows.append({k.strip(): _num(v) for k, v in row.items() if k})
        return rows


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def plot_curves(rows: list[dict], path: Path, title: str = "") -> Path:
    """Losses and validation metrics per epoch from ultralytics' results.csv."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("box loss", ["train/box_loss", "val/box_loss"]),
        ("cls loss", ["train/cls_loss", "val/cls_loss"]),
        ("dfl loss", ["train/dfl_loss", "val/dfl_loss"]),
        ("precision / recall", ["metrics/precision(B)", "metrics/recall(B)"]),
        ("mAP", ["metrics/mAP50(B)", "metrics/mAP50-95(B)"]),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    epochs = [r.get("epoch", i + 1) for i, r in enumerate(rows)]
    for ax, (name, keys) in zip(axes, panels):
        for key in keys:
            ys = [r.get(key) for r in rows]
            if ys and all(isinstance(y, float) for y in ys):
                ax.plot(epochs, ys, marker="." if len(ys) < 30 else None, label=key.removeprefix("metrics/"))
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def model_card(m: dict) -> str:
    def f(x):
        return "-" if x is None else f"{x:.3f}"

    after = m.get("resumed_from") or []
    resumed = f" (resumed after epoch {', '.join(map(str, after))})" if after else ""
    lines = [
        f"# gendet {m['task']} detector",
        "",
        f"YOLO detector for **{', '.join(m['names'])}**, trained by `detection.train` "
        f"(ultralytics {m['ultralytics']}), {m['created']}.",
        "",
        "## Data",
        "",
        f"- data.yaml: `{m['data']}`",
        f"- images: {m['n_train']} train, {m['n_val']} val",
        f"- data hash (sha256 of data.yaml, images and labels): `{m['data_hash']}`",
        f"- augmentation: {m['augment']}",
        "",
        "## Training",
        "",
        f"- model: `{m['model']}`, {m['init']}",
        f"- epochs: {m['epochs_completed']} of {m['epochs']}{resumed}, imgsz {m['imgsz']}, batch {m['batch']}, "
        f"device {m['device']}, seed {m['seed']}, {m['seconds']:.0f} s ({m['seconds_per_epoch']:.1f} s/epoch)",
        "",
        "```",
        m["command"],
        "```",
        "",
        "## Validation metrics (best.pt, val split)",
        "",
        "| class | AP50 | AP50-95 | precision | recall |",
        "|-------|------|---------|-----------|--------|",
        f"| **all** | {f(m['mAP50'])} | {f(m['mAP50-95'])} | {f(m['precision'])} | {f(m['recall'])} |",
    ]
    for name, c in m["per_class"].items():
        lines.append(f"| {name} | {f(c['AP50'])} | {f(c['AP50-95'])} | {f(c['precision'])} | {f(c['recall'])} |")
    if any(c["AP50"] is None for c in m["per_class"].values()):
        lines += ["", "`-`: the class has no object in the val split, so its AP is undefined."]
    lines += ["", "Training curves: `curves.png`. Weights: `best.pt`. Use with "
              "`detection.detector.Detector.load('best.pt')`.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m detection.train", description=__doc__.split("\n\n")[0],
                                epilog="See the module docstring (python -c 'import detection.train as t; "
                                       "help(t)') for augmentation and multi-GPU notes.")
    p.add_argument("--task", required=True, choices=sorted(TASKS), help="which detector")
    p.add_argument("--data", required=True, help="data.yaml, YOLO dataset folder, or scenes root (DATA/<task>/)")
    p.add_argument("--model", default="yolo11n.yaml",
                   help="model YAML to train from scratch, or a local .pt to fine-tune (default yolo11n.yaml)")
    p.add_argument("--epochs", type=int, default=50, help="training epochs (default 50)")
    p.add_argument("--imgsz", type=int, default=128, help="training image size in pixels (default 128)")
    p.add_argument("--batch", type=int, default=16, help="images per batch (default 16)")
    p.add_argument("--device", default="cpu", help="cpu, 0, or 0,1 for multi-GPU DDP (default cpu)")
    p.add_argument("--out", required=True, help="output folder (best.pt, metrics.json, curves.png, README.md): "
                                                "new or empty, or a run's to --resume")
    p.add_argument("--workers", type=int, default=2,
                   help="dataloader workers on a GPU (default 2; ultralytics loads in the main process on "
                        "CPU and MPS)")
    p.add_argument("--augment", default="default", choices=AUGMENT_MODES,
                   help="ultralytics' augmentation (default), a light set without mosaic, or none")
    p.add_argument("--patience", type=int, default=50, help="early-stopping patience in epochs (default 50)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    p.add_argument("--time-limit", type=float, default=None, metavar="MIN",
                   help="train for about this many minutes: ultralytics fits the number of epochs (and the "
                        "learning-rate schedule) to the time, overriding --epochs")
    p.add_argument("--no-plots", action="store_true", help="skip ultralytics' plots (curves.png is still written)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted or paused run in --out from its ultralytics/weights/last.pt "
                        "(--model, --epochs, --augment and --seed are then the run's own)")
    p.add_argument("--stop-at", type=int, default=None, metavar="EPOCH",
                   help="pause after this epoch, last.pt kept resumable; continue later with --resume")
    p.add_argument("--quiet", action="store_true", help="no ultralytics log or progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        m = train(data=a.data, task=a.task, out=a.out, model=a.model, epochs=a.epochs, imgsz=a.imgsz, batch=a.batch,
                  device=a.device, workers=a.workers, augment=a.augment, patience=a.patience, seed=a.seed,
                  time_limit=a.time_limit, plots=not a.no_plots, verbose=not a.quiet, resume=a.resume,
                  stop_at=a.stop_at, command=command_line() if argv is None else
                  "python -m detection.train " + " ".join(argv))
    except KeyboardInterrupt:
        last = Path(a.out).expanduser().resolve() / LAST
        print("\n" + (f"interrupted: {last} holds the last finished epoch; the same command with --resume goes on "
                      "from there" if last.is_file() else
                      f"interrupted before an epoch ended: nothing to resume in {a.out}; run the same command again"),
              file=sys.stderr)
        return 130
    if not m or "paused_after" in m:  # a torchrun worker other than rank 0, or --stop-at (train printed it)
        return 0
    print(f"{a.task}: mAP50 {m['mAP50']:.3f}  mAP50-95 {m['mAP50-95']:.3f}  "
          f"({m['epochs_completed']} epoch{'s' * (m['epochs_completed'] != 1)}, {m['seconds']:.0f} s) -> "
          f"{Path(a.out) / 'best.pt'}")
    return 0


if __name__ == "__main__":
    run_cli(main)
