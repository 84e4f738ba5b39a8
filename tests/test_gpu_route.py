"""The lent-GPU route for the demo bundle, dry-run here: `GENDET_DRY=1 bash models/gpu_call.sh all`
(and `... detectors`) run the same steps on the smoke profile and CPU, what comes back fits the
device tool's $OUT limits, gpu_unpack.sh puts it where models.build_demo continues, and the build
finishes without training anything again."""

import json
import os
import subprocess

import pytest

import gendet_env
from models.build_demo import build

ROOT = gendet_env.ROOT


@pytest.mark.slow
def test_the_calls_bring_back_the_whole_bundle_within_the_out_limits(tmp_path, capsys):
    runs, out, out_det = tmp_path / "runs", tmp_path / "out", tmp_path / "out_detectors"
    for part, folder in (("all", out), ("detectors", out_det)):  # two calls: two $OUT folders
        folder.mkdir()
        env = {**os.environ, "GENDET_DRY": "1", "OUT": str(folder), "GENDET_RUNS": str(runs)}
        call = subprocess.run(["bash", "models/gpu_call.sh", part], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=600)
        assert call.returncode == 0, call.stdout[-2000:] + call.stderr[-2000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == ["build.log", "generator.tar.aa", "gpu.txt"], files
    for f in [*out.iterdir(), *out_det.iterdir()]:  # the device tool's limits
        assert f.stat().st_size < 16 * 2**20, f
    # the generator trains to the call's end (less the packing), whatever the machine's speed
    assert "--stop-by" in (out / "build.log").read_text()
    assert sorted(p.name for p in out_det.iterdir()) == ["build_detectors.log", "detectors.tar.aa", "gpu.txt"]
    log = (out_det / "build_detectors.log").read_text()
    assert log.count('"images_per_s"') == 4  # both detectors at batch 1 and 32

    for folder in (out, out_det):
        unpack = subprocess.run(["bash", "models/gpu_unpack.sh", str(folder), "smoke"], cwd=ROOT, env=env,
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
