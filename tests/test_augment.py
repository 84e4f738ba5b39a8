"""datasets.augment: known answers worked out by hand (flip, letterbox, resize +
centre crop, translate), identity for strength "none", label/box pairing when a
box is dropped, no flips in the generator's pipeline, and seeded reproducibility."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

# datasets.augment before albumentations: it sets NO_ALBUMENTATIONS_UPDATE, without which
# importing albumentations asks pypi.org for its latest version.
from datasets import augment
from datasets.augment import PAD_FILL, apply, bbox_params, detection_transforms, generation_transforms

A = augment.A
REPO = Path(__file__).resolve().parents[1]


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_hflip_maps_cx_to_one_minus_cx():
    img = _image(40, 80)
    boxes = [[0.25, 0.5, 0.125, 0.25], [0.625, 0.375, 0.25, 0.5], [0.7, 0.3, 0.2, 0.1]]
    out, got, labels = apply(detection_transforms(None, "none", hflip=1.0), img, boxes, ["cat", "dog", "face"])
    np.testing.assert_array_equal(out, img[:, ::-1])
    assert labels == ["cat", "dog", "face"]
    # dyadic values are exact in float32: the flip is exact
    np.testing.assert_array_equal(got[:2], np.float32([[0.75, 0.5, 0.125, 0.25], [0.375, 0.375, 0.25, 0.5]]))
    np.testing.assert_allclose(got[2], [0.3, 0.3, 0.2, 0.1], atol=1e-6)


def test_letterbox_wide_image_known_answer():
    """100 wide x 50 high -> 128: scale 128/100 = 1.28, content 128 x 64, 32 grey rows above and below."""
    img = _image(50, 100)
    t = detection_transforms(128, "none", fmt="pascal_voc")
    out, got, labels = apply(t, img, [[10, 5, 60, 45], [0, 0, 100, 50]], [1, 0])
    assert out.shape == (128, 128, 3) and labels == [1, 0]
    s, pad = 1.28, 32
    want = [[10 * s, 5 * s + pad, 60 * s, 45 * s + pad], [0, pad, 128, 50 * s + pad]]
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert (out[:pad] == PAD_FILL).all() and (out[pad + 64:] == PAD_FILL).all()
    np.testing.assert_array_equal(out[pad:pad + 64], cv2.resize(img, (128, 64), interpolation=cv2.INTER_LINEAR))


def test_letterbox_tall_image_known_answer():
    """50 wide x 100 high -> 128: the same scale, now 32 grey columns left and right."""
    img = _image(100, 50, seed=1)
    out, got, _ = apply(detection_transforms(128, "none", fmt="pascal_voc"), img, [[5, 10, 45, 60]], ["x"])
    np.testing.assert_allclose(got, [[5 * 1.28 + 32, 12.8, 45 * 1.28 + 32, 76.8]], atol=1e-4)
    assert (out[:, :32] == PAD_FILL).all() and (out[:, 96:] == PAD_FILL).all()


@pytest.mark.parametrize("fmt, boxes", [
    ("yolo", [[0.5, 0.5, 0.2, 0.4], [0.1, 0.9, 0.2, 0.2]]),
    ("pascal_voc", [[3.5, 4, 20, 30], [0, 0, 64, 48]]),
])
def test_strength_none_is_identity(fmt, boxes):
    img = _image(48, 64, seed=2)
    for seed in range(3):
        out, got, labels = apply(detection_transforms(None, "none", fmt=fmt, seed=seed), img, boxes, ["a", "b"])
        np.testing.assert_array_equal(out, img)
        np.testing.assert_allclose(got, boxes, atol=1e-5)
        assert labels == ["a", "b"]


def test_labels_stay_paired_when_a_box_is_pushed_out():
    t = A.Compose([A.Affine(translate_px={"x": 60, "y": 0}, border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0)],
                  bbox_params=bbox_params("pascal_voc", min_visibility=0.3))
    img = _image(100, 100, seed=3)
    boxes = [[70, 10, 95, 40],   # -> x 130..155: gone
             [5, 10, 25, 30],    # -> x 65..85
             [35, 60, 55, 80],   # -> x 95..115: 5 of 20 columns visible (0.25 < 0.3): dropped
             [30, 60, 50, 80],   # -> x 90..110: half visible, clipped to 90..100
             [10, 50, 30, 90]]   # -> x 70..90
    labels = [7, "cat", 3, "dog", 5]
    out, got, kept = apply(t, img, boxes, labels)
    assert kept == ["cat", "dog", 5]  # original objects, not floats or indices
    np.testing.assert_allclose(got, [[65, 10, 85, 30], [90, 60, 100, 80], [70, 50, 90, 90]], atol=1e-4)
    np.testing.assert_array_equal(out[:, 60:], img[:, :40])
    assert (out[:, :60] == 0).all()


def test_detection_transforms_drop_boxes_under_30_percent_visible_by_default():
    """The documented default min_visibility: 0.3 for light/default, 0 for none, or as given.
    A box pushed until a quarter of it shows is dropped (a sliver labelled 'cat' teaches the
    detector to fire on edges); one half visible is kept."""
    shift = A.Affine(translate_px={"x": 60, "y": 0}, border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0)
    img = _image(100, 100, seed=3)
    boxes = [[35, 60, 55, 80], [30, 60, 50, 80]]  # -> 5 of 20 and 10 of 20 columns visible
    for strength, given, n_kept in (("light", None, 1), ("default", None, 1), ("none", None, 2), ("light", 0.2, 2)):
        made = detection_transforms(None, strength, fmt="pascal_voc", min_visibility=given, seed=0)
        params = made.processors["bboxes"].params
        t = A.Compose([shift], bbox_params=params)  # its box rules, with a known geometry
        _, got, kept = apply(t, img, boxes, ["quarter", "half"])
        assert len(kept) == n_kept and kept[-1] == "half", (strength, given, kept)
        np.testing.assert_allclose(got[-1], [90, 60, 100, 80], atol=1e-4)


def test_generation_transforms_never_flip():
    """Left half white, right half black; whatever the seed, the left edge stays white."""
    img = np.zeros((60, 80, 3), np.uint8)
    img[:, :40] = 255
    box = [[10, 10, 38, 50]]  # in the white half; scaled by 0.8 -> x 8..30.4, crop offset 0..16
    for seed in range(40):
        t = generation_transforms(48, random_crop=True, color_jitter=True, fmt="pascal_voc", seed=seed)
        out, got, labels = apply(t, img, box, ["cat"])
        assert out.shape == (48, 48, 3)
        assert out[:, 0].min() > 200 and out[:, -1].max() < 60, f"seed {seed}: flipped"
        assert labels == ["cat"] and (got[0, 0] + got[0, 2]) / 2 < 20  # the box stays on the left


def test_generation_resize_and_centre_crop_known_answer():
    """200 wide x 100 high -> shortest side 64: scale 0.64 -> 128 x 64; centre crop drops (128-64)/2 = 32
    columns on the left. Box [60, 20, 100, 80] -> [38.4, 12.8, 64, 51.2] -> x - 32."""
    img = _image(100, 200, seed=4)
    out, got, labels = apply(generation_transforms(64, fmt="pascal_voc"), img, [[60, 20, 100, 80]], [3])
    assert out.shape == (64, 64, 3) and labels == [3]
    np.testing.assert_allclose(got, [[6.4, 12.8, 32.0, 51.2]], atol=1e-4)
    np.testing.assert_array_equal(out, cv2.resize(img, (128, 64), interpolation=cv2.INTER_AREA)[:, 32:96])


def test_apply_rejects_bad_input():
    t = detection_transforms(None, "none")
    with pytest.raises(ValueError, match="2 boxes but 1 labels"):
        apply(t, _image(10, 10), [[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.1]], ["cat"])
    with pytest.raises(ValueError, match="0 boxes but 1 labels"):
        apply(t, _image(10, 10), None, ["cat"])
    with pytest.raises(ValueError, match="no bbox_params"):
        apply(generation_transforms(8), _image(10, 10), [[0, 0, 5, 5]], ["cat"])
    with pytest.raises(ValueError, match="strength must be one of"):
        detection_transforms(None, "strong")
    with pytest.raises(ValueError, match="fmt must be"):
        bbox_params("coco")


def test_same_seed_same_output_and_seeds_differ():
    img = _image(64, 64, seed=5)
    boxes, labels = [[0.3, 0.4, 0.2, 0.3], [0.7, 0.6, 0.3, 0.2]], ["cat", "dog"]

    def run(seed):
        return apply(detection_transforms(64, "default", seed=seed), img, boxes, labels)

    outs = {}
    for seed in range(6):
        a, b = run(seed), run(seed)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        assert a[2] == b[2]
        outs[seed] = a[0].tobytes() + a[1].tobytes()
    assert len(set(outs.values())) > 1, "the seed has no effect: the test could not tell"


def test_import_makes_no_update_check():
    """A fresh interpreter without NO_ALBUMENTATIONS_UPDATE: importing datasets.augment must not
    look up any host (albumentations' update check would resolve pypi.org)."""
    code = ("import sys\n"
            "hosts = []\n"
            "sys.addaudithook(lambda e, a: hosts.append(a[0]) if e == 'socket.getaddrinfo' else None)\n"
            "import datasets.augment\n"
            "print('HOSTS', hosts)\n")
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    env["PYTHONPATH"] = str(REPO)
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert "HOSTS []" in res.stdout, res.stdout
