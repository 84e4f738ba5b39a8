"""The lent-GPU round for the shipped generator, dry-run here: `GENDET_DRY=1 bash models/gpu_call.sh round`
and `... round-test` run the same steps on CPU (the `all` and `detectors` calls are the smoke build's route in
tests/test_build_demo.py)."""

import json
import os
import subprocess

import pytest
import torch

import gendet_env

ROOT = gendet_env.ROOT


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
