"""The lent-GPU route for the demo bundle, dry-run here: `GENDET_DRY=1 bash models/gpu_call.sh all`
runs the same steps on the smoke profile and CPU, what comes back fits the device tool's $OUT
limits, gpu_unpack.sh puts it where models.build_demo continues, and the build finishes without
training anything again."""

import json
import os
import subprocess

import pytest

import gendet_env
from models.build_demo import build

ROOT = gendet_env.ROOT


@pytest.mark.slow
def test_one_call_brings_back_the_whole_bundle_within_the_out_limits(tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "GENDET_DRY": "1", "OUT": str(out), "GENDET_RUNS": str(runs)}
    call = subprocess.run(["bash", "models/gpu_call.sh", "all"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert call.returncode == 0, call.stdout[-2000:] + call.stderr[-2000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == ["build.log", "build_detectors.log", "detectors.tar.aa", "generator.tar.aa", "gpu.txt"], files
    assert len(files) <= 8 and all((out / f).stat().st_size < 16 * 2**20 for f in files)  # the device tool's limits
    log = (out / "build_detectors.log").read_text()
    assert log.count('"images_per_s"') == 4  # both detectors at batch 1 and 32

    unpack = subprocess.run(["bash", "models/gpu_unpack.sh", str(out), "smoke"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert unpack.returncode == 0, unpack.stderr
    work = runs / "demo_smoke"
    for part in ("t2i/pipeline/pipeline.json", "vqvae/metrics.json", "catdog/best.pt", "face/speed.json"):
        assert (work / part).is_file(), part
    assert set(json.loads((work / "times.json").read_text())) == {"scenes", "generator_scenes", "vqvae", "generator",
                                                                   "catdog", "face"}

    bundle = build("smoke", "cpu", work, tmp_path / "bundle")
    printed = capsys.readouterr().out
    for stage in ("vqvae", "generator", "catdog", "face"):  # trained on the "GPU": not again here
        assert f"[{stage}] done (" in printed, stage
    card = (bundle / "README.md").read_text()
    assert card.count("inference (`Detector.detect`") == 2 and "Training hardware:" in card
