"""detection/: train a tiny YOLO once on procedural scenes (CPU), then check every entry point:
outputs and metrics files, Detector input types and pixel coordinates, evaluate, predict, errors."""

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
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
    # the legend of `-` cells only where a class has one
    assert ("`-`: the class has no object" in card) == any(c["AP50"] is None for c in m["per_class"].values())


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
    # the cross-check scores ultralytics' own predictions; the detector column scores Detector.detect
    from detection.coco_metrics import coco_map, ground_truth_coco, predictions_coco
    from detection.data import load_dataset

    val = load_dataset(scenes, "catdog", splits=("val",))
    assert r["split_hash"] == val.data_hash() != json.loads((out / "metrics.json").read_text())["data_hash"]
    gt = ground_truth_coco(val, "val")
    assert r["predictions"] > 0 and len(gt["images"]) == 6
    own = coco_map(gt, predictions_coco(Detector.load(out / "best.pt", device="cpu"), gt))
    assert r["detector"]["mAP50"] == pytest.approx(own["mAP50"]) and r["detector"]["mAP50-95"] == pytest.approx(own["mAP50-95"])


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
    # a folder stands for its images (sorted, other files skipped), decoded a batch at a time
    folder = tmp_path / "folder"
    folder.mkdir()
    for image in images:
        (folder / image.name).write_bytes(image.read_bytes())
    (folder / "notes.txt").write_text("not an image")
    again = det_predict.predict(out / "best.pt", [folder], tmp_path / "f", conf=0.001, progress=False, batch=1)
    assert [p.name for p in again] == [p.name for p in written]
    assert all(json.loads((tmp_path / "f" / f"{i.stem}.json").read_text())["detections"] ==
               json.loads((tmp_path / f"{i.stem}.json").read_text())["detections"] for i in images)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="empty: a folder with no image files"):
        det_predict.predict(out / "best.pt", [tmp_path / "empty"], tmp_path / "o", progress=False)
    truncated = tmp_path / "truncated.png"  # a PNG cut short: its header reads, its chunks do not
    truncated.write_bytes(images[0].read_bytes()[:200])
    with pytest.raises(UsageError, match=r"truncated\.png: not a readable image"):
        det_predict.predict(out / "best.pt", [images[0], truncated], tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()  # found before any model time or output


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
    with pytest.raises(UsageError, match=r"yolo11n\.pt: no such file \(a bare hub name.*pass a local file"):
        Detector.load("yolo11n.pt")


def test_fine_tune_from_a_local_checkpoint_on_another_task(trained, tmp_path):
    """--model PATH.pt: the cat/dog weights start a 1-class face run (ultralytics rebuilds the head)."""
    scenes, out = trained
    m = det_train.train(data=scenes, task="face", out=tmp_path / "face", model=str(out / "best.pt"), epochs=1,
                        imgsz=64, batch=8, device="cpu", workers=0, plots=False, augment="none")
    assert m["init"] == f"fine-tuned from {out / 'best.pt'}" and m["names"] == ["face"]
    assert list(m["per_class"]) == ["face"] and m["augment"].startswith("none")
    assert Detector.load(tmp_path / "face" / "best.pt", device="cpu").names == ["face"]


# ------------------------------------------------------------------ metrics.json against a re-computation
def test_metrics_json_equals_a_recomputation(trained):
    """Every number in metrics.json comes back when recomputed: ultralytics val of best.pt on the
    same data, the dataset hash, the split sizes and the epoch count in results.csv."""
    from ultralytics import YOLO

    from detection.data import load_dataset

    scenes, out = trained
    m = json.loads((out / "metrics.json").read_text())
    v = YOLO(str(out / "best.pt")).val(data=str(out / "data.yaml"), imgsz=64, batch=16, device="cpu", plots=False,
                                       verbose=False, project=str(out), name="reval", exist_ok=True)
    again = det_train.summarize_metrics(v, ["cat", "dog"])
    for key in ("mAP50", "mAP50-95", "precision", "recall"):
        assert m[key] == pytest.approx(again[key], abs=1e-9), key
    assert m["per_class"] == again["per_class"]
    ds = load_dataset(scenes, "catdog")
    assert m["data_hash"] == ds.data_hash() and (m["n_train"], m["n_val"]) == (18, 6)
    rows = (out / "ultralytics" / "results.csv").read_text().strip().splitlines()
    assert m["epochs_completed"] == len(rows) - 1 == 2
    assert m["seconds_per_epoch"] == pytest.approx(float(rows[-1].split(",")[1]) / 2, abs=0.01)
    # the hash pins image bytes too: flip one pixel of one image and it changes
    image = ds.images["val"][0]
    saved = image.read_bytes()
    try:
        arr = np.asarray(Image.open(image).convert("RGB")).copy()
        arr[0, 0] ^= 1
        Image.fromarray(arr).save(image)
        assert load_dataset(scenes, "catdog").data_hash() != m["data_hash"]
    finally:
        image.write_bytes(saved)


def test_summarize_metrics_puts_each_ap_under_its_class():
    """ultralytics lists APs only for classes present in val (ap_class_index); they must land on the
    right names, and an absent class is None, not 0."""
    class Box:
        ap_class_index = np.array([1])
        ap50, ap, p, r = np.array([0.8]), np.array([0.5]), np.array([0.9]), np.array([0.7])
        map50, map, mp, mr = 0.8, 0.5, 0.9, 0.7

    class Metrics:
        box = Box()

    s = det_train.summarize_metrics(Metrics(), ["cat", "dog"])
    assert s["per_class"]["dog"] == {"AP50": 0.8, "AP50-95": 0.5, "precision": 0.9, "recall": 0.7}
    assert s["per_class"]["cat"] == {"AP50": None, "AP50-95": None, "precision": None, "recall": None}
    assert (s["mAP50"], s["mAP50-95"], s["precision"], s["recall"]) == (0.8, 0.5, 0.9, 0.7)


# ------------------------------------------------------------------ COCOeval known answers
def _gt(boxes, names=("cat",)):
    images = [{"id": i, "file_name": f"{i}.png", "width": 100, "height": 100} for i in range(1, len(boxes) + 1)]
    anns = [{"id": k + 1, "image_id": i, "category_id": c + 1, "bbox": list(b), "area": b[2] * b[3], "iscrowd": 0}
            for k, (i, c, b) in enumerate((i, c, b) for i, bs in enumerate(boxes, 1) for c, b in bs)]
    return {"images": images, "annotations": anns, "categories": [{"id": k + 1, "name": n} for k, n in enumerate(names)]}


def test_coco_iou_exactly_06_passes_050_to_060_only():
    from detection.coco_metrics import coco_map

    g = _gt([[(0, (0, 0, 50, 50))]])
    # [0, 0, 50, 30] inside [0, 0, 50, 50]: IoU = 1500 / 2500 = 0.6 exactly; COCO matches when IoU >= t
    m = coco_map(g, [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 30], "score": 0.9}])
    assert m["mAP50"] == pytest.approx(1.0) and m["mAP75"] == pytest.approx(0.0)
    assert m["mAP50-95"] == pytest.approx(0.3)  # thresholds 0.50, 0.55, 0.60 of ten


def test_coco_false_positive_between_two_hits_costs_a_hand_computed_amount():
    from detection.coco_metrics import coco_map

    g = _gt([[(0, (0, 0, 20, 20))], [(0, (40, 40, 20, 20))]])
    p = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20], "score": 0.9},
         {"image_id": 1, "category_id": 1, "bbox": [70, 70, 20, 20], "score": 0.8},  # false positive
         {"image_id": 2, "category_id": 1, "bbox": [40, 40, 20, 20], "score": 0.7}]
    # ranked TP, FP, TP: recall .5 at precision 1, recall 1 at precision 2/3. Of COCO's 101 recall
    # points, 0.00..0.50 (51) read 1 and 0.51..1.00 (50) read 2/3.
    expected = (51 * 1 + 50 * 2 / 3) / 101
    m = coco_map(g, p)
    assert m["mAP50"] == pytest.approx(expected) and m["mAP50-95"] == pytest.approx(expected)
    assert m["per_class"]["cat"]["AP50"] == pytest.approx(expected)


# ------------------------------------------------------------------ Detector input kinds
def test_detector_grey_rgba_batches_and_empty_input(trained):
    scenes, out = trained
    det = Detector.load(out / "best.pt", device="cpu")
    paths = sorted((scenes / "images" / "val").iterdir())[:2]
    arrs = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    as_dicts = lambda ds: [[d.to_dict() for d in x] for x in ds]  # noqa: E731
    ref = as_dicts(det.detect(arrs, conf=0.001))
    batch = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float() / 255
    assert as_dicts(det.detect(batch, conf=0.001)) == ref  # one [B,3,H,W] tensor = the list
    assert as_dicts(det.detect(np.stack(arrs), conf=0.001)) == ref  # a BxHxWx3 array too
    rgba = Image.fromarray(np.dstack([arrs[0], np.full(arrs[0].shape[:2], 255, np.uint8)]), "RGBA")
    assert as_dicts(det.detect([rgba], conf=0.001)) == ref[:1]  # opaque alpha dropped
    grey = arrs[0][..., 1]
    assert as_dicts(det.detect([grey], conf=0.001)) == as_dicts(det.detect([np.dstack([grey] * 3)], conf=0.001))
    assert as_dicts(det.detect([Image.fromarray(grey, "L")], conf=0.001)) == as_dicts(det.detect([grey], conf=0.001))
    with pytest.raises(ValueError, match="empty list"):
        det.detect([])
    with pytest.raises(UsageError, match=r"image 0: expected an HxWx3"):
        det.detect([np.zeros((8, 8, 5), np.uint8)])


# ------------------------------------------------------------------ bad datasets, CLIs
def _tiny_yolo(root, label_text):
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(root / "images" / "train" / "a.png")
    (root / "labels" / "train" / "a.txt").write_text(label_text)
    (root / "data.yaml").write_text("train: images/train\nval: images/train\nnames: [cat, dog]\n")
    return root


@pytest.mark.parametrize("text, message", [
    ("0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2\n", r"a\.txt:2: expected 5 columns"),
    ("5 0.5 0.5 0.2 0.2\n", r"a\.txt:1: class id 5 out of range for 2"),
    ("0 0.5 0.5 1.7 0.2\n", r"a\.txt:1: box values must be normalised"),
    ("0 0.5 0.5 0 0.1\n", r"a\.txt:1: box width and height must be > 0"),  # a zero-area box
    ("0 0.5 0.5 0.1 0\n", r"a\.txt:1: box width and height must be > 0"),
])
def test_bad_labels_name_file_and_line(tmp_path, capsys, text, message):
    from detection._common import run_cli

    data = _tiny_yolo(tmp_path / "ds", text)
    with pytest.raises(SystemExit) as e:
        run_cli(det_train.main, ["--task", "catdog", "--data", str(data), "--model", "yolov8n.yaml", "--epochs", "1",
                                 "--device", "cpu", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
    assert not (tmp_path / "o").exists()  # refused before any output


def test_missing_data_yaml_and_wrong_names(tmp_path):
    from detection._common import DataError
    from detection.data import load_dataset

    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: missing data\.yaml \(looked for .*empty/data\.yaml and "
                                         r".*empty/catdog/data\.yaml\)"):
        load_dataset(tmp_path / "empty", "catdog")
    data = _tiny_yolo(tmp_path / "ds", "0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DataError, match=r"data\.yaml: names \['cat', 'dog'\] do not match task 'face'"):
        load_dataset(data, "face")


def test_cli_entry_points(trained, tmp_path, capsys):
    scenes, out = trained
    with pytest.raises(SystemExit) as e:
        from detection._common import run_cli
        run_cli(det_eval.main, ["--model", str(out / "best.pt"), "--data", str(scenes), "--out", str(tmp_path / "ev"),
                                "--device", "cpu"])
    text = capsys.readouterr().out
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert e.value.code == 0 and "pycocotools" in text and "ultralytics" in text and "cat AP50" in text
    assert f"{report['pycocotools']['mAP50']:.4f}" in text and f"{report['ultralytics']['mAP50']:.4f}" in text
    assert det_eval.COLUMNS in text and f"pycocotools against ultralytics: {report['max_gap']:.4f}" in text
    image = sorted((scenes / "images" / "val").iterdir())[0]
    assert det_predict.main(["--model", str(out / "best.pt"), str(image), "--out", str(tmp_path / "p"),
                             "--conf", "0.001"]) == 0
    rec = json.loads((tmp_path / "p" / f"{image.stem}.json").read_text())
    direct = Detector.load(out / "best.pt", device="cpu").detect(Image.open(image), conf=0.001)[0]
    assert rec["detections"] == direct.to_dict()["detections"]
    drawn = np.asarray(Image.open(tmp_path / "p" / f"{image.stem}.png"))
    assert drawn.shape == (64, 64, 3) and (drawn != np.asarray(Image.open(image).convert("RGB"))).any()
    assert rec["imgsz"] == 64  # the model's own size by default; --imgsz reaches the model, rounded as it runs
    assert det_predict.main(["--model", str(out / "best.pt"), str(image), "--out", str(tmp_path / "p96"),
                             "--conf", "0.001", "--imgsz", "90"]) == 0
    rec96 = json.loads((tmp_path / "p96" / f"{image.stem}.json").read_text())
    at96 = Detector.load(out / "best.pt", device="cpu").detect(Image.open(image), conf=0.001, imgsz=96)[0]
    assert rec96["imgsz"] == 96 and rec96["detections"] == at96.to_dict()["detections"] != rec["detections"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:  # refused before the model loads, without ultralytics' traceback
        det_predict.main(["--model", str(out / "best.pt"), str(image), "--out", str(tmp_path / "q"), "--conf", "2"])
    assert exit_.value.code == 2 and "--conf must be in [0, 1], got 2.0" in capsys.readouterr().err


def test_predict_interrupted_mid_write_keeps_the_earlier_outputs_whole(trained, tmp_path, monkeypatch):
    """A Ctrl-C while a PNG or its JSON is being written leaves the earlier run's file as it was,
    never half a file under the final name, and the folder still takes the same command again
    (its JSON comes first: a PNG without one read as the user's own and was refused)."""
    from PIL import Image

    scenes, out = trained
    image = sorted((scenes / "images" / "val").iterdir())[0]
    det_predict.predict(out / "best.pt", [image], tmp_path, conf=0.001, progress=False)
    png, record = tmp_path / f"{image.stem}.png", tmp_path / f"{image.stem}.json"
    before = png.read_bytes(), record.read_text()
    real_save = Image.Image.save

    def save_half(self, fp, *args, **kwargs):
        real_save(self, fp, *args, **kwargs)
        raise KeyboardInterrupt  # while the PNG is being made

    monkeypatch.setattr(Image.Image, "save", save_half)
    with pytest.raises(KeyboardInterrupt):
        det_predict.predict(out / "best.pt", [image], tmp_path, conf=0.5, progress=False)
    monkeypatch.undo()
    assert png.read_bytes() == before[0] and json.loads(record.read_text())["image"] == str(image)
    det_predict.predict(out / "best.pt", [image], tmp_path, conf=0.001, progress=False)  # the folder takes it again
    assert (png.read_bytes(), record.read_text()) == before
    real_write = Path.write_bytes

    def write_half(self, data, *args, **kwargs):
        real_write(self, data[:10], *args, **kwargs)  # the bytes so far, then the Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_bytes", write_half)
    with pytest.raises(KeyboardInterrupt):
        det_predict.predict(out / "best.pt", [image], tmp_path, conf=0.5, progress=False)
    monkeypatch.undo()
    assert png.read_bytes() == before[0] and json.loads(record.read_text())["image"] == str(image)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([png.name, record.name])  # no .tmp left
    det_predict.predict(out / "best.pt", [image], tmp_path, conf=0.001, progress=False)  # again: not refused
    assert (png.read_bytes(), record.read_text()) == before
    first = tmp_path / "first"  # a first run into a new folder, stopped at its first JSON
    monkeypatch.setattr(Path, "write_bytes", write_half)
    with pytest.raises(KeyboardInterrupt):
        det_predict.predict(out / "best.pt", [image], first, conf=0.001, progress=False)
    monkeypatch.undo()
    det_predict.predict(out / "best.pt", [image], first, conf=0.001, progress=False)  # not refused as "the user's"
    assert (first / png.name).read_bytes() == before[0]


def test_predict_never_writes_over_files_it_did_not_write(trained, tmp_path):
    """OUT/<stem>.png and .json were written over whatever was there: a user's own photo.png in the
    folder was lost to the drawing of photo.jpg. An earlier predict's outputs are still replaced."""
    scenes, out = trained
    image = sorted((scenes / "images" / "val").iterdir())[0]
    photo = tmp_path / "in" / "photo.jpg"
    photo.parent.mkdir()
    Image.open(image).convert("RGB").save(photo)
    results = tmp_path / "results"
    results.mkdir()
    (results / "photo.png").write_bytes(b"the user's own picture")
    with pytest.raises(UsageError, match=r"photo\.png there is not an earlier detection\.predict output"):
        det_predict.predict(out / "best.pt", [photo], results, progress=False)
    assert (results / "photo.png").read_bytes() == b"the user's own picture"
    (results / "photo.png").unlink()
    (results / "photo.json").write_text('{"mine": 1}')
    with pytest.raises(UsageError, match=r"photo\.json there is not"):
        det_predict.predict(out / "best.pt", [photo], results, progress=False)
    (results / "photo.json").unlink()
    det_predict.predict(out / "best.pt", [photo], results, conf=0.001, progress=False)
    first = json.loads((results / "photo.json").read_text())
    det_predict.predict(out / "best.pt", [photo], results, conf=0.5, progress=False)  # its own: replaced
    assert json.loads((results / "photo.json").read_text())["detections"] == \
        [d for d in first["detections"] if d["confidence"] >= 0.5]
    # its PNG without the JSON (deleted by hand): still known as its own by the PNG's text, replaced
    (results / "photo.json").unlink()
    det_predict.predict(out / "best.pt", [photo], results, progress=False)
    assert (results / "photo.json").is_file()


def test_coco_metrics_agree_with_ultralytics_ap_on_random_predictions():
    """A second, independent implementation on the same synthetic predictions: ultralytics'
    greedy matching (match_predictions) + ap_per_class. Catches a misread COCOeval result (stats
    index, precision-array axis, class order); the two interpolate differently (COCO sums 101
    points, ultralytics integrates them with the trapezoid rule), so equal only to ~0.01."""
    from ultralytics.engine.validator import BaseValidator
    from ultralytics.utils.metrics import ap_per_class, box_iou

    from detection.coco_metrics import coco_map

    class Thresholds:
        iouv = torch.linspace(0.5, 0.95, 10)

    rng = np.random.default_rng(0)
    images, anns, preds, tps, confs, pcls, tcls = [], [], [], [], [], [], []
    for i in range(1, 31):
        images.append({"id": i, "file_name": f"{i}.png", "width": 200, "height": 200})
        truth = [(int(rng.integers(0, 2)), *rng.uniform(0, 140, 2), *rng.uniform(15, 60, 2))
                 for _ in range(rng.integers(0, 4))]
        guess = []
        for c, x, y, w, h in truth:
            if rng.random() < 0.85:  # found, jittered, sometimes with the wrong class
                jx, jy, jw, jh = rng.normal(0, 0.12, 4) * [w, h, w, h]
                guess.append((c if rng.random() < 0.9 else 1 - c, x + jx, y + jy, max(w + jw, 2), max(h + jh, 2),
                              rng.uniform(0.3, 1)))
        guess += [(int(rng.integers(0, 2)), *rng.uniform(0, 140, 2), *rng.uniform(15, 60, 2), rng.uniform(0, 0.8))
                  for _ in range(rng.integers(0, 3))]  # false positives
        guess.sort(key=lambda t: -t[-1])
        anns += [{"id": len(anns) + k + 1, "image_id": i, "category_id": c + 1, "bbox": [x, y, w, h], "area": w * h,
                  "iscrowd": 0} for k, (c, x, y, w, h) in enumerate(truth)]
        preds += [{"image_id": i, "category_id": c + 1, "bbox": [x, y, w, h], "score": s} for c, x, y, w, h, s in guess]
        tcls += [t[0] for t in truth]
        if guess:
            xyxy = lambda bs: torch.tensor([[x, y, x + w, y + h] for _, x, y, w, h, *_ in bs], dtype=torch.float64)  # noqa: E731
            tp = (BaseValidator.match_predictions(Thresholds(), torch.tensor([g[0] for g in guess]),
                                                  torch.tensor([t[0] for t in truth]), box_iou(xyxy(truth), xyxy(guess)))
                  .numpy() if truth else np.zeros((len(guess), 10), bool))
            tps.append(tp)
            confs += [g[-1] for g in guess]
            pcls += [g[0] for g in guess]
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}
    ap = ap_per_class(np.concatenate(tps), np.array(confs), np.array(pcls), np.array(tcls))[5]  # [class, IoU]
    m = coco_map(gt, preds)
    assert 0.2 < m["mAP50"] < 0.9  # a non-trivial case
    assert m["mAP50"] == pytest.approx(ap[:, 0].mean(), abs=0.01)
    assert m["mAP50-95"] == pytest.approx(ap.mean(), abs=0.01)
    for k, name in enumerate(["cat", "dog"]):
        assert m["per_class"][name]["AP50"] == pytest.approx(ap[k, 0], abs=0.015)
        assert m["per_class"][name]["AP50-95"] == pytest.approx(ap[k].mean(), abs=0.015)


def test_model_and_device_arguments():
    assert det_train.resolve_model("yolo11n.yaml") == ("yolo11n.yaml", "yaml")  # ultralytics' bundled config
    assert det_train.resolve_model("yolov8n.yaml") == ("yolov8n.yaml", "yaml")
    for bad, message in (("yolo99z.yaml", "no such model YAML"), ("yolov8n", "expected a model YAML"),
                         ("yolov8n.pt", r"bare hub name.*pass a local file")):
        with pytest.raises(UsageError, match=message):
            det_train.resolve_model(bad)
    assert [det_train.parse_device(d) for d in ("cpu", "0", "cuda", "cuda:1", "0,1", " 2,3 ")] == ["cpu", 0, 0, 1, [0, 1], [2, 3]]
    with pytest.raises(UsageError, match="--device 'gpu'"):
        det_train.parse_device("gpu")


def test_ultralytics_predictions_are_mapped_by_file_name(tmp_path):
    from detection.coco_metrics import coco_map, predictions_from_ultralytics

    g = _gt([[(0, (0, 0, 20, 20))], [(1, (10, 10, 30, 30))]], names=("cat", "dog"))
    g["images"][0]["file_name"], g["images"][1]["file_name"] = "/d/images/val/000007.png", "/d/images/val/b.png"
    # ultralytics keys images by stem (an int when numeric) and keeps file_name; ids here are 1 and 2
    (tmp_path / "p.json").write_text(json.dumps([
        {"image_id": "b", "file_name": "b.png", "category_id": 2, "bbox": [10, 10, 30, 30], "score": 0.5},
        {"image_id": 7, "file_name": "000007.png", "category_id": 1, "bbox": [0, 0, 20, 20], "score": 0.9}]))
    preds = predictions_from_ultralytics(tmp_path / "p.json", g)
    assert [(p["image_id"], p["category_id"]) for p in preds] == [(2, 2), (1, 1)]
    assert coco_map(g, preds)["mAP50-95"] == pytest.approx(1.0)
    (tmp_path / "q.json").write_text(json.dumps([{"file_name": "zz.png", "category_id": 1, "bbox": [0, 0, 1, 1],
                                                  "score": 0.1, "image_id": "zz"}]))
    with pytest.raises(ValueError, match=r"q\.json: prediction for 'zz\.png'"):
        predictions_from_ultralytics(tmp_path / "q.json", g)


def test_predict_defaults_to_the_demo_bundle_and_names_it_when_missing(tmp_path, monkeypatch):
    from detection import _common

    monkeypatch.setattr(_common, "DEMO", tmp_path / "demo")
    with pytest.raises(UsageError, match=r"demo face detector .*face.pt is not built yet: run `make demo-models`"):
        det_predict.resolve_model("face")
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "catdog.pt").write_bytes(b"x")
    assert det_predict.resolve_model("catdog") == tmp_path / "demo" / "catdog.pt"
    assert str(det_predict.resolve_model("runs/x/best.pt")) == "runs/x/best.pt"
    # a name that is neither: the message offers the shortcuts too
    with pytest.raises(UsageError, match=r"^dog: expected a local \.pt weights file, or catdog / face for the demo"):
        det_predict.resolve_model("dog")


def test_evaluate_takes_the_demo_shortcuts_as_predict_does(trained, tmp_path, monkeypatch):
    from detection import _common

    scenes, out = trained
    monkeypatch.setattr(_common, "DEMO", tmp_path / "demo")
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "catdog.pt").write_bytes((out / "best.pt").read_bytes())
    r = det_eval.evaluate("catdog", scenes, out=tmp_path / "ev", device="cpu")
    assert r["model"] == str(tmp_path / "demo" / "catdog.pt") and (tmp_path / "ev" / "eval.json").is_file()
    assert det_eval.default_out("catdog") == Path("runs/eval-catdog")  # the shipped bundle stays untouched
    assert det_eval.default_out(out / "best.pt") == out / "eval"


@pytest.mark.parametrize("imgsz", ["-64", "0", "16"])
def test_evaluate_refuses_imgsz_below_32_as_train_does(tmp_path, capsys, imgsz):
    from detection._common import run_cli

    with pytest.raises(SystemExit) as e:  # refused before the model or the data is read
        run_cli(det_eval.main, ["--model", str(tmp_path / "none.pt"), "--data", str(tmp_path), "--imgsz", imgsz])
    assert e.value.code == 2 and capsys.readouterr().err == f"error: --imgsz {imgsz}: must be >= 32\n"


def test_out_naming_a_file_is_refused_up_front(tmp_path, capsys):
    from detection._common import run_cli

    taken = tmp_path / "README.md"
    taken.write_text("keep me")
    image = tmp_path / "photo.png"
    Image.new("RGB", (32, 32)).save(image)
    for main, argv in [(det_predict.main, [str(image), "--out", str(taken)]),
                       (det_eval.main, ["--model", "x.pt", "--data", str(tmp_path), "--out", str(taken)])]:
        with pytest.raises(SystemExit) as e:
            run_cli(main, argv)
        assert e.value.code == 2 and capsys.readouterr().err == f"error: {taken}: --out exists and is not a folder\n"
    assert taken.read_text() == "keep me"


def _png_with_broken_pixels(src, dst):
    """A PNG whose chunk checksums hold but whose compressed pixels do not: verify() passes, decoding fails."""
    import struct
    import zlib

    data = bytearray(src.read_bytes())
    i = data.index(b"IDAT")
    n = struct.unpack(">I", data[i - 4:i])[0]
    data[i + 4:i + 4 + n] = bytes(n)
    data[i + 4 + n:i + 8 + n] = struct.pack(">I", zlib.crc32(data[i:i + 4 + n]))
    dst.write_bytes(data)


def test_predict_skips_unreadable_files_found_in_a_folder(trained, tmp_path, capsys):
    """One bad file in a folder costs a warning, not the run; a bad file named on the command line
    is still an error before any work."""
    from detection._common import run_cli

    scenes, out = trained
    folder = tmp_path / "photos"
    folder.mkdir()
    good = sorted((scenes / "images" / "val").iterdir())[:2]
    for image in good:
        (folder / image.name).write_bytes(image.read_bytes())
    (folder / "bad.png").write_text("not a picture")  # found by the check up front
    _png_with_broken_pixels(good[0], folder / "broken.png")  # found only when decoded, mid-run
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        run_cli(det_predict.main, ["--model", str(out / "best.pt"), str(folder), "--out", str(tmp_path / "p")])
    captured = capsys.readouterr()
    assert e.value.code == 0
    assert sorted(p.name for p in (tmp_path / "p").glob("*.json")) == sorted(f"{i.stem}.json" for i in good)
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2 and any(str(folder / "bad.png") in w for w in warnings)
    assert any(str(folder / "broken.png") in w for w in warnings)
    assert "skipped 2 unreadable file(s)" in captured.err
    with pytest.raises(SystemExit) as e:
        run_cli(det_predict.main, ["--model", str(out / "best.pt"), str(good[0]), str(folder / "bad.png"),
                                   "--out", str(tmp_path / "q")])
    assert e.value.code == 2 and f"error: {folder / 'bad.png'}: not a readable image" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()


def test_detector_is_exported_by_the_package():
    import subprocess
    import sys

    import detection
    from detection import Detector as Exported

    assert Exported is Detector
    with pytest.raises(AttributeError):
        detection.Nothing  # noqa: B018
    # lazily: importing the package alone loads neither the detector module nor ultralytics
    code = "import sys, detection; print('detection.detector' in sys.modules, 'ultralytics' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.stdout.split() == ["False", "False"], res.stderr


def test_train_refuses_an_out_folder_inside_its_dataset(trained):
    """An --out inside the dataset put the run's plots among the training images (the next run
    counted them as backgrounds), and rebuilding the dataset deleted the run without a word."""
    from detection import train as det_train

    scenes, _ = trained
    before = sorted(p for p in scenes.rglob("*"))
    for out in (scenes / "catdog" / "images" / "train" / "run", scenes / "runs" / "catdog"):
        with pytest.raises(UsageError, match=f"--out {out} is inside the dataset {scenes}"):
            det_train.train(scenes, "catdog", out, epochs=1, plots=False)
    assert sorted(p for p in scenes.rglob("*")) == before  # nothing made there, not even an empty folder
    # a data.yaml kept in the project, its `path:` naming the dataset elsewhere: the project is not the dataset
    project = scenes.parent / "project"
    project.mkdir()
    (project / "pets.yaml").write_text(yaml.safe_dump({"path": str(scenes / "catdog"), "train": "images/train",
                                                       "val": "images/val", "names": ["cat", "dog"]}))
    det_train.train(project / "pets.yaml", "catdog", project / "runs" / "catdog", epochs=1, plots=False, batch=4)
    assert (project / "runs" / "catdog" / "best.pt").is_file()
    # no `path:`, absolute split folders elsewhere: an --out under those images is caught too
    (project / "abs.yaml").write_text(yaml.safe_dump({"train": str(scenes / "catdog" / "images" / "train"),
                                                      "val": str(scenes / "catdog" / "images" / "val"),
                                                      "names": ["cat", "dog"]}))
    out = scenes / "catdog" / "images" / "val" / "run"
    with pytest.raises(UsageError, match=f"--out {out} is inside the dataset {scenes / 'catdog' / 'images' / 'val'}"):
        det_train.train(project / "abs.yaml", "catdog", out, epochs=1, plots=False)
    assert not out.exists()


def test_train_help_shows_the_defaults():
    text = det_train.build_parser().format_help()
    for default in ("default yolo11n.yaml", "default cpu", "default 2", "default 50"):
        assert default in " ".join(text.split()), default


def test_device_values_are_checked_against_the_machine(tmp_path, capsys, monkeypatch):
    """train keeps its own --device syntax (0,1 for DDP) with device_arg's words; evaluate and predict
    use gendet_env.device_arg. Both without a GPU here (CUDA is patched off), one line, exit 2."""
    from detection._common import run_cli

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    base = ["--task", "catdog", "--data", str(tmp_path), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as e:
        run_cli(det_train.main, [*base, "--device", "0"])
    assert e.value.code == 2 and "error: --device '0': CUDA is not available on this machine" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(SystemExit) as e:
        run_cli(det_train.main, [*base, "--device", "0,3"])
    assert e.value.code == 2 and "--device '0,3': this machine has 1 GPU(s), numbered 0 to 0" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for main, argv in [(det_eval.main, ["--model", "x.pt", "--data", str(tmp_path)]),
                       (det_predict.main, ["photo.png", "--out", str(tmp_path / "p")])]:
        with pytest.raises(SystemExit) as e:
            run_cli(main, [*argv, "--device", "1"])
        assert e.value.code == 2 and "argument --device: '1': CUDA is not available" in capsys.readouterr().err
    import gendet_env

    assert gendet_env.device_arg("cpu") == "cpu"


def test_time_limit_fits_the_epochs_to_the_time(tiny_detector, tmp_path):
    """--time-limit hands ultralytics a time budget: it refits the epochs after the first one,
    so a 3 s budget ends after one epoch although 20 were asked for."""
    from detection import train as det_train

    scenes, _ = tiny_detector
    out = tmp_path / "timed"
    assert det_train.main(["--task", "catdog", "--data", str(scenes), "--model", "yolov8n.yaml", "--epochs", "20",
                           "--imgsz", "64", "--batch", "8", "--device", "cpu", "--workers", "0", "--out", str(out),
                           "--quiet", "--no-plots", "--time-limit", "0.05"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["time_limit_minutes"] == 0.05 and 1 <= m["epochs_completed"] < 20
    assert (out / "best.pt").is_file()
    with pytest.raises(det_train.UsageError, match="--time-limit 0"):
        det_train.train(scenes, "catdog", tmp_path / "x", time_limit=0)


def test_trains_where_polars_is_missing(tiny_detector, tmp_path, monkeypatch):
    """The GPU image has no polars; ultralytics needs it only for results.csv and plots, which
    detection.train then reads with the csv module and skips."""
    import sys

    from ultralytics.engine.trainer import BaseTrainer

    from detection import train as det_train

    monkeypatch.setitem(sys.modules, "polars", None)  # `import polars` raises ImportError
    monkeypatch.setattr(BaseTrainer, "read_results_csv", BaseTrainer.read_results_csv)  # undone after the test
    scenes, _ = tiny_detector
    out = tmp_path / "nopolars"
    assert det_train.main(["--task", "catdog", "--data", str(scenes), "--model", "yolov8n.yaml", "--epochs", "2",
                           "--imgsz", "64", "--batch", "8", "--device", "cpu", "--workers", "0", "--out", str(out),
                           "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["epochs_completed"] == 2 and (out / "best.pt").is_file() and (out / "curves.png").is_file()
    trainer = type("Trainer", (), {"csv": out / "ultralytics" / "results.csv"})()
    assert BaseTrainer.read_results_csv(trainer)["epoch"] == [1.0, 2.0]  # the csv module's reading


@pytest.mark.parametrize("kind,task,names", [("pets", "catdog", ["cat", "dog"]), ("wider", "face", ["face"])])
def test_trains_on_converter_output_without_changes(tmp_path, kind, task, names):
    """The issue's "same CLI on the converters' output": Oxford-IIIT Pet (VOC head boxes) and
    WIDER FACE fixtures in their real formats go through datasets.convert, and detection.train
    takes the folder it wrote as it is; the run's card and metrics name the converted data."""
    from datasets.convert import convert
    from test_convert import pets_fixture, wider_fixture

    src = (pets_fixture if kind == "pets" else wider_fixture)(tmp_path / kind)
    data = tmp_path / "converted"
    report = convert(kind, src, data, **({"val_fraction": 0.5, "seed": 3} if kind == "pets" else {}))
    out = tmp_path / "run"
    assert det_train.main(["--task", task, "--data", str(data), "--model", "yolov8n.yaml", "--epochs", "1",
                           "--imgsz", "32", "--batch", "4", "--device", "cpu", "--workers", "0", "--out", str(out),
                           "--quiet", "--no-plots"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["names"] == names and m["epochs_completed"] == 1 and set(m["per_class"]) <= set(names)
    assert (m["n_train"], m["n_val"]) == (report.images["train"], report.images["val"]) and m["n_val"] > 0
    assert m["data"] == str(data / "data.yaml")
    assert Detector.load(out / "best.pt", device="cpu").names == names
    assert str(data) in (out / "README.md").read_text()


def test_detection_speed_benchmark_times_the_public_path(trained, tmp_path, capsys):
    from benchmarks import detection_speed

    scenes, out = trained
    report = tmp_path / "speed.json"
    assert detection_speed.main(["--model", str(out / "best.pt"), "--data", str(scenes), "--batch", "1", "3",
                                 "--device", "cpu", "--repeats", "1", "--json-out", str(report)]) == 0
    rows = json.loads(report.read_text())
    assert [r["batch"] for r in rows] == [1, 3] and all(r["input"] == "64x64" and r["imgsz"] == 64 for r in rows)
    for r in rows:
        assert r["seconds"] > 0 and abs(r["images_per_s"] - r["batch"] / r["seconds"]) <= 0.05 + 0.01 * r["images_per_s"]
    assert len(capsys.readouterr().out.strip().splitlines()) == 2  # one JSON line per batch size
    from detection._common import run_cli

    for argv, message in [
        (["--model", str(out / "best.pt"), "--data", str(tmp_path), "--device", "cpu"],
         f"error: {tmp_path}: no val images"),
        (["--model", str(tmp_path / "none.pt"), "--device", "cpu"], f"error: {tmp_path / 'none.pt'}: no such file"),
        (["--model", str(out / "best.pt"), "--repeats", "0"], "error: --batch sizes and --repeats must be >= 1"),
        (["--model", str(out / "best.pt"), "--device", "gpu"], "argument --device: 'gpu' is not a device"),
    ]:
        with pytest.raises(SystemExit) as e:
            run_cli(detection_speed.main, argv)
        assert e.value.code == 2 and message in capsys.readouterr().err, argv


def test_detection_speed_noise_defaults_to_the_detectors_size(tmp_path):
    """Without --data the noise images are as large as the detector was trained on (the
    bundle's 128 px), not a fixed 64 px that would time a quarter of the real work."""
    from benchmarks import detection_speed

    bundle = Path(__file__).resolve().parents[1] / "models" / "demo"
    report = tmp_path / "speed.json"
    assert detection_speed.main(["--model", str(bundle / "catdog.pt"), "--batch", "1", "--device", "cpu",
                                 "--repeats", "1", "--json-out", str(report)]) == 0
    (row,) = json.loads(report.read_text())
    assert row["imgsz"] == 128 and row["input"] == "128x128"
    assert detection_speed.main(["--model", str(bundle / "catdog.pt"), "--batch", "1", "--device", "cpu",
                                 "--repeats", "1", "--size", "80", "--json-out", str(report)]) == 0
    assert json.loads(report.read_text())[0]["input"] == "80x80"


def test_detect_leaves_torch_threads_as_they_were(trained):
    """ultralytics sets torch's global thread count on its first CPU predict; the generator in
    the same process (app, evaluation.run) must keep the count the user had."""
    from ultralytics.utils import NUM_THREADS

    scenes, out = trained
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(NUM_THREADS + 1)  # anything but what ultralytics would set
        det = Detector.load(out / "best.pt", device="cpu")
        det.detect([np.zeros((64, 64, 3), np.uint8)] * 2)
        assert torch.get_num_threads() == NUM_THREADS + 1
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------ --stop-at, --resume and the out folder
def _tiny_args(scenes, out, *extra):
    return ["--task", "catdog", "--data", str(scenes), "--model", "yolov8n.yaml", "--epochs", "3", "--imgsz", "64",
            "--batch", "8", "--device", "cpu", "--workers", "0", "--out", str(out), "--quiet", "--no-plots", *extra]


def _refused(argv, capsys) -> str:
    from detection._common import run_cli

    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        run_cli(det_train.main, argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    return err


def test_stop_at_then_resume_trains_each_epoch_once_and_a_finished_run_is_kept(tiny_detector, tmp_path, capsys):
    """--stop-at 1 of 3 leaves ultralytics' last.pt resumable and nothing else; --resume trains
    epochs 2 and 3 with the run's own settings (an --epochs given again is not the run's); then the
    finished run is refused, with and without --resume, and its best.pt is left as it was."""
    scenes, _ = tiny_detector
    out = tmp_path / "run"
    assert det_train.main(_tiny_args(scenes, out, "--stop-at", "1")) == 0
    assert "paused after epoch 1 of 3; continue with --resume" in capsys.readouterr().out
    last = out / "ultralytics" / "weights" / "last.pt"
    assert not (out / "best.pt").exists() and not (out / "metrics.json").exists()
    ckpt = torch.load(last, weights_only=False)
    assert ckpt["epoch"] == 0 and ckpt["optimizer"] is not None  # not stripped: resumable
    assert "holds a detection.train run; pass --resume" in _refused(_tiny_args(scenes, out), capsys)
    # ultralytics writes last.pt in place: one cut short by a kill is named, with a way on
    whole = last.read_bytes()
    last.write_bytes(whole[: len(whole) // 2])
    err = _refused(_tiny_args(scenes, out, "--resume"), capsys)
    assert err.startswith(f"error: {last}: cannot load (") and \
        f"if a kill cut it short, train on from its best epoch with --model {last.parent / 'best.pt'}" in err
    last.write_bytes(whole)
    # a run stopped after writing epoch 2's results row but before its checkpoint: the row goes
    results = out / "ultralytics" / "results.csv"
    header, row = results.read_text().splitlines()
    results.write_text(f"{header}\n{row}\n2{row[1:]}\n")

    assert det_train.main(_tiny_args(scenes, out, "--resume", "--epochs", "9")) == 0
    assert "resumed from epoch 1 of 3" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert (m["epochs"], m["epochs_completed"], m["resumed_from"]) == (3, 3, [1])
    rows = [line.split(",") for line in results.read_text().splitlines()[1:]]
    assert [float(r[0]) for r in rows] == [1, 2, 3]
    first, again = m["command"].splitlines()
    assert first.endswith("--stop-at 1") and again.endswith("--resume --epochs 9")
    # each session's `time` restarts at 0: the run's training time is both sessions' last
    assert m["seconds_per_epoch"] == pytest.approx((float(rows[0][1]) + float(rows[-1][1])) / 3, abs=0.01)
    assert "3 of 3 (resumed after epoch 1)" in (out / "README.md").read_text()

    best = (out / "best.pt").read_bytes()
    err = _refused(_tiny_args(scenes, out), capsys)
    assert f"error: {out} holds a finished detection.train run; choose a new --out" in err
    err = _refused(_tiny_args(scenes, out, "--resume"), capsys)
    assert f"the run in {out} is finished, nothing to resume" in err and f"--model {out / 'best.pt'}" in err
    assert (out / "best.pt").read_bytes() == best
    # ultralytics finished (last.pt stripped) and the run was stopped before our outputs were written
    # (its final validation takes seconds to minutes): --resume writes them, nothing is trained again
    for name in ("best.pt", "metrics.json", "README.md", "curves.png"):
        (out / name).unlink()
    assert "holds a detection.train run; pass --resume" in _refused(_tiny_args(scenes, out), capsys)
    assert det_train.main(_tiny_args(scenes, out, "--resume")) == 0
    assert "the run was trained to its end; writing its outputs" in capsys.readouterr().out
    done = json.loads((out / "metrics.json").read_text())
    assert (out / "README.md").is_file() and (out / "curves.png").is_file()
    written, source = (torch.load(f, weights_only=False) for f in (out / "best.pt", out / "ultralytics" / "weights" / "best.pt"))
    assert written["optimizer"] is None and all(torch.equal(a, b) for a, b in zip(
        written["model"].state_dict().values(), source["model"].state_dict().values()))  # ultralytics' best, as it was
    for key in ("mAP50", "mAP50-95", "precision", "recall"):  # best.pt validated again: the same figures
        assert done[key] == pytest.approx(m[key], abs=1e-6), key
    assert done["per_class"] == m["per_class"]
    assert (done["epochs_completed"], done["resumed_from"]) == (3, [1])
    assert done["seconds"] == pytest.approx(float(rows[0][1]) + float(rows[-1][1]), abs=0.01)
    assert done["seconds_from"].startswith("results.csv (the epochs' time)") and "seconds_from" not in m
    assert [float(r.split(",")[0]) for r in results.read_text().splitlines()[1:]] == [1, 2, 3]  # not retrained
    err = _refused(_tiny_args(scenes, out, "--resume"), capsys)
    assert f"the run in {out} is finished, nothing to resume" in err and "Traceback" not in err
    # killed before ultralytics' end had stripped its best.pt: the one written is stripped as it would have been
    import shutil

    again = tmp_path / "again"
    shutil.copytree(out, again)
    (again / "ultralytics" / "weights" / "best.pt").write_bytes(whole)  # epoch 1's, with its optimizer
    for name in ("best.pt", "metrics.json"):
        (again / name).unlink()
    assert det_train.main(_tiny_args(scenes, again, "--resume")) == 0
    assert torch.load(again / "best.pt", weights_only=False)["optimizer"] is None
    assert (again / "best.pt").stat().st_size < len(whole) / 2


def test_out_folders_that_are_not_a_fresh_or_resumable_run_are_refused_up_front(tmp_path, capsys):
    """Checked before the data (here: none) is read: foreign files are named and never written
    over, a paused run needs --resume, an empty folder has nothing to resume."""
    nowhere = tmp_path / "no-data"
    foreign = tmp_path / "dataset"
    (foreign / "images").mkdir(parents=True)
    for name in ("data.yaml", "notes.txt", "b.txt", "a.txt"):
        (foreign / name).write_text("keep")
    for extra in ([], ["--resume"]):
        err = _refused(_tiny_args(nowhere, foreign, *extra), capsys)
        assert f"{foreign} holds files that are not a detection.train run's (a.txt, b.txt, images, ...)" in err
    assert (foreign / "data.yaml").read_text() == "keep" and not (foreign / "run.json").exists()
    err = _refused(_tiny_args(nowhere, tmp_path / "empty", "--resume"), capsys)
    assert err == f"error: nothing to resume in {tmp_path / 'empty'} (no ultralytics/weights/last.pt); " \
                  "start the run without --resume\n"
    paused = tmp_path / "paused"
    (paused / "ultralytics" / "weights").mkdir(parents=True)
    (paused / "data.yaml").write_text("x")
    assert det_train.out_problem(paused, resume=False) is None  # a start that trained no epoch: start again
    (paused / "ultralytics" / "weights" / "last.pt").write_bytes(b"")
    err = _refused(_tiny_args(nowhere, paused), capsys)
    assert err == f"error: {paused} holds a detection.train run; pass --resume to continue it, or choose a new " \
                  "--out (or delete this one to start over)\n"
    for stop_at in ("0", "3"):
        err = _refused(_tiny_args(nowhere, tmp_path / "new", "--stop-at", stop_at), capsys)
        assert f"--stop-at {stop_at}: must be >= 1 and below --epochs 3" in err



def test_ultralytics_log_lines_reach_a_file_without_colour_codes():
    """ultralytics colours every log line, also into a pipe or a log file ("\\x1b[34m\\x1b[1mtrain:
    \\x1b[0m"); off a terminal the CLIs' logger hands on plain text."""
    import logging

    from detection._common import quiet_ultralytics

    quiet_ultralytics(True)  # pytest captures stdout: not a terminal
    from ultralytics.utils import LOGGER, colorstr

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    LOGGER.addHandler(handler)
    try:
        LOGGER.info(f"{colorstr('train:')} 40 images")
    finally:
        LOGGER.removeHandler(handler)
        quiet_ultralytics(False)
    assert "\x1b[" in colorstr("train:") and records[0].getMessage() == "train: 40 images"


def test_an_image_whose_data_yolo_training_cannot_read_is_named_before_training(tmp_path):
    """GIF data under a .png name: ultralytics would skip it as 'corrupt' in its scan, after the
    run had started; the dataset check names it first."""
    from detection._common import DataError
    from detection.data import load_dataset

    data = _tiny_yolo(tmp_path / "ds", "0 0.5 0.5 0.2 0.2\n")
    Image.new("RGB", (32, 32)).save(data / "images" / "train" / "a.png", format="GIF")
    with pytest.raises(DataError, match=r"a\.png: GIF data, which YOLO training does not read"):
        load_dataset(data, "catdog")
    (data / "images" / "train" / "a.png").write_text("no image")
    with pytest.raises(DataError, match=r"a\.png: not an image"):
        load_dataset(data, "catdog")


def test_ground_truth_is_in_the_frame_ultralytics_reads_an_exif_turned_image_in(tmp_path):
    from ultralytics.utils.patches import imread

    from detection.data import load_dataset

    data = _tiny_yolo(tmp_path / "ds", "0 0.25 0.5 0.5 0.2\n")
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 20)).save(data / "images" / "train" / "a.png", exif=exif.tobytes())
    (image, w, h, boxes), = load_dataset(data, "catdog").ground_truth("train")
    assert imread(str(image)).shape[:2] == (h, w) == (40, 20)  # shown 20 wide, 40 high
    assert np.allclose(boxes[0][1:], (0, 16, 10, 24))


@pytest.mark.parametrize("orientation", [5, 7])
def test_ground_truth_follows_a_mirrored_quarter_turn_too(tmp_path, orientation):
    """EXIF 5 and 7 (a quarter turn and a mirror) also swap width and height for ultralytics:
    ground truth in the stored frame would put every box of such a photo in the wrong place."""
    from ultralytics.utils.patches import imread

    from detection.data import load_dataset

    data = _tiny_yolo(tmp_path / "ds", "0 0.25 0.5 0.5 0.2\n")
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = orientation
    Image.new("RGB", (40, 20)).save(data / "images" / "train" / "a.png", exif=exif.tobytes())
    (image, w, h, boxes), = load_dataset(data, "catdog").ground_truth("train")
    assert imread(str(image)).shape[:2] == (h, w) == (40, 20)  # shown 20 wide, 40 high
    assert np.allclose(boxes[0][1:], (0, 16, 10, 24))


def test_predict_never_writes_over_its_inputs_and_says_what_it_leaves_out(trained, tmp_path, capsys):
    _, out = trained
    folder = tmp_path / "mine"
    folder.mkdir()
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(folder / "a.png")
    (folder / "sub").mkdir()
    before = (folder / "a.png").read_bytes()
    with pytest.raises(UsageError, match=r"--out .*mine: its results would write over input images there"):
        det_predict.predict(out / "best.pt", [folder], folder, progress=False)
    assert (folder / "a.png").read_bytes() == before
    det_predict.predict(out / "best.pt", [folder], tmp_path / "o", progress=False)
    assert f"warning: {folder}: 1 subfolder(s) not read (sub); name them to include their images" in \
        capsys.readouterr().err


def test_16_bit_images_are_stretched_not_clipped_to_white_and_batches_do_not_change_boxes(trained):
    from datasets.images import as_seen
    from detection.detector import to_rgb_uint8

    grey = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 7)  # up to 28,665 of 65,535
    stretched = np.round(grey / grey.max() * 255).astype(np.uint8)
    assert Image.fromarray(grey).mode.startswith("I;16")
    assert np.array_equal(np.asarray(as_seen(Image.fromarray(grey)))[..., 0], stretched)
    assert np.array_equal(to_rgb_uint8(np.stack([grey] * 3, -1))[..., 0], stretched)  # a uint16 array too
    with pytest.raises(UsageError, match="floats are read in \\[0, 1\\]"):
        to_rgb_uint8(np.full((8, 8, 3), 200.0))
    # an image's boxes do not depend on the other sizes detected with it
    scenes, out = trained
    det = Detector.load(out / "best.pt", device="cpu")
    image = np.asarray(Image.open(sorted((scenes / "images" / "val").iterdir())[0]).convert("RGB"))
    alone = det.detect([image], conf=0.001)[0].to_dict()
    mixed = det.detect([np.zeros((40, 100, 3), np.uint8), image], conf=0.001)[1].to_dict()
    assert mixed == alone


def test_list_file_splits_train_tiny_and_cut_images_are_named_and_evaluate_stays_in_out(trained, tmp_path,
                                                                                    monkeypatch, capsys):
    """Three things ultralytics skipped or misread after the start: a split given as a list of
    relative paths (it read them from the working directory), an image under 10 px, a JPEG cut short."""
    from detection._common import DataError, run_cli
    from detection.data import load_dataset

    data = _tiny_yolo(tmp_path / "ds", "0 0.5 0.5 0.2 0.2\n")
    (data / "train.txt").write_text("images/train/a.png\n")
    (data / "data.yaml").write_text("train: train.txt\nval: train.txt\nnames: [cat, dog]\n")
    resolved = load_dataset(data, "catdog").write_resolved_yaml(tmp_path / "r" / "data.yaml")
    listed = Path(yaml.safe_load(resolved.read_text())["train"])
    assert listed.read_text() == f"{(data / 'images' / 'train' / 'a.png').resolve()}\n"
    Image.new("RGB", (9, 30)).save(data / "images" / "train" / "a.png")
    with pytest.raises(DataError, match=r"a\.png: 9x30 px; YOLO training skips images under 10 px a side"):
        load_dataset(data, "catdog")
    Image.new("RGB", (32, 32)).save(data / "images" / "train" / "a.png")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    (data / "images" / "train" / "b.jpg").write_bytes(buf.getvalue()[:-300])
    (data / "labels" / "train" / "b.txt").write_text("")
    (data / "data.yaml").write_text("train: images/train\nval: images/train\nnames: [cat, dog]\n")
    with pytest.raises(DataError, match=r"b\.jpg: .*YOLO training would skip it|b\.jpg: not an image PIL can read"):
        load_dataset(data, "catdog")
    # evaluate with a relative --out keeps ultralytics' files in it
    scenes, out = trained
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        run_cli(det_eval.main, ["--model", str(out / "best.pt"), "--data", str(scenes), "--out", "rel", "--device",
                                "cpu"])
    assert e.value.code == 0 and (tmp_path / "rel" / "ultralytics" / "predictions.json").is_file()
    capsys.readouterr()


def test_evaluate_refuses_one_file_name_twice_in_a_split_before_running(trained, tmp_path):
    _, out = trained
    data = _tiny_yolo(tmp_path / "ds", "0 0.5 0.5 0.2 0.2\n")
    for sub in ("a", "b"):
        (data / "images" / "train" / sub).mkdir()
        (data / "labels" / "train" / sub).mkdir()
        Image.new("RGB", (32, 32)).save(data / "images" / "train" / sub / "x.png")
        (data / "labels" / "train" / sub / "x.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(UsageError, match=r"train holds several images named 'x\.png' \(in different folders\)"):
        det_eval.evaluate(out / "best.pt", data, "train", tmp_path / "ev", device="cpu")
    assert not (tmp_path / "ev" / "ultralytics").exists()


def test_evaluate_on_a_split_without_objects_reports_n_a_not_a_gap_of_one(trained, tmp_path, capsys):
    from detection._common import run_cli

    scenes, out = trained
    data = _tiny_yolo(tmp_path / "ds", "")  # one image, no object: pycocotools said -1, the gap 1.0
    with pytest.raises(SystemExit) as e:
        run_cli(det_eval.main, ["--model", str(out / "best.pt"), "--data", str(data), "--split", "val",
                                "--out", str(tmp_path / "ev"), "--device", "cpu", "--strict"])
    o = capsys.readouterr()
    assert e.value.code == 0 and "warning" not in o.err and "-1.0000" not in o.out
    assert re.search(r"^mAP50\s+n/a\s+n/a\s+n/a$", o.out, re.M), o.out
    assert "pycocotools against ultralytics: n/a (no objects)" in o.out
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert report["max_gap"] is None and report["agree"] is True
    for column in ("pycocotools", "ultralytics", "detector"):
        assert report[column]["mAP50"] is None and report[column]["mAP50-95"] is None
    assert report["pycocotools"]["per_class"]["cat"] == {"AP50": None, "AP50-95": None}


def test_evaluate_runs_on_a_dataset_with_a_train_split_only(trained, tmp_path):
    _, out = trained
    data = _tiny_yolo(tmp_path / "ds", "0 0.5 0.5 0.2 0.2\n")
    (data / "data.yaml").write_text("train: images/train\nnames: [cat, dog]\n")  # no val: ultralytics' traceback
    report = det_eval.evaluate(out / "best.pt", data, "train", tmp_path / "ev", device="cpu")
    assert report["images"] == 1 and report["split"] == "train"


def test_ctrl_c_says_where_the_run_can_go_on_from(tmp_path, monkeypatch, capsys):
    from detection.resume import LAST

    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(det_train, "train", interrupted)
    out = tmp_path / "run"
    argv = ["--task", "catdog", "--data", str(tmp_path), "--out", str(out)]
    assert det_train.main(argv) == 130
    assert capsys.readouterr().err.strip() == (f"interrupted before an epoch ended: nothing to resume in {out}; "
                                               "run the same command again")
    (out / LAST).parent.mkdir(parents=True)
    (out / LAST).write_bytes(b"")
    assert det_train.main(argv) == 130
    assert capsys.readouterr().err.strip() == (f"interrupted: {out.resolve() / LAST} holds the last finished epoch; "
                                               "the same command with --resume goes on from there")
