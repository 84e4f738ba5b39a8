"""COCOeval wrapper against hand-computed answers, and box drawing."""

import math

import numpy as np
import pytest

from detection.coco_metrics import coco_map
from detection.draw import draw_detections


def gt(boxes_per_image, names=("cat", "dog")):
    images, anns = [], []
    for i, boxes in enumerate(boxes_per_image, start=1):
        images.append({"id": i, "file_name": f"{i}.png", "width": 100, "height": 100})
        for cls, x, y, w, h in boxes:
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cls + 1, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": 0})
    return {"images": images, "annotations": anns, "categories": [{"id": k + 1, "name": n} for k, n in enumerate(names)]}


def pred(image_id, cls, box, score):
    return {"image_id": image_id, "category_id": cls + 1, "bbox": list(box), "score": score}


def test_perfect_predictions_score_one():
    g = gt([[(0, 10, 10, 30, 30), (1, 50, 50, 40, 20)], [(0, 0, 0, 20, 20)]])
    p = [pred(1, 0, (10, 10, 30, 30), 0.9), pred(1, 1, (50, 50, 40, 20), 0.8), pred(2, 0, (0, 0, 20, 20), 0.7)]
    m = coco_map(g, p)
    assert m["mAP50"] == pytest.approx(1.0) and m["mAP50-95"] == pytest.approx(1.0)
    assert m["per_class"] == {"cat": {"AP50": pytest.approx(1.0), "AP50-95": pytest.approx(1.0)},
                              "dog": {"AP50": pytest.approx(1.0), "AP50-95": pytest.approx(1.0)}}


def test_yolo_labels_and_detector_boxes_become_coco_records_that_score_one(tmp_path):
    """A 2-image YOLO dataset and a detector that finds exactly its objects: the COCO records have
    pixel [x, y, w, h] boxes and ids class + 1 on both sides, so mAP50-95 is 1; the right boxes
    with the wrong classes score 0. A conversion slip here misreports every detector's mAP."""
    from PIL import Image

    from detection.coco_metrics import ground_truth_coco, predictions_coco
    from detection.data import load_dataset

    (tmp_path / "images" / "val").mkdir(parents=True)
    (tmp_path / "labels" / "val").mkdir(parents=True)
    Image.new("RGB", (40, 20)).save(tmp_path / "images" / "val" / "a.png")
    Image.new("RGB", (100, 50), (9, 9, 9)).save(tmp_path / "images" / "val" / "b.png")
    (tmp_path / "labels" / "val" / "a.txt").write_text("0 0.25 0.5 0.5 0.2\n")  # cx 10, cy 10, 20 x 4 px
    (tmp_path / "labels" / "val" / "b.txt").write_text("1 0.5 0.5 0.2 0.4\n")   # cx 50, cy 25, 20 x 20 px
    (tmp_path / "data.yaml").write_text("train: images/val\nval: images/val\nnames: [cat, dog]\n")
    g = ground_truth_coco(load_dataset(tmp_path), "val")
    assert [a["bbox"] for a in g["annotations"]] == [[0, 8, 20, 4], [40, 15, 20, 20]]
    assert [a["category_id"] for a in g["annotations"]] == [1, 2]
    assert [a["area"] for a in g["annotations"]] == [80, 400]
    assert [(im["width"], im["height"]) for im in g["images"]] == [(40, 20), (100, 50)]

    class Found:
        def __init__(self, cls, box):
            self.class_id, self.box, self.confidence = cls, box, 0.9

    class Exact:  # the objects by hand, in x1, y1, x2, y2 pixels, as Detector.detect gives them
        def __init__(self, classes):
            self.classes, self.shapes = classes, []

        def detect(self, arrays, conf=None, iou=None, imgsz=None):
            self.shapes += [a.shape for a in arrays]
            return [[Found(self.classes[0], (0, 8, 20, 12))], [Found(self.classes[1], (40, 15, 60, 35))]]

    det = Exact((0, 1))
    p = predictions_coco(det, g)
    assert det.shapes == [(20, 40, 3), (50, 100, 3)]
    assert [(q["image_id"], q["category_id"], q["bbox"]) for q in p] == [(1, 1, [0, 8, 20, 4]), (2, 2, [40, 15, 20, 20])]
    m = coco_map(g, p)
    assert m["mAP50-95"] == pytest.approx(1.0) and m["mAP50"] == pytest.approx(1.0)
    assert coco_map(g, predictions_coco(Exact((1, 0)), g))["mAP50-95"] == 0.0


def test_iou_062_passes_three_of_ten_thresholds():
    g = gt([[(0, 0, 0, 50, 50)]], names=("cat",))
    # prediction [0, 0, 50, 31]: IoU = 50*31 / 2500 = 0.62 -> matches at 0.50, 0.55, 0.60 only
    m = coco_map(g, [pred(1, 0, (0, 0, 50, 31), 0.9)])
    assert m["mAP50"] == pytest.approx(1.0)
    assert m["mAP50-95"] == pytest.approx(0.3)


def test_higher_scored_false_positive_halves_ap():
    g = gt([[(0, 0, 0, 20, 20)]], names=("cat",))
    p = [pred(1, 0, (60, 60, 20, 20), 0.9), pred(1, 0, (0, 0, 20, 20), 0.8)]
    # ranked: FP then TP -> precision 1/2 at recall 1; the interpolated envelope is 0.5 everywhere
    assert coco_map(g, p)["mAP50"] == pytest.approx(0.5)
    p = [pred(1, 0, (60, 60, 20, 20), 0.7), pred(1, 0, (0, 0, 20, 20), 0.8)]  # FP ranked last: no harm
    assert coco_map(g, p)["mAP50"] == pytest.approx(1.0)


def test_missed_object_and_empty_predictions():
    g = gt([[(0, 0, 0, 20, 20)], [(0, 40, 40, 20, 20)]], names=("cat",))
    # one of two found: recall 0.5 with precision 1 -> 51 of 101 recall points -> AP = 51/101
    assert coco_map(g, [pred(1, 0, (0, 0, 20, 20), 0.9)])["mAP50"] == pytest.approx(51 / 101)
    assert coco_map(g, [])["mAP50"] == 0.0
    m = coco_map(gt([[(0, 0, 0, 20, 20)]]), [pred(1, 0, (0, 0, 20, 20), 0.9)])
    assert math.isnan(m["per_class"]["dog"]["AP50"])  # no dog in the ground truth: undefined, not 0


def test_draw_marks_the_box_outline_in_the_class_colour():
    img = np.zeros((100, 100, 3), np.uint8)
    out = np.asarray(draw_detections(img, [{"label": "dog", "confidence": 0.87, "box": (20, 30, 80, 90)}], width=1))
    assert tuple(out[60, 20]) == (64, 128, 255) and tuple(out[90, 50]) == (64, 128, 255)  # left and bottom edges
    assert tuple(out[60, 50]) == (0, 0, 0)  # inside untouched
    assert img.sum() == 0  # the input is not modified


def test_labels_of_near_boxes_do_not_cover_each_other():
    """Two boxes whose top-left corners nearly meet: the second label goes below its box instead of
    over the first label; a label that would hide a small box goes beside it; each label is drawn
    inside the image and in its class colour."""
    from detection.draw import label_spot

    assert label_spot((20, 30, 80, 90), (30, 10), (100, 100), [], [(20, 30, 80, 90)]) == (20, 20)  # above: free
    assert label_spot((22, 32, 80, 90), (30, 10), (100, 100), [(20, 20, 50, 30)],
                      [(20, 30, 80, 90), (22, 32, 80, 90)]) == (22, 90)  # above taken, inside hides: below
    # inside its box when that hides little and the rest is taken
    assert label_spot((22, 32, 80, 90), (30, 10), (100, 100), [(20, 20, 50, 30), (22, 90, 52, 100)],
                      [(22, 32, 80, 90)]) == (22, 32)
    assert label_spot((90, 0, 99, 9), (30, 10), (100, 100), [], [(90, 0, 99, 9)]) == (70, 9)  # in, under the box
    # a 19 px box at the top: its label under it, not over it (the box was hidden)
    assert label_spot((91, 4, 110, 23), (40, 12), (128, 128), [], [(91, 4, 110, 23)]) == (88, 23)
    # every spot taken: the one covering least
    assert label_spot((0, 10, 30, 40), (30, 10), (100, 100), [(0, 0, 30, 10), (0, 10, 30, 20), (0, 30, 30, 40),
                                                             (0, 40, 30, 45)], [(0, 10, 30, 40)]) == (0, 40)
    img = np.zeros((120, 120, 3), np.uint8)
    dets = [{"label": "cat", "confidence": 0.9, "box": (20, 40, 100, 110)},
            {"label": "dog", "confidence": 0.8, "box": (22, 42, 90, 100)}]
    out = np.asarray(draw_detections(img, dets, width=1))
    cat, dog = (np.all(out == c, axis=-1) for c in ((255, 64, 64), (64, 128, 255)))
    assert cat[:40].sum() > 200 and dog[101:, 23:60].sum() > 200  # the cat's label above, the dog's below


def test_a_split_without_objects_has_no_map_rather_than_minus_one():
    g = gt([[]])  # one image, nothing on it: pycocotools' stats say -1 ("no data")
    for p in ([pred(1, 0, (0, 0, 20, 20), 0.9)], []):
        m = coco_map(g, p)
        assert m["mAP50"] is None and m["mAP75"] is None and m["mAP50-95"] is None
        assert all(math.isnan(ap["AP50"]) for ap in m["per_class"].values())
