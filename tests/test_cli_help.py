"""Every command line says what each of its options does: an option without help text fails
here, and every CLI's --help prints its usage."""

import ast
import importlib

import pytest

import gendet_env

ROOT = gendet_env.ROOT
FOLDERS = ("datasets", "generation", "detection", "evaluation", "models", "benchmarks", "docs", "ui")


def cli_files():
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py") if "add_argument" in p.read_text())


def test_every_option_has_help():
    missing = []
    for path in cli_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument"
                    and not any(k.arg == "help" for k in node.keywords)):
                missing.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not missing, "options without help=: " + ", ".join(missing)
    assert len(cli_files()) >= 20  # the scan found the CLIs


@pytest.mark.parametrize("module", sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts).replace(".__init__", "")
    for p in cli_files() if p.parts[-2] != "docs" and "def main(" in p.read_text()))
def test_help_prints_usage(module, capsys):
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(module).main(["--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage:")


def test_every_device_option_is_checked_against_the_machine():
    """A mistyped or missing device is one argparse line, not a torch traceback: every --device
    goes through gendet_env.device_arg (detection.train parses its own, for 0,1 multi-GPU lists)."""
    unchecked = []
    for path in cli_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument"
                    and any(isinstance(a, ast.Constant) and a.value == "--device" for a in node.args)
                    and "device_arg" not in ast.unparse(node)):
                unchecked.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert unchecked == ["detection/train.py:" + str(_line_of(ROOT / "detection/train.py", '"--device"'))]


def _line_of(path, text):
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_device_values_known_answers(monkeypatch):
    import argparse

    import torch

    check = gendet_env.device_arg
    assert check("cpu") == "cpu" and check(" CPU ") == "cpu"
    for bad, message in (("gpu", "'gpu' is not a device: use cpu, cuda, cuda:N or a GPU number"),
                         ("cuda:x", "is not a device"), ("0,1", "is not a device")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            check(bad)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(argparse.ArgumentTypeError, match="'cuda': CUDA is not available on this machine"):
        check("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert check("cuda") == "cuda" and check("1") == "cuda:1" and check("cuda:0") == "cuda:0"
    with pytest.raises(argparse.ArgumentTypeError, match="'cuda:2': this machine has 2 GPU"):
        check("cuda:2")


def test_screenshots_refuse_a_missing_evaluation_run_before_replacing_a_picture(tmp_path, capsys):
    """docs/screenshots.py wrote the Generate picture over the committed one, then waited 60 s for
    an Evaluate page that a fresh clone's default run folder could not fill."""
    import runpy

    script = gendet_env.ROOT / "docs" / "screenshots.py"
    main = runpy.run_path(str(script))["main"]
    with pytest.raises(SystemExit) as exit_:
        main(["--eval-run", str(tmp_path / "none"), "--out", str(tmp_path / "shots")])
    assert exit_.value.code == 2 and "holds no summary.json" in capsys.readouterr().err
    assert not (tmp_path / "shots").exists()
