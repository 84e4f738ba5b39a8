"""The lent-GPU route for the demo bundle, dry-run here: `GENDET_DRY=1 bash models/gpu_call.sh all`
(and `... detectors`, `... round`) run the same steps on the smoke profile and CPU, what comes back fits the
device tool's $OUT limits, gpu_unpack.sh puts it where models.build_demo continues, and the build
finishes without training anything again."""

import json
import os
import subprocess

import pytest
import torch

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


@pytest.mark.slow
def test_the_round_call_brings_back_the_shipped_generator_grown_and_trained_further(tmp_path):
    """`gpu_call.sh round` (models/gpu_round.yaml): the bundle's generator, grown to 10 blocks,
    trained on new scenes until --stop-by, comes back in float16 within the $OUT limits and
    unpacks where its test reads it."""
    runs, out = tmp_path / "runs", tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "GENDET_DRY": "1", "OUT": str(out), "GENDET_RUNS": str(runs)}
    call = subprocess.run(["bash", "models/gpu_call.sh", "round"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert call.returncode == 0, call.stdout[-2000:] + call.stderr[-2000:]
    files = sorted(p.name for p in out.iterdir())
    assert files[:2] == ["gpu.txt", "round.log"] and all(f.startswith("round.tar.") for f in files[2:]), files
    assert all(f.stat().st_size < 16 * 2**20 for f in out.iterdir()) and len(files) <= 8
    # call 2 on the still-warm machine: the test, both models on the same images, compared
    out2 = tmp_path / "out2"
    out2.mkdir()
    test = subprocess.run(["bash", "models/gpu_call.sh", "round-test"], cwd=ROOT, env={**env, "OUT": str(out2)},
                          capture_output=True, text=True, timeout=600)
    assert test.returncode == 0, test.stdout[-2000:] + test.stderr[-2000:]
    assert sorted(p.name for p in out2.iterdir()) == ["gpu.txt", "results_base.jsonl", "results_cand.jsonl",
                                                       "round_test.json", "round_test.log"]
    verdict = json.loads((out2 / "round_test.json").read_text())["overall"]
    rows = {m: [json.loads(line) for line in (out2 / f"results_{m}.jsonl").read_text().splitlines()]
            for m in ("base", "cand")}
    assert verdict["n"] == len(rows["base"]) == len(rows["cand"]) == 16  # the smoke suite's 8 prompts, 2 images
    assert (verdict["passed_a"], verdict["passed_b"]) == tuple(sum(r["verdict"]["passed"] for r in rows[m]) for m in rows)
    (runs / "gpu_round").rename(tmp_path / "trained_there")  # what stays on the lent machine
    unpack = subprocess.run(["bash", "models/gpu_unpack.sh", str(out)], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert unpack.returncode == 0, unpack.stderr
    got = runs / "gpu_round" / "t2i"
    log = [json.loads(line) for line in (got / "log.jsonl").read_text().splitlines()]
    assert log[-1]["stopped"].startswith("time limit")  # stopped by the clock (--stop-by), not by train.steps
    meta = json.loads((got / "meta.json").read_text())
    assert (meta["seed"], meta["backgrounds"], meta["min_object"]) == (9, ["flat", "gradient"], 0.375)

    from safetensors.torch import load_file

    shipped = load_file(str(ROOT / "models" / "demo" / "generator" / "transformer" / "model.safetensors"))
    grown = load_file(str(got / "pipeline" / "transformer" / "model.safetensors"))
    assert set(shipped) < set(grown) and any(k.startswith("blocks.9.") for k in grown)
    assert {v.dtype for v in grown.values()} <= {torch.float16, torch.int64}  # packed in float16
    assert any(not torch.equal(grown[k].float(), shipped[k].float()) for k in shipped)  # it trained
    from generation.pipeline import TextToImage

    pipe = TextToImage.from_pretrained(got / "pipeline", device="cpu")
    assert pipe.defaults["steps"] == 50 and pipe.defaults["guidance_scale"] == 3.0  # the shipped defaults
    images = pipe("a black cat", seeds=[0], steps=2).images
    assert images.shape == (1, 3, 128, 128) and torch.isfinite(images).all()
