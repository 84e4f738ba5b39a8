"""Files from someone else: a pickle where weights go, a model YAML with code in it, a run folder
whose rows point outside it, a dataset that links out of itself. None of them may run code,
reach files outside their folder, or write over a user's files; each is refused in one line."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


class Payload:
    """Unpickling it runs a command that writes `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo ran >> {self.marker}",))


def test_a_pickled_detector_runs_no_code(tmp_path):
    from detection._common import UsageError
    from detection.detector import Detector

    marker = tmp_path / "PWNED"
    torch.save({"model": Payload(marker), "train_args": {}}, tmp_path / "evil.pt")
    with pytest.raises(UsageError, match="evil.pt: refused: it holds Python objects outside ultralytics"):
        Detector.load(tmp_path / "evil.pt", device="cpu")
    assert not marker.exists()
    assert Detector.load("catdog", device="cpu").names == ["cat", "dog"]  # the bundle's loads in safe mode


def test_a_model_yaml_with_code_in_its_activation_runs_none(tiny_detector, tmp_path):
    import ultralytics

    from detection import train as det_train

    marker = tmp_path / "PWNED"
    yolo = Path(ultralytics.__file__).parent / "cfg" / "models" / "v8" / "yolov8.yaml"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f"activation: __import__('os').system('echo ran >> {marker}') or __import__('torch').nn.SiLU()\n"
                    + yolo.read_text())
    from detection._common import UsageError

    with pytest.raises(UsageError, match="evil.yaml: cannot load .*unsupported activation"):
        det_train.main(["--task", "catdog", "--data", str(tiny_detector[0]), "--model", str(evil), "--epochs", "1",
                        "--imgsz", "64", "--device", "cpu", "--workers", "0", "--out", str(tmp_path / "run"), "--quiet"])
    assert not marker.exists()


def test_checkpoints_and_converted_weights_refuse_pickles_in_one_line(tmp_path):
    from generation.convert import ConversionError, load_tensor_file
    from generation.files import load_torch_file

    marker = tmp_path / "PWNED"
    torch.save({"step": 3, "x": Payload(marker)}, tmp_path / "state.pt")
    with pytest.raises(ValueError, match=r"state.pt: refused: it holds Python objects beyond tensors.*GLOBAL") as e:
        load_torch_file(tmp_path / "state.pt")
    assert "weights_only" not in str(e.value) and "\n" not in str(e.value)  # no advice to turn the check off
    with pytest.raises(ConversionError, match="refused"):
        load_tensor_file(tmp_path / "state.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "state.pt").read_bytes()[:40])
    with pytest.raises(ValueError, match="cut.pt: not a complete PyTorch file"):
        load_torch_file(tmp_path / "cut.pt")
    assert not marker.exists()
    torch.save({"step": 3, "w": torch.ones(2)}, tmp_path / "ok.pt")
    assert load_torch_file(tmp_path / "ok.pt")["step"] == 3


def test_an_image_renamed_pt_is_not_called_an_unsafe_pickle(tmp_path):
    """A PNG given as a detector or checkpoint was "refused: it holds Python objects ... could run
    code": it is no PyTorch file at all, and is said so."""
    from detection._common import UsageError
    from detection.detector import Detector
    from generation.files import load_torch_file

    fake = tmp_path / "fake.pt"
    Image.new("RGB", (4, 4)).save(fake, format="PNG")
    with pytest.raises(UsageError) as e:
        Detector.load(fake, device="cpu")
    assert str(e.value) == f"{fake}: not a PyTorch checkpoint (neither a zip archive nor a pickle, as torch.save writes)"
    with pytest.raises(ValueError, match="fake.pt: not a PyTorch checkpoint"):
        load_torch_file(fake)


def _row(**changes) -> dict:
    row = {"prompt": "a cat", "prompt_index": 0, "category": "single_object", "expect": "at least 1 cat",
           "image_index": 0, "seed": 0, "image": "images/0000_0.png", "size": [8, 8],
           "detections": [{"label": "cat", "confidence": 0.9, "box": [1, 1, 5, 5]}],
           "verdict": {"passed": True, "reason": "ok"}, "passed": True, "reason": "ok"}
    return {**row, **changes}


@pytest.mark.parametrize("changes, said", [
    ({"image": "../../secret.txt"}, "'image' must be a path inside the run folder"),
    ({"image": "/etc/passwd"}, "'image' must be a path inside the run folder"),
    ({"image": "images/../../x.png"}, "'image' must be a path inside the run folder"),
    ({"image": "C:\\x.png"}, "'image' must be a path inside the run folder"),
    ({"seed": "<script>alert(1)</script>"}, "'seed' must be an integer"),
    ({"size": ['1" onload="alert(7)"', 128]}, "'size' must be [width, height]"),
    ({"detections": [{"label": "cat", "confidence": 0.9, "box": ['1" onload="x', 1, 5, 5]}]},
     "a detection must have a label, a confidence and a box of 4 numbers"),
])
def test_a_run_folders_rows_cannot_point_outside_it_or_inject_html(tmp_path, changes, said):
    from evaluation.report import report_archive
    from evaluation.runner import read_rows

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.jsonl").write_text(json.dumps(_row()) + "\n" + json.dumps(_row(**changes)) + "\n")
    (tmp_path / "secret.txt").write_text("SECRET")
    for read in (read_rows, lambda p: report_archive(p.parent)):
        with pytest.raises(ValueError, match=rf"results.jsonl:2: {said.replace('[', '.').replace(']', '.')}"):
            read(tmp_path / "run" / "results.jsonl")
    assert read_rows(tmp_path / "run" / "results.jsonl".replace("results", "none")) == []


def test_the_app_says_a_damaged_run_cannot_be_read(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from test_ui import UI, _finished_run

    _finished_run(tmp_path / "run", 3)
    rows = (tmp_path / "run" / "results.jsonl").read_text().splitlines()
    rows[1] = json.dumps({**json.loads(rows[1]), "image": "../../../etc/passwd"})
    (tmp_path / "run" / "results.jsonl").write_text("\n".join(rows) + "\n")
    monkeypatch.setenv("GENDET_GENERATOR", str(tmp_path / "none"))
    at = AppTest.from_file(str(UI / "evaluate.py"), default_timeout=60).run()
    at.text_input(key="ev_open").set_value(str(tmp_path / "run")).run()
    assert not at.exception
    assert any("holds a run gendet cannot read" in e.value and "results.jsonl:2: 'image' must be a path inside"
               in e.value for e in at.error)
    # an image that is not one, and one missing: said in their cells; a broken summary.json: named
    _finished_run(tmp_path / "run2", 3)
    (tmp_path / "run2" / "images" / "0000_0.png").write_text("not a png")
    (tmp_path / "run2" / "images" / "0001_0.png").unlink()
    at.text_input(key="ev_open").set_value(str(tmp_path / "run2")).run()
    assert not at.exception and [w.value for w in at.warning][-2:] == ["#0: not an image", "#1: missing"]
    (tmp_path / "run2" / "summary.json").write_text('{"overall": ')
    at.text_input(key="ev_open").set_value(str(tmp_path / "run2") + " ").run()  # the same folder, read again
    assert any(e.value.endswith("holds a run gendet cannot read: summary.json: Expecting value: line 1 column 13 "
                                "(char 12)") for e in at.error)


def test_a_new_run_never_writes_into_a_folder_of_other_files(tmp_path):
    from evaluation.runner import RunConfigError, run_suite
    from evaluation.suite import suite_from_prompts

    mine = tmp_path / "mine"
    (mine / "images").mkdir(parents=True)
    (mine / "report.html").write_text("MY OWN REPORT")
    with pytest.raises(RunConfigError, match=r"mine holds files that are not an evaluation run's \(report.html\)"):
        run_suite(suite_from_prompts(["a cat"]), lambda p, s: None, None, mine, progress=False)
    assert (mine / "report.html").read_text() == "MY OWN REPORT" and not (mine / "run.json").exists()
    from evaluation.runner import foreign_folder

    (tmp_path / "dots").mkdir()
    (tmp_path / "dots" / ".DS_Store").write_bytes(b"x")
    (tmp_path / "dots" / ".gitkeep").write_text("")
    assert foreign_folder(tmp_path / "dots") is None  # a folder's hidden files are not a user's work


def test_checked_writes_no_image_over_another_and_keeps_its_log(tiny_detector, tmp_path, capsys):
    from evaluation import checked
    from test_pipeline import tiny_pipeline

    tiny_pipeline().save_pretrained(tmp_path / "gen")
    out = tmp_path / "out"
    out.mkdir()
    mine = np.full((8, 8, 3), 77, np.uint8)
    for seed in range(3):
        Image.fromarray(mine).save(out / f"a_photo_of_nothing_{seed}.png")  # the user's, same names
    (out / "checked.jsonl").write_text('{"earlier": true}\n')
    argv = ["a photo of nothing", "--candidates", "3", "--steps", "2", "--model", str(tmp_path / "gen"),
            "--detectors", f"catdog={tiny_detector[1] / 'best.pt'}", "--out", str(out), "--quiet", "--device", "cpu"]
    assert checked.main(argv) in (0, 1)
    for seed in range(3):
        assert np.array_equal(np.asarray(Image.open(out / f"a_photo_of_nothing_{seed}.png")), mine)
    log = (out / "checked.jsonl").read_text().splitlines()
    assert log[0] == '{"earlier": true}' and len(log) == 4
    written = [json.loads(line)["image"] for line in log[1:] if json.loads(line)["image"]]
    assert all(name.endswith("-2.png") for name in written)


def test_predict_keeps_every_part_of_a_dotted_name(tiny_detector, tmp_path):
    from detection.predict import predict

    folder = tmp_path / "dots"
    folder.mkdir()
    Image.fromarray(np.full((8, 8, 3), 5, np.uint8)).save(folder / "photo.png")
    for v in ("v2", "v3"):
        Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(folder / f"photo.{v}.jpg")
    written = predict(tiny_detector[1] / "best.pt", [folder / "photo.v2.jpg", folder / "photo.v3.jpg"], folder,
                      device="cpu", progress=False)
    assert sorted(p.name for p in written) == ["photo.v2.png", "photo.v3.png"]
    assert (folder / "photo.v2.json").is_file() and (folder / "photo.v3.json").is_file()
    assert np.asarray(Image.open(folder / "photo.png")).max() == 5  # the user's image, as it was


def test_a_converted_dataset_stays_inside_its_source_and_holds_files_not_links(tmp_path):
    from datasets.convert import convert
    from datasets.convert.common import ConvertError

    src, outside = tmp_path / "src", tmp_path / "outside"
    (src / "pics").mkdir(parents=True)
    outside.mkdir()
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(outside / "private.png")
    (src / "pics" / "rel.png").symlink_to(Path("..") / ".." / "outside" / "private.png")
    (src / "captions.jsonl").write_text(json.dumps({"image": "pics/rel.png", "caption": "a cat"}) + "\n")
    convert("folder", src, tmp_path / "out", progress=False)
    placed = next((tmp_path / "out" / "images").rglob("*.png"))
    assert not placed.is_symlink() and np.asarray(Image.open(placed)).max() == 200  # the file, not a dead link
    # a list naming files outside its folder, or an endless caption: converted, each counted and named
    (src / "captions.jsonl").write_text(json.dumps({"image": "../outside/private.png", "caption": "a cat"}) + "\n"
                                        + json.dumps({"image": "pics/rel.png", "caption": "a cat " * 2000}) + "\n")
    report = convert("folder", src, tmp_path / "out2", progress=False)
    assert {"image outside the source folder (linked or copied in as given)": 1,
            "caption over 10,000 characters, cut to that": 1}.items() <= dict(report.warnings).items()
    assert report.warned_files["image outside the source folder (linked or copied in as given)"][0].endswith(":1")
    rows = [json.loads(line) for line in (tmp_path / "out2" / "captions.jsonl").read_text().splitlines()]
    assert max(len(c) for r in rows for c in r["captions"]) == 10_000
    # --overwrite replaces an earlier conversion, never images/ of another origin
    (tmp_path / "theirs" / "images").mkdir(parents=True)
    (tmp_path / "theirs" / "images" / "keep.png").write_bytes(b"x")
    (src / "captions.jsonl").write_text(json.dumps({"image": "pics/rel.png", "caption": "a cat"}) + "\n")
    with pytest.raises(ConvertError, match="images here came from elsewhere"):
        convert("folder", src, tmp_path / "theirs", overwrite=True, progress=False)
    assert (tmp_path / "theirs" / "images" / "keep.png").read_bytes() == b"x"


def test_a_captions_file_with_an_endless_caption_is_named(tmp_path):
    from generation.data import read_captions

    (tmp_path / "captions.jsonl").write_text(json.dumps({"image": "a.png", "captions": ["x" * 10_001]}) + "\n")
    with pytest.raises(ValueError, match="captions.jsonl:1: a caption of 10,001 characters"):
        read_captions(tmp_path)
    (tmp_path / "captions.jsonl").write_text(json.dumps({"image": "/data/a.png", "captions": ["a cat"]}) + "\n")
    assert read_captions(tmp_path)[0]["image"] == "/data/a.png"  # the user's own list may point anywhere


def test_text_that_is_not_text_and_yaml_keys_that_are_not_names_are_refused(tmp_path):
    from evaluation.prompts import ParseError, parse_prompt
    from evaluation.spec import SpecError, spec_from_dict
    from evaluation.suite import load_suite
    from generation.text import check_prompts

    lone = "a cat \ud83d"  # argv bytes that were not UTF-8 arrive so
    with pytest.raises(ParseError, match="is not valid text"):
        parse_prompt(lone)
    with pytest.raises(SpecError, match="is not valid text"):
        spec_from_dict({"prompt": lone, "category": "single_object", "expect": {"cat": {"min": 1}}})
    with pytest.raises(ValueError, match="prompt 0 is not valid text"):
        check_prompts([lone], allow_empty=False)
    for nul in ("a cat\x00", "two\x1b[31m dogs"):  # kept raw in results.jsonl, PNG text and report.html
        with pytest.raises(ParseError, match="holds the control character U\\+00"):
            parse_prompt(nul)
        with pytest.raises(ValueError, match="is not valid text"):
            check_prompts([nul], allow_empty=False)
    assert parse_prompt("two\tcats").category == "counting"  # whitespace is not a control character here
    (tmp_path / "s.yaml").write_text("name: s\n? [a, b]\n: 1\nprompts: []\n")
    with pytest.raises(SpecError, match=r"s.yaml:2:\d+: not valid YAML: a key must be a name, got a list"):
        load_suite(tmp_path / "s.yaml")


def test_a_detectors_metrics_file_of_the_wrong_shape_is_named(tiny_detector, tmp_path):
    from detection._common import UsageError
    from detection.detector import Detector

    shutil.copy(tiny_detector[1] / "best.pt", tmp_path / "best.pt")
    for metrics, said in (([1, 2], "not a detector's metrics"), ({"imgsz": "big"}, "imgsz must be a positive integer")):
        (tmp_path / "metrics.json").write_text(json.dumps(metrics))
        with pytest.raises(UsageError, match=f"metrics.json: {said}"):
            Detector.load(tmp_path / "best.pt", device="cpu")


def test_settings_are_read_without_decoding_the_pixels_and_huge_images_are_refused(tmp_path, monkeypatch):
    import datasets.images
    from generation.png_info import png_bytes, read_settings

    data = bytearray(png_bytes(Image.new("RGB", (64, 64)), {"prompt": "a cat", "seed": 3}))
    idat = data.index(b"IDAT")
    data[idat + 8:idat + 40] = b"\x00" * 32  # the pixels unreadable: the settings before them still are
    assert read_settings(bytes(data)) == {"prompt": "a cat", "seed": 3}
    Image.new("RGB", (20, 20)).save(tmp_path / "big.png")
    monkeypatch.setattr(datasets.images, "MAX_PIXELS", 300)
    with pytest.raises(OSError, match="20x20 is too large to open"):
        datasets.images.open_as_seen(tmp_path / "big.png")


def test_a_data_yamls_download_script_is_dropped(tmp_path):
    import yaml

    from detection.data import load_dataset

    scenes = tmp_path / "ds"
    (scenes / "images" / "train").mkdir(parents=True)
    (scenes / "labels" / "train").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(scenes / "images" / "train" / "a.png")
    (scenes / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (scenes / "data.yaml").write_text(yaml.safe_dump({"train": "images/train", "val": "images/train",
                                                      "names": {0: "cat", 1: "dog"},
                                                      "download": "import os; os.system('echo x')"}))
    written = yaml.safe_load(load_dataset(scenes / "data.yaml").write_resolved_yaml(tmp_path / "r.yaml").read_text())
    assert "download" not in written and written["names"] == {0: "cat", 1: "dog"}


def test_a_bpe_file_that_expands_to_one_huge_line_is_refused_at_once(tmp_path):
    """A 50 KB .gz holding a 50 MB line: refused after its first kilobyte, and the message quotes 80
    characters of it, not all of them."""
    import gzip

    from generation.official_clip import ClipError, tokenizer_from_bpe

    with gzip.open(tmp_path / "bpe.txt.gz", "wb") as fh:
        fh.write(b"#version: 0.2\n" + b"a" * 50_000_000 + b"\n")
    assert (tmp_path / "bpe.txt.gz").stat().st_size < 100_000
    with pytest.raises(ClipError, match="line 2 is not a merge of two symbols") as e:
        tokenizer_from_bpe(tmp_path / "bpe.txt.gz")
    assert len(str(e.value)) < 300
