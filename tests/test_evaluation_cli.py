"""python -m evaluation.run end to end with a tiny generator and a tiny detector; resumes."""

import json

from evaluation.run import main
from evaluation.runner import read_rows


def test_run_writes_everything_and_resumes(tiny_detector, tmp_path, capsys):
    from test_pipeline import tiny_pipeline

    _, det_run = tiny_detector
    tiny_pipeline().save_pretrained(tmp_path / "gen")
    args = ["--suite", "smoke", "--model", str(tmp_path / "gen"), "--detectors", f"catdog={det_run / 'best.pt'}",
            "--images-per-prompt", "2", "--steps", "3", "--device", "cpu", "--out", str(tmp_path / "eval"), "--quiet"]
    assert main(args) == 0
    out = tmp_path / "eval"
    rows = read_rows(out / "results.jsonl")
    assert len(rows) == 16 and {r["seed"] for r in rows} == {0, 1}
    assert all(r["settings"]["steps"] == 3 and "reason" in r for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["overall"]["n"] == 16 and summary["models"]["detectors"]["catdog"]["sha256"]
    assert summary["judge"]["version"] == "judge-1"
    html = (out / "report.html").read_text()
    assert all(r["image"] in html for r in rows)
    assert "| **overall** |" in capsys.readouterr().out
    assert main(args) == 0  # resume: nothing to redo, no duplicate rows
    assert len(read_rows(out / "results.jsonl")) == 16
    bad = ["--suite", "nope", "--model", str(tmp_path / "gen"), "--out", str(tmp_path / "y"), "--quiet"]
    assert main(bad) == 2 and "no suite 'nope'" in capsys.readouterr().err
