"""The benchmark scripts' command lines: bad values are one line before any model is built, the
defaults fit the model, and what they record is what ran."""

import json

import pytest

from benchmarks import sampling_speed


def _refused(main, argv, capsys) -> str:
    """main(argv) refuses with exit code 2; its one-line message."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def test_sampling_speed_tiny_preset_defaults_to_the_steps_it_has(tmp_path, capsys):
    out = tmp_path / "new" / "speed.json"  # a folder not there yet is made
    assert sampling_speed.main(["--preset", "tiny", "--device", "cpu", "--batch", "2", "--repeats", "1",
                                "--threads", "1", "--json-out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [r["steps"] for r in rows] == [10] and rows[0]["batch"] == 2 and rows[0]["threads"] == 1
    assert rows[0]["cpu"] not in ("", "cpu")
    capsys.readouterr()
    message = _refused(sampling_speed.main, ["--preset", "tiny", "--device", "cpu", "--steps", "25"], capsys)
    assert message.endswith("error: --steps 25: the model has 10 diffusion steps")


@pytest.mark.parametrize("argv, message", [
    (["--batch", "0"], "argument --batch: must be >= 1, got 0"),
    (["--batch", "-2"], "argument --batch: must be >= 1, got -2"),
    (["--steps", "0"], "argument --steps: must be >= 1, got 0"),
    (["--repeats", "0"], "argument --repeats: must be >= 1, got 0"),
    (["--threads", "-1"], "argument --threads: must be >= 1, got -1"),
    (["--guidance", "-1"], "error: --guidance must be >= 0 (1 = off), got -1.0"),
    (["--model", "/nonexistent"], "error: --model /nonexistent: no such folder"),
    (["--model", "README.md"], "error: --model README.md: not a folder"),
    (["--json-out", "tests"], "error: --json-out tests: a folder; name a file in it"),
    (["--json-out", "README.md/x.json"], "error: --json-out README.md/x.json: README.md is a file, not a folder"),
    (["--json-out", "not_yet/"], "error: --json-out not_yet/: a folder; name a file in it"),  # not written as a file
])
def test_sampling_speed_refuses_bad_values_before_building(argv, message, capsys, monkeypatch):
    def no_build(*a, **k):
        raise AssertionError("a model was built before the arguments were checked")

    monkeypatch.setattr(sampling_speed, "random_pipeline", no_build)
    monkeypatch.setattr(sampling_speed.TextToImage, "from_pretrained", no_build)
    assert message in _refused(sampling_speed.main, ["--preset", "tiny", "--device", "cpu", *argv], capsys)


@pytest.mark.parametrize("argv, message", [
    (["--dtype", "bfloat16", "--floor"], "error: --dtype bfloat16 needs a CUDA --device"),
    (["--threads", "-1"], "argument --threads: must be >= 1, got -1"),
    (["--threads", "0"], "argument --threads: must be >= 1, got 0"),
])
def test_sampling_refuses_bf16_on_cpu_and_bad_threads(argv, message, capsys, monkeypatch):
    """On the CPU ours ran float32 (autocast is CUDA-only) while --floor used the bf16 matrix rate
    and the record said bfloat16; --threads 0 was ignored, -1 a traceback."""
    from benchmarks import diffusers_reference, sampling

    def no_build(*a, **k):
        raise AssertionError("a model was built before the arguments were checked")

    monkeypatch.setattr(diffusers_reference, "build", no_build)
    assert message in _refused(sampling.main, ["--shape", "test", "--device", "cpu", *argv], capsys)


@pytest.mark.parametrize("argv, message", [
    (["vqvae", "--batch", "0"], "argument --batch: must be >= 1, got 0"),
    (["vqvae", "--repeats", "0"], "argument --repeats: must be >= 1, got 0"),
    (["vqvae", "--size", "30"], "error: --size 30 is not divisible by --downsample 8"),
    (["vqvae", "--threads", "-1"], "argument --threads: must be >= 0, got -1"),
    (["vqvae", "--warmup", "-1"], "argument --warmup: must be >= 0, got -1"),
    (["transformer", "--depth", "0"], "argument --depth: must be >= 1, got 0"),
    (["transformer", "--heads", "5"], "error: --width 192 is not divisible by --heads 5"),
    (["transformer", "--text-dim", "30"], "error: --text-dim must be a multiple of 4"),
])
def test_training_speed_refuses_bad_shapes_in_one_line(argv, message, capsys, monkeypatch):
    from benchmarks import training_speed

    def no_build(*a, **k):
        raise AssertionError("a model was built before the arguments were checked")

    monkeypatch.setattr(training_speed, "vqvae_step", no_build)
    monkeypatch.setattr(training_speed, "transformer_step", no_build)
    assert message in _refused(training_speed.main, [*argv, "--device", "cpu"], capsys)


def test_training_speed_records_the_cpu_model(capsys):
    from benchmarks import training_speed

    training_speed.main(["vqvae", "--size", "16", "--channels", "8", "--downsample", "4", "--batch", "1",
                         "--repeats", "1", "--warmup", "0", "--precision", "fp32", "--layout", "contiguous",
                         "--device", "cpu"])
    (row,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    from pathlib import Path

    from benchmarks._common import cpu_name

    assert row["device"] == cpu_name() and row["s_step"] > 0
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file() and "model name" in cpuinfo.read_text():  # not every kernel names it (aarch64)
        assert row["device"] not in ("", "cpu", "x86_64", "aarch64")


def test_diffusers_reference_refuses_bad_folders_before_building(tmp_path, capsys, monkeypatch):
    """--out naming a file was a NotADirectoryError, an unwritable one a traceback after the model
    was built, and one folder for both layouts was accepted."""
    from benchmarks import diffusers_reference

    def no_build(*a, **k):
        raise AssertionError("a model was built before the folders were checked")

    monkeypatch.setattr(diffusers_reference, "build", no_build)
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    for argv, message in (
        (["--out", str(a_file)], f"error: --out {a_file}: {a_file} is a file, not a folder"),
        (["--out", "/proc/nope"], "error: --out /proc/nope: cannot write in /proc"),
        (["--shape", "official", "--out", str(tmp_path / "x"), "--official", str(tmp_path / "x")],
         "the two layouts need two separate folders"),
        (["--shape", "official", "--out", str(tmp_path / "x"), "--official", str(tmp_path / "x" / "o")],
         "the two layouts need two separate folders"),
        (["--shape", "official", "--out", str(tmp_path / "x"), "--official", str(a_file / "o")],
         f"error: --official {a_file / 'o'}: {a_file} is a file, not a folder"),
    ):
        assert diffusers_reference.main(argv) == 2
        assert message in capsys.readouterr().err, argv
    assert not (tmp_path / "x").exists()


def test_detection_speed_reads_a_scenes_roots_val_images_once(tmp_path):
    """A scenes root's catdog/ and face/ hold its images/val again: every image was read 3 times."""
    from benchmarks.detection_speed import val_files
    from datasets.scenes import generate

    scenes = generate(tmp_path / "s", n=8, size=32, seed=3, val_fraction=0.5, progress=False)
    val = sorted((scenes / "images" / "val").iterdir())
    assert val_files(scenes) == val and len(val) == 4
    assert [p.name for p in val_files(scenes / "catdog")] == [p.name for p in val]
    assert val_files(scenes / "images" / "val") == val


def test_detection_speed_refuses_json_out_folder_and_size_with_data(tmp_path, capsys):
    from benchmarks import detection_speed
    from detection._common import run_cli

    for argv, message in ((["--json-out", str(tmp_path)], f"error: --json-out {tmp_path}: a folder; name a file in it"),
                          (["--data", str(tmp_path), "--size", "64"], "error: --size is for the random images")):
        with pytest.raises(SystemExit) as e:  # checked before the detector loads: a missing one is not reached
            run_cli(detection_speed.main, ["--model", str(tmp_path / "none.pt"), "--device", "cpu", *argv])
        assert e.value.code == 2 and message in capsys.readouterr().err, argv


def test_json_out_expands_a_quoted_home(tmp_path, monkeypatch, capsys):
    """--json-out "~/x.json" (quoted, or from a script) made a folder named ~ in the working directory."""
    from benchmarks._common import json_out_problem, write_json

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert json_out_problem("~/runs/x.json") is None
    write_json("~/runs/x.json", [1])
    assert json.loads((tmp_path / "home" / "runs" / "x.json").read_text()) == [1] and not (tmp_path / "~").exists()
    # ~ of a user that does not exist: a name like any other, not a RuntimeError's traceback
    assert json_out_problem("~nosuchuser/x.json") is None
    assert "error: --model ~nosuchuser/g: no such folder" in _refused(sampling_speed.main, [
        "--preset", "tiny", "--device", "cpu", "--model", "~nosuchuser/g"], capsys)
