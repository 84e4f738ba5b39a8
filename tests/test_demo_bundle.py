"""The shipped bundle in models/demo/ loads and works end to end on CPU: two images from
"a black cat" with a fixed seed in under a minute, judged by both shipped detectors."""

import json
import time

import gendet_env
import torch

from detection.detector import Detector
from generation.pipeline import TextToImage

DEMO = gendet_env.ROOT / "models" / "demo"


def test_bundle_is_complete_small_and_documented():
    for part in ("generator/pipeline.json", "catdog.pt", "face.pt", "README.md", "judge_validation.json"):
        assert (DEMO / part).is_file(), f"models/demo/{part} is missing"
    size = sum(f.stat().st_size for f in DEMO.rglob("*") if f.is_file())
    assert size < 60 * 2**20, f"bundle is {size / 2**20:.1f} MB"
    card = (DEMO / "README.md").read_text()
    for needle in ("PSNR", "mAP50", "generation.train", "detection.train"):
        assert needle in card, needle
    # the metrics beside the detectors match the card, and name files relative to the repository
    for task in ("catdog", "face"):
        m = json.loads((DEMO / f"{task}.metrics.json").read_text())
        assert f"{task} detector (scenes val): mAP50 {m['mAP50']:.3f}" in card
        assert not m["data"].startswith("/") and " /" not in m["command"], m["command"]
        det = Detector.load(DEMO / f"{task}.pt", device="cpu")  # the card comes with the weights
        assert det.card["mAP50"] == m["mAP50"] and det.imgsz == m["imgsz"] and det.names == m["names"]
        assert "readme" not in det.card  # models/demo/README.md is the bundle's card, shown once


def test_two_black_cats_in_under_a_minute_then_both_detectors():
    torch.manual_seed(0)
    t0 = time.perf_counter()
    pipe = TextToImage.from_pretrained(DEMO / "generator", device="cpu")
    out = pipe("a black cat", num_images=2, seed=0)
    elapsed = time.perf_counter() - t0
    assert elapsed < 60, f"{elapsed:.1f} s"
    size = pipe.image_size
    assert out.images.shape == (2, 3, size, size) and out.seeds == [0, 1]
    assert 0 <= float(out.images.min()) and float(out.images.max()) <= 1
    assert not torch.equal(out.images[0], out.images[1])  # two seeds, two images
    again = pipe("a black cat", seeds=[1])
    assert torch.equal(again.tokens[0], out.tokens[1])  # image k depends only on its seed
    assert (again.images[0] - out.images[1]).abs().max() < 1e-5  # batch 1 vs 2: float rounding only
    for task in ("catdog", "face"):
        det = Detector.load(DEMO / f"{task}.pt", device="cpu")
        results = det.detect(out.images, conf=0.01)
        assert len(results) == 2
        for dets in results:
            for d in dets:
                assert d.label in det.names and 0 < d.confidence <= 1
                x1, y1, x2, y2 = d.box
                assert -1 <= x1 < x2 <= size + 1 and -1 <= y1 < y2 <= size + 1
            assert json.loads(dets.to_json())["detections"] == [d.to_dict() for d in dets]
