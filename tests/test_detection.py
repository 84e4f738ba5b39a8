"""detection/: train a tiny YOLO once on procedural scenes (CPU), then check every entry point:
outputs and metrics files, Detector input types and pixel coordinates, evaluate, predict, errors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from detection import evaluate as det_eval
from detection import predict as det_predict
from detection import train as det_train
from detection._common import UsageError
from detection.detector import Detector


@pytest.fixture(scope="module")
def trained(tiny_detector):
    return tiny_detector


def test_training_writes_weights_metrics_curves_and_card(trained):
    scenes, out = trained
    for name in ("best.pt", "metrics.json", "curves.png", "README.md"):
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())
    assert m["names"] == ["cat", "dog"] and m["epochs"] == 2 and m["imgsz"] == 64
    assert set(m["per_class"]) == {"cat", "dog"} and 0 <= m["mAP50-95"] <= m["mAP50"] <= 1
    assert len(m["data_hash"]) == 64
    assert "datasets.augment albumentations (GaussianBlur" in m["augment"]  # ours, on top of ultralytics'
    card = (out / "README.md").read_text()
    assert "detection.train" in card and "AP50-95" in card and m["data_hash"] in card


def test_detector_inputs_agree_and_boxes_are_in_input_pixels(trained):
    scenes, out = trained
    det = Detector.load(out / "best.pt", device="cpu")
    assert det.names == ["cat", "dog"] and det.card["imgsz"] == 64
    arr = np.asarray(Image.open(next((scenes / "images" / "val").iterdir())).convert("RGB"))
    pil = Image.fromarray(arr)
    tensor = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)
    a, b, c = det.detect([arr], conf=0.001)[0], det.detect(pil, conf=0.001)[0], det.detect(tensor, conf=0.001)[0]
    assert len(a) > 0
    assert [d.to_dict() for d in a] == [d.to_dict() for d in b] == [d.to_dict() for d in c]
    # the same picture at twice the size (nearest): the network sees identical pixels, boxes scale by 2
    big = np.repeat(np.repeat(arr, 2, axis=0), 2, axis=1)
    d_big = det.detect([big], conf=0.001)[0]
    assert len(d_big) == len(a)
    assert np.allclose([d.box for d in d_big], [np.array(d.box) * 2 for d in a], atol=0.05)
    assert json.loads(a.to_json())["width"] == 64
    two = det.detect([arr, big], conf=0.001)  # one batch, mixed sizes
    assert [d.to_dict() for d in two[0]] == [d.to_dict() for d in a]


def test_evaluate_reports_both_implementations(trained, tmp_path):
    scenes, out = trained
    r = det_eval.evaluate(out / "best.pt", scenes, out=tmp_path, device="cpu")
    assert r["images"] == 6 and set(r["pycocotools"]["per_class"]) <= {"cat", "dog"}
    gaps = [abs(r["pycocotools"][k] - r["ultralytics"][k]) for k in ("mAP50", "mAP50-95")]
    assert r["max_gap"] == pytest.approx(max(gaps))
    assert r["agree"] == (r["max_gap"] <= 0.02)
    assert (tmp_path / "eval.json").is_file() and (tmp_path / "pr_curve.png").is_file()


def test_predict_draws_and_writes_json(trained, tmp_path):
    scenes, out = trained
    images = sorted((scenes / "images" / "val").iterdir())[:2]
    written = det_predict.predict(out / "best.pt", images, tmp_path, conf=0.001, progress=False)
    assert [p.name for p in written] == [p.stem + ".png" for p in images]
    rec = json.loads((tmp_path / f"{images[0].stem}.json").read_text())
    assert rec["names"] == ["cat", "dog"] and rec["width"] == 64 and rec["detections"]
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(UsageError, match=r"bad\.png: not a readable image"):
        det_predict.predict(out / "best.pt", [tmp_path / "bad.png"], tmp_path / "o", progress=False)


def test_hub_names_and_bad_datasets_are_refused(trained, tmp_path, capsys):
    scenes, _ = trained
    base = ["--task", "catdog", "--epochs", "1", "--imgsz", "64", "--device", "cpu", "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as e:
        from detection._common import run_cli
        run_cli(det_train.main, ["--data", str(scenes), "--model", "yolov8n.pt", *base])
    assert e.value.code == 2 and "local" in capsys.readouterr().err
    label = next((scenes / "catdog" / "labels" / "train").glob("*.txt"))
    saved = label.read_text()
    label.write_text("5 0.5 0.5 0.1 0.1\n")
    try:
        with pytest.raises(SystemExit) as e:
            run_cli(det_train.main, ["--data", str(scenes), "--model", "yolov8n.yaml", *base])
        err = capsys.readouterr().err
        assert e.value.code == 2 and f"{label.name}:1" in err and "5" in err
    finally:
        label.write_text(saved)
    with pytest.raises(UsageError, match="does not exist|no such file|not found"):
        Detector.load(tmp_path / "missing.pt")
