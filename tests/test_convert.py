"""Every converter on a small fixture written in the real public format: boxes round-trip
within a pixel, skips are counted by reason, malformed files name the file and line."""

import json

import numpy as np
import pytest
import yaml
from PIL import Image

from datasets import convert as C
from datasets.convert import ConvertError, convert, main


def image(path, w, h, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 127, np.uint8)).save(path, format=fmt)
    return path


def read_yolo(out, split, name, w, h):
    """Label file -> [(cls, x1, y1, x2, y2)] in pixels."""
    rows = []
    for line in (out / "labels" / split / f"{name}.txt").read_text().splitlines():
        c, cx, cy, bw, bh = line.split()
        cx, cy, bw, bh = float(cx) * w, float(cy) * h, float(bw) * w, float(bh) * h
        rows.append((int(c), cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2))
    return rows


def close(a, b, tol=0.01):  # YOLO lines keep 6 decimals: 1e-4 px here; the issue asks for 1 px
    return len(a) == len(b) and all(x[0] == y[0] and np.allclose(x[1:], y[1:], atol=tol) for x, y in zip(a, b))


def split_of(out, name):
    return next(s for s in ("train", "val") if (out / "labels" / s / f"{name}.txt").exists())


# ------------------------------------------------------------------ COCO instances
def coco_fixture(root):
    images = [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
              {"id": 2, "file_name": "b.jpg", "width": 60, "height": 60},
              {"id": 3, "file_name": "c.jpg", "width": 50, "height": 40},   # only a person: negative
              {"id": 4, "file_name": "d.jpg", "width": 50, "height": 40}]   # crowd only
    anns = [{"id": 10, "image_id": 1, "category_id": 17, "bbox": [10.5, 5, 30, 40], "iscrowd": 0},   # cat
            {"id": 11, "image_id": 1, "category_id": 18, "bbox": [50, 20, 45.2, 70], "iscrowd": 0},  # dog, clipped
            {"id": 12, "image_id": 2, "category_id": 18, "bbox": [0, 0, 60, 60], "iscrowd": 0},
            {"id": 13, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 0},      # person
            {"id": 14, "image_id": 3, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 0},
            {"id": 15, "image_id": 4, "category_id": 17, "bbox": [1, 1, 5, 5], "iscrowd": 1},
            {"id": 16, "image_id": 99, "category_id": 17, "bbox": [1, 1, 5, 5], "iscrowd": 0}]
    cats = [{"id": 1, "name": "person"}, {"id": 17, "name": "cat"}, {"id": 18, "name": "dog"}]
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_val2017.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats}))
    for im in images:
        image(root / "val2017" / im["file_name"], im["width"], im["height"], "JPEG")
    return root


def test_coco_instances_to_yolo_catdog(tmp_path):
    src = coco_fixture(tmp_path / "coco")
    out = tmp_path / "out"
    report = convert("coco", src, out, keep_negatives=1, val_fraction=0.0)
    assert yaml.safe_load((out / "data.yaml").read_text())["names"] == {0: "cat", 1: "dog"}
    assert "path" not in yaml.safe_load((out / "data.yaml").read_text())
    assert close(read_yolo(out, "train", "a", 100, 80), [(0, 10.5, 5, 40.5, 45), (1, 50, 20, 95.2, 80)])
    assert close(read_yolo(out, "train", "b", 60, 60), [(1, 0, 0, 60, 60)])
    assert read_yolo(out, "train", "c", 50, 40) == []  # the kept negative
    assert report.boxes_clipped == 1 and report.boxes_per_class == {0: 1, 1: 2}
    assert report.skipped == {C.SKIP_CROWD: 1, C.SKIP_NO_USABLE_BOX: 1, C.SKIP_UNKNOWN_IMAGE_ID: 1}
    saved = json.loads((out / "convert_report.json").read_text())
    assert saved["skipped_total"] == 3 and saved["images_written"] == 3
    # without --keep-negatives the person-only image is skipped and counted
    report = convert("coco", src, tmp_path / "out2", val_fraction=0.0)
    assert report.skipped[C.SKIP_NEGATIVE] == 1 and report.images_written == 2


def test_coco_malformed_records_are_named(tmp_path):
    bad = tmp_path / "instances_val.json"
    bad.write_text(json.dumps({"images": [], "categories": []}))
    with pytest.raises(ConvertError, match=r"instances_val\.json: missing or non-list 'annotations'"):
        convert("coco", bad, tmp_path / "o", images=tmp_path)
    bad.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 17, "name": "cat"}],
                               "annotations": [{"id": 5, "image_id": 1, "category_id": 17, "bbox": [1, 2, 3]}]}))
    with pytest.raises(ConvertError, match=r"instances_val\.json \(annotations\[0\] id=5\): 'bbox' must be 4 numbers"):
        convert("coco", bad, tmp_path / "o", images=tmp_path)
    bad.write_text("{not json")
    with pytest.raises(ConvertError, match=r"instances_val\.json"):
        convert("coco", bad, tmp_path / "o", images=tmp_path)


# ------------------------------------------------------------------ Oxford-IIIT Pet
VOC = """<annotation><filename>{name}.jpg</filename><size><width>{w}</width><height>{h}</height><depth>3</depth></size>
<object><name>{species}</name><pose>Frontal</pose><truncated>0</truncated><occluded>0</occluded>
<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox><difficult>0</difficult></object>
</annotation>"""


def pets_fixture(root):
    ann = root / "annotations"
    (ann / "xmls").mkdir(parents=True)
    pets = [("Abyssinian_1", 1, 1, "cat", 80, 60, (11, 6, 50, 40)),
            ("Bengal_7", 6, 1, "cat", 64, 64, (1, 1, 64, 64)),
            ("beagle_3", 13, 2, "dog", 90, 70, (30, 20, 70, 55))]
    for name, cid, species, word, w, h, (x1, y1, x2, y2) in pets:
        (ann / "xmls" / f"{name}.xml").write_text(VOC.format(name=name, w=w, h=h, species=word,
                                                             x1=x1, y1=y1, x2=x2, y2=y2))
        image(root / "images" / f"{name}.jpg", w, h, "JPEG")
    image(root / "images" / "pug_9.jpg", 40, 40, "JPEG")  # listed, but no xml (as in the real test split)
    (ann / "trainval.txt").write_text("#Image CLASS-ID SPECIES BREED ID\nAbyssinian_1 1 1 1\nBengal_7 6 1 6\n")
    (ann / "test.txt").write_text("beagle_3 13 2 3\npug_9 26 2 17\n")
    return root


def test_pets_voc_head_boxes_to_yolo_catdog(tmp_path):
    src = pets_fixture(tmp_path / "pets")
    out = tmp_path / "out"
    report = convert("pets", src, out, val_fraction=0.5, seed=3)
    # VOC is 1-based inclusive: pixel box [xmin - 1, ymin - 1, xmax, ymax]
    for name, w, h, want in [("Abyssinian_1", 80, 60, (0, 10, 5, 50, 40)), ("Bengal_7", 64, 64, (0, 0, 0, 64, 64)),
                             ("beagle_3", 90, 70, (1, 29, 19, 70, 55))]:
        assert close(read_yolo(out, split_of(out, name), name, w, h), [want]), name
    assert report.skipped == {C.SKIP_NO_XML: 1}
    assert report.images == {"train": 2, "val": 1} or report.images == {"train": 1, "val": 2}
    again = convert("pets", src, tmp_path / "again", val_fraction=0.5, seed=3)
    assert again.images == report.images
    assert {split_of(out, n) for n in ["beagle_3"]} == {split_of(tmp_path / "again", "beagle_3")}


def test_pets_malformed_list_and_xml(tmp_path):
    src = pets_fixture(tmp_path / "pets")
    (src / "annotations" / "test.txt").write_text("beagle_3 13 2 3\npug_9 26 two 17\n")
    with pytest.raises(ConvertError, match=r"test\.txt:2: class_id, species and breed_id must be integers"):
        convert("pets", src, tmp_path / "o")
    (src / "annotations" / "test.txt").write_text("beagle_3 13 2 3\n")
    (src / "annotations" / "xmls" / "beagle_3.xml").write_text("<annotation><size>\n<width>3</width></annotation>")
    with pytest.raises(ConvertError, match=r"beagle_3\.xml:2: malformed XML"):
        convert("pets", src, tmp_path / "o2")


# ------------------------------------------------------------------ WIDER FACE
WIDER_TRAIN = """0--Parade/0_Parade_marchingband_1_5.jpg
2
10 12 30 40 0 0 0 0 0 0
50 5 20 25 2 0 0 1 0 0
0--Parade/0_Parade_Parade_0_2.jpg
0
0 0 0 0 0 0 0 0 0 0
1--Handshaking/1_Handshaking_3.jpg
1
70 60 40 30 0 0 0 0 1 0
"""
WIDER_VAL = """2--Demonstration/2_Demonstration_1.jpg
1
5 5 10 10 0 0 0 0 0 0
"""


def wider_fixture(root):
    split = root / "wider_face_split"
    split.mkdir(parents=True)
    (split / "wider_face_train_bbx_gt.txt").write_text(WIDER_TRAIN)
    (split / "wider_face_val_bbx_gt.txt").write_text(WIDER_VAL)
    for rel in ("0--Parade/0_Parade_marchingband_1_5.jpg", "0--Parade/0_Parade_Parade_0_2.jpg",
                "1--Handshaking/1_Handshaking_3.jpg"):
        image(root / "WIDER_train" / "images" / rel, 100, 80, "JPEG")
    image(root / "WIDER_val" / "images" / "2--Demonstration/2_Demonstration_1.jpg", 40, 40, "JPEG")
    return root


def test_wider_face_to_yolo_face(tmp_path):
    src = wider_fixture(tmp_path / "WIDER")
    out = tmp_path / "out"
    report = convert("wider", src, out)
    assert yaml.safe_load((out / "data.yaml").read_text())["names"] == {0: "face"}
    assert close(read_yolo(out, "train", "0_Parade_marchingband_1_5", 100, 80), [(0, 10, 12, 40, 52)])
    assert read_yolo(out, "train", "0_Parade_Parade_0_2", 100, 80) == []  # 0 faces: a negative
    assert close(read_yolo(out, "train", "1_Handshaking_3", 100, 80), [(0, 70, 60, 100, 80)])  # clipped
    assert close(read_yolo(out, "val", "2_Demonstration_1", 40, 40), [(0, 5, 5, 15, 15)])
    assert report.skipped == {C.SKIP_INVALID_FACE: 1}
    assert report.negatives == {"train": 1, "val": 0} and report.boxes_clipped == 1


@pytest.mark.parametrize("text,line,words", [
    ("a.jpg\n1\n10 12 30 x 0 0 0 0 0 0\n", 3, "box fields must be numbers"),
    ("a.jpg\ntwo\n", 2, "expected the face count"),
    ("a.jpg\n2\n10 12 30 40 0 0 0 0 0 0\n", 3, "truncated file"),
    ("a.jpg\n1\n10 12 30 40 0 0 0 0 0\n", 3, "expected 10 fields"),
])
def test_wider_malformed_lines_are_named(tmp_path, text, line, words):
    split = tmp_path / "W" / "wider_face_split"
    split.mkdir(parents=True)
    (split / "wider_face_train_bbx_gt.txt").write_text(text)
    with pytest.raises(ConvertError, match=rf"wider_face_train_bbx_gt\.txt:{line}: {words}"):
        convert("wider", tmp_path / "W", tmp_path / "o")


# ------------------------------------------------------------------ captions formats
def read_captions(out):
    return {json.loads(line)["image"].split("/")[-1]: json.loads(line)
            for line in (out / "captions.jsonl").read_text().splitlines()}


def test_coco_captions(tmp_path):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    for split, ids in (("train2017", [1, 2]), ("val2017", [3])):
        imgs = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 20, "height": 20} for i in ids]
        anns = [{"id": 100 + i, "image_id": i, "caption": f"A cat number {i}."} for i in ids]
        anns.append({"id": 200 + ids[0], "image_id": ids[0], "caption": "  another caption  "})
        (root / "annotations" / f"captions_{split}.json").write_text(json.dumps({"images": imgs, "annotations": anns}))
        for im in imgs:
            image(root / split / im["file_name"], 20, 20, "JPEG")
    report = convert("coco-captions", root, tmp_path / "out")
    rows = read_captions(tmp_path / "out")
    assert rows["000000000001.jpg"] == {"image": "images/train/000000000001.jpg", "split": "train",
                                        "captions": ["A cat number 1.", "another caption"]}
    assert rows["000000000003.jpg"]["split"] == "val" and report.captions == {"train": 3, "val": 2}
    assert (tmp_path / "out" / rows["000000000002.jpg"]["image"]).is_file()


def test_cub_caption_folders(tmp_path):
    root = tmp_path / "cub"
    for cls, name, caps in (("001.Black_footed_Albatross", "Black_Footed_Albatross_0001", "a bird\nwhite wings\n"),
                            ("002.Laysan_Albatross", "Laysan_Albatross_0002", "a small bird\n")):
        image(root / "images" / cls / f"{name}.jpg", 16, 16, "JPEG")
        (root / "text" / cls).mkdir(parents=True)
        (root / "text" / cls / f"{name}.txt").write_text(caps)
    image(root / "images" / "002.Laysan_Albatross" / "no_text.jpg", 16, 16, "JPEG")
    report = convert("cub", root, tmp_path / "out", val_fraction=0.0)
    rows = read_captions(tmp_path / "out")
    assert rows["Black_Footed_Albatross_0001.jpg"]["captions"] == ["a bird", "white wings"]
    assert rows["Laysan_Albatross_0002.jpg"]["captions"] == ["a small bird"]
    assert report.skipped == {C.SKIP_NO_CAPTION_FILE: 1}


def test_folder_with_captions_jsonl(tmp_path):
    root = tmp_path / "mine"
    image(root / "x.png", 8, 8)
    image(root / "sub" / "y.png", 8, 8)
    (root / "captions.jsonl").write_text(
        '{"image": "x.png", "captions": ["two black cats"], "split": "val"}\n'
        '{"image": "sub/y.png", "caption": "a dog"}\n'
        '{"image": "missing.png", "caption": "a face"}\n')
    report = convert("folder", root, tmp_path / "out")
    rows = read_captions(tmp_path / "out")
    assert rows["x.png"]["split"] == "val" and rows["x.png"]["captions"] == ["two black cats"]
    assert rows["y.png"]["split"] == "train" and rows["y.png"]["captions"] == ["a dog"]
    assert report.skipped == {C.SKIP_MISSING_IMAGE: 1}
    (root / "captions.jsonl").write_text('{"image": "x.png", "caption": "ok"}\n{"image": "x.png", "caption": \n')
    with pytest.raises(ConvertError, match=r"captions\.jsonl:2: invalid JSON"):
        convert("folder", root, tmp_path / "out2")


def test_cli_summary_errors_and_overwrite(tmp_path, capsys):
    src = wider_fixture(tmp_path / "WIDER")
    out = tmp_path / "out"
    assert main(["wider", str(src), "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "images written: 4" in text and "invalid face (invalid=1): 1" in text
    assert main(["wider", str(src), "--out", str(out), "--quiet"]) == 2  # refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main(["wider", str(src), "--out", str(out), "--quiet", "--overwrite"]) == 0
    assert main(["pets", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nothing" in err and err.count("\n") == 1
