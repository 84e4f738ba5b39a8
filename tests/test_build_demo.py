"""The demo-bundle recipe end to end with the `smoke` profile (tiny everything), then resumption."""

import json

from models.build_demo import build


def test_smoke_build_assembles_a_bundle_with_a_card_and_skips_done_stages(tmp_path, capsys):
    bundle = build("smoke", "cpu", tmp_path / "work", tmp_path / "bundle")
    for name in ("generator/pipeline.json", "catdog.pt", "face.pt", "README.md", "judge_validation.json"):
        assert (bundle / name).exists(), name
    card = (bundle / "README.md").read_text()
    assert "VQ-VAE: val PSNR" in card and "catdog detector" in card and "| **overall** |" in card
    assert "Judge agreement" in card and "Sampling speed" in card and "images/s) on CPU" in card
    assert "python -m generation.train --config" in card and "python -m detection.train --task face" in card
    summary = json.loads((tmp_path / "work" / "eval" / "summary.json").read_text())
    assert set(summary["judge_validation"]) >= {"overall", "single_object"}  # printed next to the results
    times = json.loads((tmp_path / "work" / "times.json").read_text())
    assert set(times) == {"scenes", "vqvae", "generator", "catdog", "face", "judge_validation", "evaluation",
                          "speed"}
    capsys.readouterr()
    build("smoke", "cpu", tmp_path / "work", tmp_path / "bundle")  # everything done: nothing reruns
    out = capsys.readouterr().out
    assert out.count("] done (") == 8 and "$ " not in out
