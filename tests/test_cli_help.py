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
