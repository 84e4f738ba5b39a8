"""The two training CLIs end to end on a tiny scenes set: outputs, metrics, exact resume."""

import json
import shutil
import re
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from datasets.scenes import generate
from generation import train as t2i
from generation import train_vqvae
from generation.pipeline import TextToImage
from generation.vqvae import VQVAE


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("scenes") / "s", n=24, size=32, seed=3, val_fraction=0.25, progress=False)


VQ_ARGS = ["--size", "32", "--batch", "8", "--codebook-size", "32", "--embed-dim", "16", "--channels", "16",
           "--downsample", "4", "--val-every", "5", "--ckpt-every", "5", "--quiet"]


@pytest.fixture(scope="module")
def vqvae_dir(scenes, tmp_path_factory):
    out = tmp_path_factory.mktemp("vq")
    assert train_vqvae.main(["--data", str(scenes), "--out", str(out), "--steps", "10", *VQ_ARGS]) == 0
    return out


def test_train_vqvae_writes_model_metrics_and_resumes_exactly(scenes, vqvae_dir, tmp_path):
    metrics = json.loads((vqvae_dir / "metrics.json").read_text())
    assert metrics["step"] == 10 and metrics["val_psnr"] > 5 and 1 <= metrics["codes_used"] <= 32
    rows = [json.loads(x) for x in (vqvae_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10]
    half = tmp_path / "half"
    # interrupted (time limit) after its first step, with the same --steps: the same lr curve
    assert train_vqvae.main(["--data", str(scenes), "--out", str(half), "--steps", "10", "--time-limit", "1e-9",
                             *VQ_ARGS]) == 0
    # killed mid-way through its checkpoint swap (checkpoint/ renamed to .old, the complete .tmp not yet
    # in place) and while writing a log row: --resume goes on from the checkpoint, not from nothing
    shutil.copytree(half / "checkpoint", tmp_path / "step1")
    # a kill while an earlier swap deleted checkpoint.old left part of it: the next swap goes through
    (half / "checkpoint.old" / "model").mkdir(parents=True)
    (half / "checkpoint.old" / "model" / "config.json").write_text("{}")
    assert train_vqvae.main(["--data", str(scenes), "--out", str(half), "--steps", "10", "--time-limit", "1e-9",
                             "--resume", *VQ_ARGS]) == 0
    assert not (half / "checkpoint.old").exists()
    ckpt = half / "checkpoint"  # at step 2; the swap to it killed between its renames
    ckpt.rename(half / "checkpoint.tmp")
    shutil.copytree(tmp_path / "step1", half / "checkpoint.old")
    with open(half / "metrics.jsonl", "a") as f:
        f.write('{"step": 7, "lo')
    assert train_vqvae.main(["--data", str(scenes), "--out", str(half), "--steps", "10", "--resume", *VQ_ARGS]) == 0
    assert not (half / "checkpoint.old").exists() and not (half / "checkpoint.tmp").exists()
    # resumed from step 2 (.tmp), not 1 (.old): step 2's row is kept
    assert [json.loads(x)["step"] for x in (half / "metrics.jsonl").read_text().splitlines()] == [1, 2, 5, 10]
    a, b = load_file(str(vqvae_dir / "model.safetensors")), load_file(str(half / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert train_vqvae.main(["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), *VQ_ARGS]) == 2


def test_decoder_only_keeps_every_token_and_lowers_the_reconstruction_error(scenes, vqvae_dir, tmp_path, capsys):
    out = tmp_path / "ft"
    args = ["--data", str(scenes), "--out", str(out), "--init", str(vqvae_dir), "--decoder-only", "--loss", "mse",
            "--lr", "1e-3", *VQ_ARGS]
    assert train_vqvae.main([*args, "--steps", "20", "--time-limit", "1e-9"]) == 0  # one step, then a checkpoint
    assert train_vqvae.main([*args, "--steps", "20", "--resume"]) == 0
    straight = tmp_path / "straight"
    assert train_vqvae.main([*args[:3], str(straight), *args[4:], "--steps", "20"]) == 0
    a, b = load_file(str(out / "model.safetensors")), load_file(str(straight / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # the resumed run is the uninterrupted one
    before, after = VQVAE.from_pretrained(vqvae_dir), VQVAE.from_pretrained(out)
    a, b = before.state_dict(), after.state_dict()
    for k in a:  # only the decoder moved
        assert torch.equal(a[k], b[k]) != k.startswith("decoder."), k
    images = train_vqvae.as_float(train_vqvae.load_images(train_vqvae.image_paths(scenes, "val"), 32), "cpu")
    ids = before.encode(images)
    assert torch.equal(ids, after.encode(images))
    error = [torch.nn.functional.mse_loss(m.decode(ids), images).item() for m in (before, after)]
    assert error[1] < 0.9 * error[0], error
    # a plain --init run trains everything, on the init's architecture: options may repeat it, not change it
    whole = tmp_path / "whole"
    assert train_vqvae.main(["--data", str(scenes), "--out", str(whole), "--init", str(vqvae_dir), "--steps", "2",
                             *VQ_ARGS, "--channels", "8"]) == 2
    assert f"--channels 8 disagrees with --init {vqvae_dir} (channels 16)" in capsys.readouterr().err
    assert train_vqvae.main(["--data", str(scenes), "--out", str(whole), "--init", str(vqvae_dir), "--steps", "2",
                             *VQ_ARGS]) == 0
    moved = VQVAE.from_pretrained(whole)
    assert moved.config == before.config
    assert not torch.equal(moved.state_dict()["encoder.net.0.weight"], a["encoder.net.0.weight"])
    # the decoder-only run resumes only as one; and needs a model to start from
    assert train_vqvae.main(["--data", str(scenes), "--out", str(out), "--resume", "--steps", "30", *VQ_ARGS]) == 2
    with pytest.raises(SystemExit):
        train_vqvae.main(["--data", str(scenes), "--out", str(tmp_path / "x"), "--decoder-only", *VQ_ARGS])


def config(scenes, vqvae_dir, out, steps):
    return {"data": str(scenes), "vqvae": str(vqvae_dir), "out": str(out), "image_size": 32,
            "text": {"kind": "scratch", "vocab_size": 200, "dim": 32, "layers": 1, "heads": 2, "max_length": 16},
            "transformer": {"preset": "tiny", "width": 32, "depth": 1, "heads": 2},
            "diffusion": {"num_timesteps": 10},
            "train": {"steps": steps, "batch_size": 4, "warmup": 2, "log_every": 2, "val_every": 3,
                      "sample_every": 100, "ckpt_every": 3, "val_batches": 1},
            "sample": {"prompts": ["a cat"], "per_prompt": 2, "steps": 3}}


def test_train_writes_pipeline_logs_and_resumes_bit_identically(scenes, vqvae_dir, tmp_path, capsys):
    full = tmp_path / "full.yaml"
    full.write_text(yaml.safe_dump(config(scenes, vqvae_dir, tmp_path / "full", 6)))
    assert t2i.main(["--config", str(full), "--device", "cpu", "--quiet"]) == 0
    log = [json.loads(x) for x in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    assert [r["step"] for r in steps] == [2, 4, 6] and all(r["loss"] > 0 and r["tokens_s"] > 0 for r in steps)
    assert any("val_loss" in r and "val_loss_wrong_text" in r for r in log)
    assert (tmp_path / "full" / "samples" / "step_0000006.png").is_file()
    pipe = TextToImage.from_pretrained(tmp_path / "full" / "pipeline", device="cpu")
    assert pipe("a cat", steps=3).images.shape == (1, 3, 32, 32)
    # stopped after its last checkpoint and before its grid and export: --resume draws and writes them
    grid = tmp_path / "full" / "samples" / "step_0000006.png"
    drawn, weights = grid.read_bytes(), (tmp_path / "full" / "pipeline" / "transformer" / "model.safetensors").read_bytes()
    grid.unlink()
    shutil.rmtree(tmp_path / "full" / "pipeline")
    assert t2i.main(["--config", str(full), "--device", "cpu", "--quiet", "--resume"]) == 0
    assert grid.read_bytes() == drawn
    assert (tmp_path / "full" / "pipeline" / "transformer" / "model.safetensors").read_bytes() == weights
    # 3 steps, stop, resume to 6: the same weights as 6 in one go
    half_cfg = config(scenes, vqvae_dir, tmp_path / "half", 6)
    (tmp_path / "half.yaml").write_text(yaml.safe_dump(half_cfg))
    assert t2i.main(["--config", str(tmp_path / "half.yaml"), "--device", "cpu", "--quiet", "--stop-at", "3"]) == 0
    assert not (tmp_path / "half" / "pipeline").exists() and (tmp_path / "half" / "checkpoint").is_dir()
    # a run killed after its checkpoint has logged steps that the resume runs again: they are dropped,
    # and so is a row cut short; a token cache's key cut short is a stale cache (tokenised again), and
    # a kill between the checkpoint swap's two renames leaves the checkpoint for --resume
    with open(tmp_path / "half" / "log.jsonl", "a") as f:
        f.write(json.dumps({"step": 4, "loss": -1.0}) + "\n" + '{"step": 5, "lo')
    key = tmp_path / "half" / "tokens.json"
    key.write_text(key.read_text()[:40])
    shutil.copytree(tmp_path / "half" / "checkpoint", tmp_path / "half" / "checkpoint.tmp")
    (tmp_path / "half" / "checkpoint").rename(tmp_path / "half" / "checkpoint.old")
    capsys.readouterr()
    assert t2i.main(["--config", str(tmp_path / "half.yaml"), "--device", "cpu", "--quiet", "--resume"]) == 0
    assert f"resumed from step 3 of 6 ({tmp_path / 'half' / 'checkpoint'})" in capsys.readouterr().err
    assert json.loads(key.read_text())["key"]  # written again, whole
    half_log = [json.loads(x) for x in (tmp_path / "half" / "log.jsonl").read_text().splitlines()]
    assert [(r["step"], r.get("loss"), r.get("val_loss")) for r in half_log] == \
        [(r["step"], r.get("loss"), r.get("val_loss")) for r in log]
    a = load_file(str(tmp_path / "full" / "pipeline" / "transformer" / "model.safetensors"))
    b = load_file(str(tmp_path / "half" / "pipeline" / "transformer" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    ca = load_file(str(tmp_path / "full" / "checkpoint" / "train_state.safetensors"))
    cb = load_file(str(tmp_path / "half" / "checkpoint" / "train_state.safetensors"))
    assert all(torch.equal(ca[k], cb[k]) for k in ca)



def test_an_out_folder_with_a_run_or_other_files_is_not_written_over(scenes, vqvae_dir, tmp_path, capsys):
    """Without --resume a run's checkpoint would be replaced (its log cut to a few lines); a VQ-VAE's
    or a dataset's folder would get a run written into it. Both refused, the files kept."""
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(config(scenes, vqvae_dir, tmp_path / "run", 3)))
    assert t2i.main(["--config", str(cfg_path), "--device", "cpu", "--quiet", "--stop-at", "3"]) == 0
    log = (tmp_path / "run" / "log.jsonl").read_text()
    capsys.readouterr()
    assert t2i.main(["--config", str(cfg_path), "--device", "cpu", "--quiet"]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'run'} holds a generation.train run (checkpoint); pass --resume "
                                       "to continue it, or choose a new out folder (or delete this one to start over)\n")
    assert (tmp_path / "run" / "log.jsonl").read_text() == log
    assert t2i.main(["--config", str(cfg_path), "--device", "cpu", "--quiet", "--out", str(vqvae_dir)]) == 2
    assert f"error: {vqvae_dir} holds files that are not a generation.train run's (" in capsys.readouterr().err
    assert not (vqvae_dir / "pipeline").exists()
    # a data folder that is not there: named with where it was given, before anything is written
    assert t2i.main(["--config", str(cfg_path), "--device", "cpu", "--data", str(tmp_path / "nodata"),
                     "--out", str(tmp_path / "new")]) == 2
    assert capsys.readouterr().err == (f"error: --data: {tmp_path / 'nodata'} holds no captions.jsonl (give a "
                                       "datasets.scenes root or a captions dataset, e.g. from datasets.convert)\n")
    assert not (tmp_path / "new").exists()
    # --resume into a folder with no checkpoint (a typo): refused before tokenising, nothing left behind
    assert t2i.main(["--config", str(cfg_path), "--device", "cpu", "--quiet", "--resume",
                     "--out", str(tmp_path / "typo")]) == 2
    assert capsys.readouterr().err == f"error: --resume: no checkpoint in {tmp_path / 'typo' / 'checkpoint'}\n"
    assert not (tmp_path / "typo").exists()


def test_time_limits_stop_early_and_still_write_usable_models(scenes, vqvae_dir, tmp_path):
    """A time budget (minutes) ends training at a step boundary: the VQ-VAE is evaluated and
    saved, the generator's EMA pipeline exported, and both can --resume to the full count."""
    out = tmp_path / "vq"
    assert train_vqvae.main(["--data", str(scenes), "--out", str(out), "--steps", "10", "--time-limit", "1e-6",
                             *VQ_ARGS]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["step"] == 1 and "time limit" in metrics["stopped"] and (out / "model.safetensors").is_file()
    assert train_vqvae.main(["--data", str(scenes), "--out", str(out), "--steps", "10", "--resume", *VQ_ARGS]) == 0
    assert json.loads((out / "metrics.json").read_text())["step"] == 10

    cfg = tmp_path / "t2i.yaml"
    cfg.write_text(yaml.safe_dump(config(scenes, vqvae_dir, tmp_path / "t2i", 6)))
    assert t2i.main(["--config", str(cfg), "--device", "cpu", "--quiet", "--time-limit", "1e-6"]) == 0
    log = [json.loads(x) for x in (tmp_path / "t2i" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 1 and "time limit" in log[-1]["stopped"]
    pipe = TextToImage.from_pretrained(tmp_path / "t2i" / "pipeline", device="cpu")
    assert pipe("a cat", steps=2).images.shape == (1, 3, 32, 32)
    assert t2i.main(["--config", str(cfg), "--device", "cpu", "--quiet", "--resume"]) == 0
    assert [json.loads(x) for x in (tmp_path / "t2i" / "log.jsonl").read_text().splitlines()][-1]["step"] == 6
    # --schedule-by-time: the clock is out at the first step, so it runs at the cosine's end, lr / 10
    timed = config(scenes, vqvae_dir, tmp_path / "timed", 6)
    timed["train"] |= {"warmup": 0, "lr": 1e-3}
    cfg.write_text(yaml.safe_dump(timed))
    assert t2i.main(["--config", str(cfg), "--device", "cpu", "--quiet", "--time-limit", "1e-9",
                     "--schedule-by-time"]) == 0
    state = torch.load(tmp_path / "timed" / "checkpoint" / "optimizer.pt", weights_only=True)
    assert state["step"] == 1
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-4)
    assert t2i.main(["--config", str(cfg), "--device", "cpu", "--quiet", "--schedule-by-time"]) == 2
    # --stop-by: a wall-clock time (a lent machine's call ends then); one already past stops at the first step
    timed = config(scenes, vqvae_dir, tmp_path / "stop_by", 6)
    cfg.write_text(yaml.safe_dump(timed))
    assert t2i.main(["--config", str(cfg), "--device", "cpu", "--quiet", "--stop-by", str(time.time() - 1)]) == 0
    log = [json.loads(x) for x in (tmp_path / "stop_by" / "log.jsonl").read_text().splitlines()]
    assert log[-1] == {"step": 1, "stopped": "time limit: --stop-by passed before the start"}  # no negative minutes
    assert (tmp_path / "stop_by" / "pipeline" / "pipeline.json").is_file()
    # one in the future is named as the time it was, not as minutes of a limit nobody gave
    timed = config(scenes, vqvae_dir, tmp_path / "stop_by_later", 100_000)
    cfg.write_text(yaml.safe_dump(timed))
    stop_by = time.time() + 2
    assert t2i.main(["--config", str(cfg), "--device", "cpu", "--quiet", "--no-samples", "--stop-by", str(stop_by)]) == 0
    log = [json.loads(x) for x in (tmp_path / "stop_by_later" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["stopped"] == f"time limit: --stop-by {t2i.utc(stop_by)}" and 1 < log[-1]["step"] < 100_000


def test_init_fine_tunes_a_saved_pipeline(scenes, vqvae_dir, tmp_path, monkeypatch):
    """`init: DIR` trains a saved pipeline further: at lr 0 the exported pipeline is the saved one
    to the bit (weights, tokenizer, sampling defaults); at lr > 0 its weights move from there.
    The data's tokens come from the init's run, not from the tokenizer again."""
    base = config(scenes, vqvae_dir, tmp_path / "base", 3)
    base["sample"]["truncation"] = 0.7
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    assert t2i.main(["--config", str(tmp_path / "base.yaml"), "--device", "cpu", "--quiet"]) == 0
    saved = tmp_path / "base" / "pipeline"

    def no_images(*args, **kwargs):
        raise AssertionError("the init's run has these tokens: nothing to tokenise")

    monkeypatch.setattr(t2i, "CaptionImageDataset", no_images)

    def fine_tune(name, lr, **extra):
        cfg = {"init": str(saved), "data": str(scenes), "out": str(tmp_path / name), **extra,
               "train": {**base["train"], "steps": 2, "lr": lr}, "sample": {"prompts": ["a dog"], "per_prompt": 1}}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
        assert t2i.main(["--config", str(tmp_path / f"{name}.yaml"), "--device", "cpu", "--quiet"]) == 0
        return tmp_path / name / "pipeline"

    still, moved = fine_tune("still", 0.0), fine_tune("moved", 1e-2)
    for part in ("transformer", "text_encoder"):
        a = load_file(str(saved / part / "model.safetensors"))
        b = load_file(str(still / part / "model.safetensors"))
        c = load_file(str(moved / part / "model.safetensors"))
        assert a.keys() == b.keys() == c.keys() and all(torch.equal(a[k], b[k]) for k in a), part
        assert any(not torch.equal(a[k], c[k]) for k in a) and all(torch.isfinite(c[k]).all() for k in c), part
    assert (saved / "text_encoder" / "tokenizer.json").read_text() == (moved / "text_encoder" / "tokenizer.json").read_text()
    assert json.loads((moved / "pipeline.json").read_text())["defaults"]["truncation"] == 0.7
    rows = [json.loads(x) for x in (tmp_path / "moved" / "log.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 2 and rows[0]["loss"] > 0
    want = load_file(str(tmp_path / "base" / "tokens.safetensors"))
    got = load_file(str(tmp_path / "moved" / "tokens.safetensors"))
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)

    # grow: blocks appended as the identity; at lr 0 the grown pipeline draws what the saved one does
    grown = fine_tune("grown", 0.0, grow={"depth": 2})
    a, g = TextToImage.from_pretrained(saved), TextToImage.from_pretrained(grown)
    assert (a.transformer.config.depth, g.transformer.config.depth) == (1, 2)
    assert torch.equal(a(["a dog"], seeds=[5], steps=3).tokens, g(["a dog"], seeds=[5], steps=3).tokens)
    assert any(not torch.equal(p, torch.zeros_like(p))
               for p in TextToImage.from_pretrained(fine_tune("grown_moved", 1e-2, grow={"depth": 2}))
               .transformer.blocks[1].mlp[2].parameters())

    bad = tmp_path / "bad.yaml"
    for grow in ("{depth: 0}", "{depth: two}", "{width: 3}", "3"):
        bad.write_text(f"init: {saved}\ndata: {scenes}\nout: {tmp_path / 'g'}\ngrow: {grow}\n")
        with pytest.raises(t2i.ConfigError, match="grow must be {depth: N} with N a positive whole number"):
            t2i.load_config(bad)
        assert t2i.main(["--config", str(bad), "--device", "cpu", "--quiet"]) == 2, grow
    bad.write_text("data: x\nvqvae: y\nout: z\ngrow: {depth: 3}\n")
    with pytest.raises(t2i.ConfigError, match="it needs init"):
        t2i.load_config(bad)
    bad.write_text(f"init: {saved}\ndata: x\nout: z\ntransformer: {{width: 64}}\n")
    with pytest.raises(t2i.ConfigError, match="fixes the model; remove transformer"):
        t2i.load_config(bad)
    bad.write_text(f"init: {tmp_path}\ndata: x\nout: z\n")
    with pytest.raises(t2i.ConfigError, match="is not a saved text-to-image pipeline"):
        t2i.load_config(bad)


def test_a_sentence_transformers_text_encoder_trains_frozen_and_reloads(scenes, vqvae_dir, tmp_path):
    """`text: {kind: auto, path: DIR}`: the denoiser learns to read a local sentence-transformers
    model's token states; the encoder stays as it was, and the saved pipeline reads prompts with it."""
    from test_text import tiny_sentence_transformer

    model, tok = tiny_sentence_transformer(tmp_path / "st")
    cfg = config(scenes, vqvae_dir, tmp_path / "t2i", 3)
    cfg["text"] = {"kind": "auto", "path": str(tmp_path / "st"), "max_length": 22}
    (tmp_path / "t2i.yaml").write_text(yaml.safe_dump(cfg))
    assert t2i.main(["--config", str(tmp_path / "t2i.yaml"), "--device", "cpu", "--quiet"]) == 0
    pipe = TextToImage.from_pretrained(tmp_path / "t2i" / "pipeline")
    assert pipe.text_encoder.max_length == 22 and pipe.transformer.config.text_dim == 32
    saved = load_file(str(tmp_path / "t2i" / "pipeline" / "text_encoder" / "model.safetensors"))
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items() if k in saved)  # frozen
    emb, mask = pipe.encode_text(["a black cat"])
    with torch.no_grad():
        want = model(**tok("a black cat", return_tensors="pt")).last_hidden_state[0]
    assert torch.allclose(emb[0, :len(want)], want, atol=1e-5) and mask[0].sum() == len(want)
    images = pipe("a black cat", seeds=[0], steps=3).images
    assert images.shape == (1, 3, 32, 32) and torch.isfinite(images).all()
    rows = [json.loads(x) for x in (tmp_path / "t2i" / "log.jsonl").read_text().splitlines()]
    assert any("val_loss" in r for r in rows)
    bad = {**cfg, "text": {"kind": "auto"}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    assert t2i.main(["--config", str(tmp_path / "bad.yaml"), "--device", "cpu", "--quiet"]) == 2


def usage_error(main, argv, capsys) -> str:
    """The one-line argparse error that main(argv) exits with (status 2)."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_config_errors_are_named(tmp_path, capsys):
    bad = tmp_path / "c.yaml"
    bad.write_text("data: x\nvqvae: y\n")
    assert t2i.main(["--config", str(bad)]) == 2
    with pytest.raises(t2i.ConfigError, match="missing field 'out'"):
        t2i.load_config(bad)
    bad.write_text("data: x\nvqvae: y\nout: z\ntrain: {stepz: 3}\n")
    with pytest.raises(t2i.ConfigError, match="unknown train field"):
        t2i.load_config(bad)
    bad.write_text("data: x\nvqvae: y\nout: z\ntrain: {precision: fp16}\n")
    with pytest.raises(t2i.ConfigError, match="train.precision must be one of auto, fp32, bf16, got 'fp16'"):
        t2i.load_config(bad)
    capsys.readouterr()
    # not YAML, or not a mapping: one line naming the file, not PyYAML's traceback
    for text, want in [("data: [unclosed\n", "c.yaml: not valid YAML: expected ',' or ']', but got '<stream end>' "
                                               "(line 2, column 1)"),
                       ("# A README\n\nIt trains: then it samples: fast\n",
                        "c.yaml: not valid YAML: mapping values are not allowed here (line 3, column 27)"),
                       ("- data\n- out\n", "c.yaml: a config is a mapping of fields (data: ..., vqvae: ..., out: ...), "
                                            "got list"),
                       ("data: x\nvqvae: y\nout: z\ntrain: {steps: -3}\n",
                        "c.yaml: train.steps must be a whole number >= 1, got -3"),
                       ("data: x\nvqvae: y\nout: z\ntrain: {lr: 1e-3}\n",
                        "c.yaml: train.lr must be a number >= 0, got '1e-3' (YAML reads 1e-3 as text: write 0.001)"),
                       ("data: x\nvqvae: y\nout: z\ntrain: {drop_text: 1.5}\n",
                        "c.yaml: train.drop_text must be a number from 0 to 1, got 1.5")]:
        bad.write_text(text)
        assert t2i.main(["--config", str(bad)]) == 2, text
        err = capsys.readouterr().err
        assert err.startswith("error: ") and want in err and "Traceback" not in err, err
    bad.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    assert t2i.main(["--config", str(bad)]) == 2
    assert "c.yaml: not a YAML config (not UTF-8 text)" in capsys.readouterr().err
    # an out folder that is a file (or inside one)
    taken = tmp_path / "notes.txt"
    taken.write_text("a file")
    bad.write_text(f"data: x\nvqvae: y\nout: {taken}\n")
    assert t2i.main(["--config", str(bad)]) == 2
    assert f"error: {taken}: the out: folder of {bad} exists and is not a folder" in capsys.readouterr().err
    bad.write_text("data: x\nvqvae: y\nout: z\n")
    assert t2i.main(["--config", str(bad), "--out", str(taken)]) == 2
    assert f"error: {taken}: --out exists and is not a folder" in capsys.readouterr().err
    assert t2i.main(["--config", str(bad), "--out", str(taken / "run")]) == 2
    assert f"error: {taken / 'run'}: --out is inside {taken}, which is a file" in capsys.readouterr().err


def test_model_fields_are_checked_before_the_data_is_tokenised(scenes, vqvae_dir, tmp_path, capsys):
    """A model the config cannot build failed only after tokenising (minutes on a real set), with
    a message that did not name the file, and left a token cache behind. Now one line, up front,
    and no out folder is made."""
    path = tmp_path / "c.yaml"
    base = config(scenes, vqvae_dir, tmp_path / "run", 3)
    for section, fields, want in [
            ("transformer", {"preset": "tiny", "width": 30, "heads": 4},
             "transformer: width 30 is not divisible by heads 4"),
            ("transformer", {"preset": "huge"}, "transformer: unknown transformer preset 'huge'; choose from"),
            ("transformer", {"widht": 64}, "unknown transformer field(s) widht"),
            ("transformer", {"depth": "2"}, "transformer.depth must be a whole number, got '2'"),
            ("transformer", {"depth": 0}, "transformer.depth must be at least 1, got 0"),
            ("transformer", {"text_dim": 64}, "transformer.text_dim follows from the VQ-VAE, the text encoder and"),
            ("transformer", {"activation": "relu"}, "transformer: activation must be 'gelu' or 'gelu2', got 'relu'"),
            ("text", {"kind": "scratch", "dim": 30, "heads": 4}, "text.dim 30 is not divisible by text.heads 4"),
            ("text", {"kind": "scratch", "layer": 2}, "text.kind scratch takes dim, heads, layers, max_length, "
                                                      "vocab_size; unknown: layer"),
            ("text", {"kind": "bert"}, "text.kind must be scratch, clip or auto, got 'bert'"),
            ("text", {"kind": "clip", "path": str(tmp_path / "none")}, f"text.kind clip needs text.path, a local "
                                                                       f"folder; {tmp_path / 'none'} is not one"),
            ("text", {"vocab_size": 0}, "text.vocab_size must be a whole number >= 1, got 0"),
            ("diffusion", {"num_timesteps": 1}, "diffusion.num_timesteps must be a whole number >= 2, got 1"),
            ("diffusion", {"steps": 10}, "diffusion: got an unexpected keyword argument 'steps'")]:
        path.write_text(yaml.safe_dump({**base, section: fields}))
        assert t2i.main(["--config", str(path), "--device", "cpu", "--quiet"]) == 2, fields
        err = capsys.readouterr().err
        assert err.startswith(f"error: {path}: {want}"), (want, err)
        assert not (tmp_path / "run").exists()
    # a VQ-VAE that is not there fails inside train(): the out folder it made is taken away again
    path.write_text(yaml.safe_dump({**base, "vqvae": str(tmp_path / "no_vqvae")}))
    assert t2i.main(["--config", str(path), "--device", "cpu", "--quiet"]) == 2
    assert str(tmp_path / "no_vqvae") in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_impossible_limits_are_refused_before_training(tmp_path, capsys):
    """A negative step count ran nothing and claimed to write a checkpoint; --stop-by in minutes
    (a Unix time in 1970) and a negative --time-limit each trained one step."""
    cfg = ["--config", str(tmp_path / "any.yaml")]  # the flags are checked before the config is read
    assert usage_error(t2i.main, [*cfg, "--steps", "-3"], capsys).endswith("error: --steps must be at least 1, got -3")
    assert usage_error(t2i.main, [*cfg, "--stop-at", "0"], capsys).endswith("error: --stop-at must be at least 1, got 0")
    for limit in ("-1", "0", "nan"):
        assert usage_error(t2i.main, [*cfg, "--time-limit", limit], capsys).endswith(
            f"error: --time-limit must be a positive number of minutes, got {limit}")
    assert usage_error(t2i.main, [*cfg, "--stop-by", "100"], capsys).endswith(
        "error: --stop-by 100 is in the past (1970-01-01 00:01:40 UTC); it is a Unix time, e.g. $(( $(date +%s) + 480 ))")
    yesterday = time.time() - 2 * 86400
    assert "is in the past" in usage_error(t2i.main, [*cfg, "--stop-by", str(yesterday)], capsys)
    assert "--stop-by inf is not a time" in usage_error(t2i.main, [*cfg, "--stop-by", "inf"], capsys)
    assert "argument --device: 'gpu' is not a device" in usage_error(t2i.main, [*cfg, "--device", "gpu"], capsys)


def test_resume_refuses_another_models_checkpoint_by_name(scenes, vqvae_dir, tmp_path, capsys, monkeypatch):
    """--resume after the model config changed: one line naming what differs (not load_state_dict's
    page of missing keys); the "wrote" line names only what the run wrote."""
    cfg = config(scenes, vqvae_dir, tmp_path / "run", 3)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert t2i.main(["--config", str(path), "--device", "cpu", "--quiet", "--stop-at", "1"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'run' / 'checkpoint'}"
    cfg["transformer"]["depth"] = 2
    path.write_text(yaml.safe_dump(cfg))
    assert t2i.main(["--config", str(path), "--device", "cpu", "--quiet", "--resume"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {tmp_path / 'run'} holds a checkpoint of another model (its config differs from this "
                   "config: transformer depth 1 vs 2); use a new out: folder\n")
    # a difference the comparison does not see still ends in one line, not a traceback
    monkeypatch.setattr(t2i, "model_differences", lambda saved, pipe: [])
    assert t2i.main(["--config", str(path), "--device", "cpu", "--quiet", "--resume"]) == 2
    assert "its weights do not fit the model this config builds" in capsys.readouterr().err
    monkeypatch.undo()
    # steps the checkpoint has already passed
    cfg["transformer"]["depth"] = 1
    path.write_text(yaml.safe_dump(cfg))
    assert t2i.main(["--config", str(path), "--device", "cpu", "--quiet", "--resume", "--stop-at", "1"]) == 2
    assert "--stop-at 1: the checkpoint in" in capsys.readouterr().err
    assert t2i.main(["--config", str(path), "--device", "cpu", "--quiet", "--resume"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'run' / 'pipeline'}"


def test_sample_grids_show_progress_and_can_be_skipped(scenes, vqvae_dir, tmp_path, capsys):
    """The grid at the end of a run draws at the model's sampling steps (minutes on a CPU for a real
    model): it shows a bar, and --no-samples (or train.sample_every: 0) skips it."""
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config(scenes, vqvae_dir, tmp_path / "drawn", 1)))
    assert t2i.main(["--config", str(path), "--device", "cpu"]) == 0
    assert "drawing a 1x2 sample grid" in capsys.readouterr().err
    assert (tmp_path / "drawn" / "samples" / "step_0000001.png").is_file()
    path.write_text(yaml.safe_dump(config(scenes, vqvae_dir, tmp_path / "skipped", 1)))
    assert t2i.main(["--config", str(path), "--device", "cpu", "--no-samples"]) == 0
    assert "sample grid" not in capsys.readouterr().err
    assert not (tmp_path / "skipped" / "samples").exists() and (tmp_path / "skipped" / "pipeline").is_dir()
    cfg = config(scenes, vqvae_dir, tmp_path / "zero", 1)
    cfg["train"]["sample_every"] = 0
    path.write_text(yaml.safe_dump(cfg))
    assert t2i.main(["--config", str(path), "--device", "cpu", "--quiet"]) == 0
    assert not (tmp_path / "zero" / "samples").exists()
    # no sample section: its default 25 steps on a 10-step model draw at all 10, as the saved pipeline
    # keeps them (the grid asked for 25 and failed after training, before the export)
    cfg = config(scenes, vqvae_dir, tmp_path / "default", 1)
    del cfg["sample"]
    path.write_text(yaml.safe_dump(cfg))
    assert t2i.main(["--config", str(path), "--device", "cpu", "--quiet"]) == 0
    assert (tmp_path / "default" / "samples" / "step_0000001.png").is_file()
    assert TextToImage.from_pretrained(tmp_path / "default" / "pipeline", device="cpu").defaults["steps"] == 10
    for sample, message in (({"guidance": 3}, "unknown sample field(s) guidance; known: guidance_scale, per_prompt, "
                                              "prompts, steps, truncation"),
                            ({"truncation": 1.5}, "sample.truncation must be in (0, 1], got 1.5"),
                            ({"prompts": "a cat"}, "sample.prompts must be a list of prompts, got 'a cat'"),
                            ({"steps": 0}, "sample.steps must be a whole number >= 1, got 0")):
        cfg["sample"] = sample
        path.write_text(yaml.safe_dump(cfg))
        with pytest.raises(t2i.ConfigError, match=re.escape(f"{path}: {message}")):
            t2i.load_config(path)


def test_the_first_weights_do_not_depend_on_a_token_cache_being_there(scenes, vqvae_dir, tmp_path):
    """A run stopped before its first checkpoint leaves the token cache, which a fresh start reuses:
    tokenising drew from the global RNG only on a cache miss, so the two starts differed."""
    import shutil

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config(scenes, vqvae_dir, tmp_path / "a", 2)))
    assert t2i.main(["--config", str(path), "--device", "cpu", "--quiet", "--no-samples"]) == 0
    (tmp_path / "b").mkdir()
    for cache in (tmp_path / "a").glob("tokens*"):
        shutil.copy(cache, tmp_path / "b" / cache.name)
    assert t2i.main(["--config", str(path), "--device", "cpu", "--quiet", "--no-samples", "--out",
                     str(tmp_path / "b")]) == 0
    a, b = (load_file(str(tmp_path / r / "pipeline" / "transformer" / "model.safetensors")) for r in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_precision_reaches_the_training_step(scenes, vqvae_dir, tmp_path):
    """bf16 autocast changes the weights a step produces (so it is really on), and each log
    row names the precision that ran."""
    weights = {}
    for precision in ("fp32", "bf16"):
        cfg = config(scenes, vqvae_dir, tmp_path / precision, 2)
        cfg["train"]["precision"] = precision
        (tmp_path / f"{precision}.yaml").write_text(yaml.safe_dump(cfg))
        assert t2i.main(["--config", str(tmp_path / f"{precision}.yaml"), "--device", "cpu", "--quiet"]) == 0
        rows = [json.loads(x) for x in (tmp_path / precision / "log.jsonl").read_text().splitlines()]
        assert [r["precision"] for r in rows if "loss" in r] == [precision]
        weights[precision] = load_file(str(tmp_path / precision / "pipeline" / "transformer" / "model.safetensors"))
    a, b = weights["fp32"], weights["bf16"]
    assert all(torch.isfinite(b[k]).all() for k in b)
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_validate_measures_what_the_text_is_worth():
    """val_loss_wrong_text runs the same images, t and x_t with the next image's caption: equal to
    val_loss when every caption is the same, different when the captions differ and the model
    reads them; val_loss is the mean of the seeded batches' losses."""
    from test_pipeline import tiny_pipeline

    model = t2i.TrainStep(tiny_pipeline())
    ids = torch.randint(0, 16, (6, 16), generator=torch.Generator().manual_seed(0))
    tc = {"val_batches": 2, "batch_size": 4}
    same = t2i.validate(model, (ids, [["a cat"]] * 6), tc, "cpu")
    assert same["val_loss"] == same["val_loss_wrong_text"] > 0
    caps = [["a cat"], ["two dogs"], ["a face"], ["a black cat to the left of a dog"], ["a dog"], ["a face"]]
    mixed = t2i.validate(model, (ids, caps), tc, "cpu")
    assert mixed["val_loss"] != mixed["val_loss_wrong_text"]
    # known answer: the same two seeded batches by hand
    g, losses = torch.Generator().manual_seed(12345), []
    for _ in range(2):
        idx = torch.randint(0, 6, (4,), generator=g)
        with torch.no_grad():
            text_ids, text_mask = model.pipe.text_encoder.tokenize([caps[i][0] for i in idx.tolist()])
            loss, _ = model(ids[idx], text_ids, text_mask, torch.zeros(4, dtype=torch.bool), g, False)
        losses.append(loss.item())
    assert mixed["val_loss"] == pytest.approx(sum(losses) / 2, rel=1e-6)
    assert model.training and not model.pipe.vqvae.training


def test_a_training_step_reads_nothing_back_from_the_model_device():
    """On a GPU every read of a tensor's value (bool(), item(), tolist()) waits for all queued
    kernels: a training step must make none once the importance sampler's history is full, so
    the host can run ahead of the GPU. Checked here by trapping those reads on the CPU."""
    from test_pipeline import tiny_pipeline

    pipe = tiny_pipeline().train()
    pipe.diffusion.Lt_count.fill_(11)  # history full: t is drawn from it (checked once, by the first step)
    model = t2i.TrainStep(pipe)
    table = t2i.CaptionTable(pipe.text_encoder, [["a cat", "two dogs"], ["a face"], ["a black cat to the left of a dog"]])
    g = torch.Generator().manual_seed(0)
    text_ids, text_mask = table.pick([0, 1, 2, 0], g)
    x0 = torch.randint(0, 16, (4, 16), generator=g)
    drop = torch.tensor([False, True, False, False])
    model(x0, text_ids, text_mask, drop, g)[0].backward()
    reads = []

    def trap(name, orig):
        def read(self, *args, **kwargs):
            reads.append((name, sys._getframe(1).f_code.co_name, self.device.type))
            return orig(self, *args, **kwargs)
        return read

    names = ("__bool__", "item", "tolist", "__int__", "__float__")
    saved = {n: getattr(torch.Tensor, n) for n in names}
    try:
        for n in names:
            setattr(torch.Tensor, n, trap(n, saved[n]))
        loss, stats = model(x0, text_ids, text_mask, drop, g)
        loss.backward()
    finally:
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)
    # the only reads: the text mask's checks, a CPU tensor by contract (the tokenizer's output);
    # the drop rows are no longer read at all (the null text is always in the graph, for DDP)
    assert sorted(set(reads)) == [("__bool__", "prepare_text", "cpu")], reads
    assert torch.isfinite(loss)
    assert all(p.grad is not None for n, p in t2i.trainable(pipe).items() if not n.startswith("vqvae."))


def test_caption_table_picks_the_captions_the_strings_would_be():
    """The tokenised table gives, for the same generator draws, the ids and mask of exactly the
    caption that picking strings gave (so a run's batches are what they were before the table)."""
    from test_pipeline import tiny_pipeline

    text = tiny_pipeline().text_encoder
    caps = [["a cat", "two dogs", "a face"], ["a black cat to the left of a dog"], ["a dog", "two cats"]]
    table = t2i.CaptionTable(text, caps)
    images = [2, 0, 1, 0, 2, 0]
    ids, mask = table.pick(images, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    want = [caps[i][int(torch.randint(0, len(caps[i]), (), generator=g))] for i in images]
    want_ids, want_mask = text.tokenize(want)
    assert torch.equal(ids, want_ids) and torch.equal(mask, want_mask)
    with pytest.raises(ValueError, match="image 1 of the dataset has no caption"):
        t2i.CaptionTable(text, [["a cat"], []])


def torchrun_command(config_path) -> list[str]:
    """`torchrun --nproc_per_node 2 -m generation.train` on CPU, its rendezvous on a free loopback port."""
    import shutil
    import socket
    import sys
    from pathlib import Path

    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        torchrun = shutil.which("torchrun")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return [str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(port),
            "-m", "generation.train", "--config", str(config_path), "--device", "cpu", "--quiet", "--no-samples"]


def test_torchrun_two_processes_train_validate_and_export(scenes, vqvae_dir, tmp_path):
    """`torchrun --nproc_per_node 2` on CPU (gloo): rank 0 validates alone. Through the
    DistributedDataParallel wrapper its forward waited for rank 1, which never came: the run hung
    after its last step with no validation row and no pipeline."""
    import os
    import subprocess
    from pathlib import Path

    cfg = config(scenes, vqvae_dir, tmp_path / "ddp", 2)
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(cfg))
    root = Path(__file__).resolve().parents[1]
    # both ranks tokenise; they also both wrote the token cache, and one rank's os.replace then
    # found no temporary file (rank 0 alone writes it now)
    done = subprocess.run(torchrun_command(tmp_path / "ddp.yaml"), cwd=root, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=180)  # 10 s when it works
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(x) for x in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "val_loss" in r] == [2]
    assert (tmp_path / "ddp" / "pipeline" / "pipeline.json").is_file()


def test_torchrun_resume_ends_on_the_uninterrupted_runs_weights(scenes, vqvae_dir, tmp_path):
    """Each rank draws its own batches. The checkpoint held rank 0's random state alone, which every
    rank took on --resume: from there all ranks drew rank 0's batches (half the data per step on 2
    GPUs), and the run ended elsewhere than the uninterrupted one."""
    import os
    import subprocess
    from pathlib import Path

    from safetensors.torch import load_file

    import shutil

    root, env = Path(__file__).resolve().parents[1], {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("whole", "halves"):
        cfg = config(scenes, vqvae_dir, tmp_path / name, 4)
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    for extra in ([], ["--stop-at", "2"], ["--resume"]):
        if extra == ["--resume"]:  # killed mid-swap: rank 0 recovers it while the others must wait, not refuse
            ck = tmp_path / "halves" / "checkpoint"
            shutil.copytree(ck, ck.with_name("checkpoint.old"))
            os.replace(ck, ck.with_name("checkpoint.tmp"))
        done = subprocess.run([*torchrun_command(tmp_path / f"{'halves' if extra else 'whole'}.yaml"), *extra],
                              cwd=root, env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr[-3000:]
    whole, halves = (load_file(str(tmp_path / n / "checkpoint" / "train_state.safetensors")) for n in ("whole", "halves"))
    assert all(torch.equal(whole[k], halves[k]) for k in whole)


def test_a_resume_on_another_process_count_gives_each_rank_its_own_draws(monkeypatch, capsys):
    """A checkpoint of as many ranks: each takes its own states (batch draws, a GPU run's own noise
    generator, torch's global one). Of another count (or from before the states were gathered): rank
    0 takes rank 0's and says so; the others get new seeds of their own, the same on a rerun, and
    none draws what another does."""
    def gens(rank, own_noise=False):  # a GPU run draws its noise from a generator of its own
        g = torch.Generator().manual_seed(1000 + rank)
        return g, torch.Generator().manual_seed(5000 + rank) if own_noise else g

    with torch.random.fork_rng():  # the global generator is set here: later tests keep theirs
        saved = {"ranks": []}
        for r in range(2):
            torch.manual_seed(7000 + r)
            saved["ranks"].append(t2i.random_states(*gens(r, own_noise=True)))
        for r in (0, 1):
            monkeypatch.setenv("RANK", str(r))
            monkeypatch.setenv("WORLD_SIZE", "2")
            g, noise = gens(r, own_noise=True)
            g.manual_seed(99), noise.manual_seed(99), torch.manual_seed(99)
            t2i.restore_random_states(saved, g, noise, 7)
            assert [torch.equal(a, b) for a, b in zip((g.get_state(), noise.get_state(), torch.get_rng_state()),
                                                      saved["ranks"][r].values())] == [True] * 3
        assert capsys.readouterr().err == ""
        single = t2i.random_states(*gens(0))  # a single-process checkpoint, resumed on three ranks
        monkeypatch.setenv("WORLD_SIZE", "3")
        draws = []
        for r in (0, 1, 2, 2):
            monkeypatch.setenv("RANK", str(r))
            g, _ = gens(r)
            t2i.restore_random_states(single, g, g, 7)
            draws.append(torch.randint(0, 1 << 30, (4,), generator=g).tolist())
    assert draws[0] == torch.randint(0, 1 << 30, (4,), generator=gens(0)[0]).tolist()  # rank 0: as saved
    assert draws[2] == draws[3] and len({tuple(d) for d in draws}) == 3  # a rerun alike; no two ranks alike
    assert "the checkpoint holds one process's random state (a single-process run's, or rank 0's alone" in \
        capsys.readouterr().err
    with torch.random.fork_rng():
        monkeypatch.setenv("RANK", "0")  # a 2-rank checkpoint on 3 ranks
        t2i.restore_random_states(saved, *gens(0), 7)
    assert "the checkpoint holds the random states of 2 processes, this run has 3" in capsys.readouterr().err


def test_torchrun_stopped_by_sigterm_saves_one_checkpoint_every_rank_agrees_on(scenes, vqvae_dir, tmp_path):
    """SIGTERM to torchrun (a scheduler's end of job): torchrun passes it to both ranks, which agree
    on the step to stop at and save it, well inside torchrun's 30 s grace before it kills them."""
    import os
    import signal
    import subprocess
    from pathlib import Path

    cfg = config(scenes, vqvae_dir, tmp_path / "ddp", 100_000)
    cfg["train"] |= {"ckpt_every": 100_000, "val_every": 100_000, "log_every": 100_000}  # only the stop syncs
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(cfg))
    root = Path(__file__).resolve().parents[1]
    run = subprocess.Popen(torchrun_command(tmp_path / "ddp.yaml"), cwd=root, env={**os.environ, "OMP_NUM_THREADS": "1"},
                           stderr=subprocess.PIPE, text=True)
    log = tmp_path / "ddp" / "log.jsonl"
    try:
        deadline = time.time() + 120
        while not log.is_file() and time.time() < deadline:  # opened as the steps begin
            assert run.poll() is None, run.stderr.read()[-3000:]
            time.sleep(0.2)
        time.sleep(3)
        run.send_signal(signal.SIGTERM)
        err = run.communicate(timeout=60)[1]
    finally:
        run.kill()
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    step = rows[-1]["step"]
    assert rows[-1] == {"step": step, "stopped": "SIGTERM"} and step >= 1, err[-3000:]
    assert torch.load(tmp_path / "ddp" / "checkpoint" / "optimizer.pt", weights_only=True)["step"] == step
    assert err.count(f"stopped after step {step}: ") == 1 and err.count("SIGTERM: stopping after this step") == 1


def test_the_logged_rate_counts_the_steps_since_the_last_row(scenes, vqvae_dir, tmp_path, monkeypatch):
    """it_s divided log_every by the time since the last row, also for a row off that grid (the last
    step, the first after a resume): 5 steps logged every 2 gave the last row 2 steps' rate for 1."""
    clock = iter(range(0, 10_000, 10))  # every time.time() call: 10 s later
    monkeypatch.setattr(t2i.time, "time", lambda: float(next(clock)))
    cfg = config(scenes, vqvae_dir, tmp_path / "run", 5)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert t2i.main(["--config", str(tmp_path / "c.yaml"), "--device", "cpu", "--quiet", "--no-samples"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines() if '"it_s"' in x]
    steps = [r["step"] for r in rows]
    assert steps == [2, 4, 5]
    # steps since the last row over the time since it: the clock's ticks between rows vary, the
    # steps counted must not (1 step for the last row, not log_every's 2)
    seconds = [2 / rows[0]["it_s"], 2 / rows[1]["it_s"], 1 / rows[2]["it_s"]]
    assert all(s > 0 and s == round(s / 10) * 10 for s in seconds), seconds


def test_ctrl_c_says_where_to_go_on_from_instead_of_a_traceback(scenes, vqvae_dir, tmp_path, capsys, monkeypatch):
    from generation import train_vqvae

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config(scenes, vqvae_dir, tmp_path / "run", 6)))
    assert t2i.main(["--config", str(path), "--device", "cpu", "--quiet", "--stop-at", "3"]) == 0

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(t2i, "train", interrupted)
    capsys.readouterr()
    assert t2i.main(["--config", str(path), "--device", "cpu", "--quiet", "--resume"]) == 130
    assert capsys.readouterr().err == (f"\ninterrupted: {tmp_path / 'run' / 'checkpoint'} holds the last checkpoint "
                                       "(one every 3 steps); the same command with --resume goes on from there\n")
    monkeypatch.setattr(train_vqvae, "train", interrupted)
    assert train_vqvae.main(["--data", str(scenes), "--out", str(tmp_path / "vq"), "--steps", "2"]) == 130
    assert "interrupted before the first checkpoint (one every " in capsys.readouterr().err


def signal_at_step(module, monkeypatch, signum, at: int):
    """Send `signum` to this process while step `at` is computed (its lr asked for): a real
    signal, handled by whatever handler the trainer has installed."""
    import os

    real = module.lr_at

    def lr_at(step, *args, **kwargs):
        if step == at:
            os.kill(os.getpid(), signum)
        return real(step, *args, **kwargs)

    monkeypatch.setattr(module, "lr_at", lr_at)


def test_ctrl_c_or_sigterm_mid_run_ends_the_step_with_a_checkpoint(scenes, vqvae_dir, tmp_path, capfd,
                                                                  monkeypatch):
    """The first Ctrl-C (or SIGTERM) lets the step finish and saves it: no step since the last
    periodic checkpoint is lost, and --resume ends on the uninterrupted run's weights."""
    import signal

    straight, stopped = tmp_path / "straight.yaml", tmp_path / "stopped.yaml"
    straight.write_text(yaml.safe_dump(config(scenes, vqvae_dir, tmp_path / "straight", 6)))
    stopped.write_text(yaml.safe_dump(config(scenes, vqvae_dir, tmp_path / "stopped", 6)))
    assert t2i.main(["--config", str(straight), "--device", "cpu", "--quiet"]) == 0
    with monkeypatch.context() as m:
        signal_at_step(t2i, m, signal.SIGINT, 3)  # step 4 is under way; checkpoints come every 3 steps
        capfd.readouterr()
        assert t2i.main(["--config", str(stopped), "--device", "cpu", "--quiet"]) == 130
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    assert capfd.readouterr().err == (
        "\nCtrl-C: stopping after this step, with a checkpoint (Ctrl-C again to stop at once, without it)\n"
        f"\nstopped after step 4: {tmp_path / 'stopped' / 'checkpoint'} holds it; the same command with --resume "
        "goes on from there\n")
    assert torch.load(tmp_path / "stopped" / "checkpoint" / "optimizer.pt", weights_only=True)["step"] == 4
    assert not (tmp_path / "stopped" / "pipeline").exists()
    log = [json.loads(x) for x in (tmp_path / "stopped" / "log.jsonl").read_text().splitlines()]
    assert log[-1] == {"step": 4, "stopped": "Ctrl-C"}
    assert t2i.main(["--config", str(stopped), "--device", "cpu", "--quiet", "--resume"]) == 0
    a = load_file(str(tmp_path / "straight" / "pipeline" / "transformer" / "model.safetensors"))
    b = load_file(str(tmp_path / "stopped" / "pipeline" / "transformer" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the VQ-VAE trainer, stopped by SIGTERM (a scheduler's, or `kill`) between its checkpoints (every 5)
    vq = tmp_path / "vq"
    with monkeypatch.context() as m:
        signal_at_step(train_vqvae, m, signal.SIGTERM, 2)
        assert train_vqvae.main(["--data", str(scenes), "--out", str(vq), "--steps", "10", *VQ_ARGS]) == 130
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert capfd.readouterr().err.endswith(f"stopped after step 3: {vq / 'checkpoint'} holds it; the same command "
                                            "with --resume goes on from there\n")
    assert torch.load(vq / "checkpoint" / "state.pt", weights_only=True)["step"] == 3
    assert not (vq / "model.safetensors").exists()
    assert train_vqvae.main(["--data", str(scenes), "--out", str(vq), "--steps", "10", "--resume", *VQ_ARGS]) == 0
    a, b = load_file(str(vqvae_dir / "model.safetensors")), load_file(str(vq / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sigterm_before_the_steps_begin_ends_the_trainer_as_ctrl_c_does(scenes, vqvae_dir, tmp_path, capsys,
                                                                         monkeypatch):
    """A scheduler's SIGTERM while the data is tokenised (minutes on a large set) killed the trainer
    outright: no word, and its cleanup never ran (the out folder it had made was left)."""
    import signal

    def tokenize(*args, **kwargs):
        signal.raise_signal(signal.SIGTERM)  # handled before this returns
        raise AssertionError("SIGTERM did not stop the run")

    monkeypatch.setattr(t2i, "tokenize_dataset", tokenize)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config(scenes, vqvae_dir, tmp_path / "run", 6)))
    assert t2i.main(["--config", str(path), "--device", "cpu", "--quiet"]) == 130
    assert capsys.readouterr().err == ("\ninterrupted before the first checkpoint (one every 3 steps): nothing to "
                                       f"resume in {tmp_path / 'run'}\n")
    assert not (tmp_path / "run").exists() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_second_ctrl_c_stops_at_once_and_an_ignored_one_stays_ignored():
    import os
    import signal

    from generation.stop_signal import StopAfterStep

    with StopAfterStep() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.name == "SIGTERM"
        os.kill(os.getpid(), signal.SIGTERM)  # torchrun's SIGTERM after the terminal's Ctrl-C: still one stop
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs between bytecodes; it must have raised by now
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a background job's: Ctrl-C is not for it
    try:
        with StopAfterStep() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)
            assert not stop.requested
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_every_writer_refuses_a_folder_another_run_is_writing(scenes, vqvae_dir, tmp_path, capsys):
    """Two runs on one out folder (two terminals, a job submitted twice) used to write side by side:
    two trainers tore each other's checkpoints and logs, two detector runs left no weights at all,
    two scenes runs crashed midway. While a run holds the folder, each is refused in one line and
    nothing in the folder changes."""
    import gendet_env
    from datasets import scenes as scenes_cli
    from detection import train as det_train
    from detection._common import run_cli

    busy = tmp_path / "busy"  # made by the other run a moment ago, nothing in it yet
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(config(scenes, vqvae_dir, busy, 3)))
    with gendet_env.held(busy, "other"):
        capsys.readouterr()
        assert t2i.main(["--config", str(cfg), "--device", "cpu", "--quiet"]) == 2
        assert capsys.readouterr().err == (f"error: {busy}: another run is writing there now (this generation.train "
                                           "run would mix its files with that one's); wait for it to end, or choose "
                                           "another out folder\n")
        assert train_vqvae.main(["--data", str(scenes), "--out", str(busy), "--steps", "2", *VQ_ARGS]) == 2
        assert "another run is writing there now (this train_vqvae run" in capsys.readouterr().err
        with pytest.raises(SystemExit) as e:
            scenes_cli.main(["--out", str(busy), "--n", "2", "--size", "32", "--quiet"])
        assert e.value.code == 2 and "another run is writing there now (this datasets.scenes run" in \
            capsys.readouterr().err
        with pytest.raises(SystemExit) as e:
            run_cli(det_train.main, ["--task", "catdog", "--data", str(scenes), "--out", str(busy), "--epochs", "1"])
        assert e.value.code == 2 and "another run is writing there now (this detection.train run" in \
            capsys.readouterr().err
        assert busy.is_dir() and not any(busy.iterdir())  # not written in, and not removed as "empty"


def test_a_folder_given_as_the_config_or_a_detector_is_named_as_one(tmp_path, capsys):
    from detection._common import ModelFileError, check_local_weights

    assert t2i.main(["--config", str(tmp_path), "--device", "cpu", "--quiet"]) == 2
    assert capsys.readouterr().err == (f"error: config file {tmp_path} is a folder; give a YAML file "
                                       "(e.g. generation/configs/tiny.yaml)\n")  # was "does not exist"
    (tmp_path / "best.pt").mkdir()
    with pytest.raises(ModelFileError, match=f"{tmp_path / 'best.pt'}: a folder, not a .pt weights file"):
        check_local_weights(tmp_path / "best.pt")  # was "no such file"


def test_the_token_cache_is_keyed_by_the_images_bytes_too(scenes, vqvae_dir, tmp_path):
    """Images replaced under the same names (same captions.jsonl) used to reuse stale tokens."""
    import shutil

    from generation.diffusers_vq import load_image_tokenizer

    data = tmp_path / "data"
    shutil.copytree(scenes, data)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config(data, vqvae_dir, tmp_path / "run", 1)))
    cfg = t2i.load_config(tmp_path / "c.yaml")
    vq = load_image_tokenizer(vqvae_dir, device="cpu")
    (tmp_path / "run").mkdir()
    first = t2i.tokenize_dataset(cfg, vq, tmp_path / "run", "cpu", False)
    key = json.loads((tmp_path / "run" / "tokens.json").read_text())["key"]
    row = json.loads((data / "captions.jsonl").read_text().splitlines()[0])
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(data / row["image"])  # same name, other pixels
    again = t2i.tokenize_dataset(cfg, vq, tmp_path / "run", "cpu", False)
    assert json.loads((tmp_path / "run" / "tokens.json").read_text())["key"] != key
    assert not torch.equal(first["train"][0], again["train"][0]) or not torch.equal(first["val"][0], again["val"][0])
    (data / row["image"]).unlink()
    with pytest.raises(ValueError, match=rf"{re.escape(row['image'])}: cannot read it .*listed in .*captions\.jsonl"):
        t2i.tokenize_dataset(cfg, vq, tmp_path / "run", "cpu", False)


def test_a_vqvae_used_at_another_size_than_it_was_trained_at_is_said(scenes, vqvae_dir, tmp_path, capsys):
    assert json.loads((vqvae_dir / "metrics.json").read_text())["size"] == 32
    cfg = config(scenes, vqvae_dir, tmp_path / "run", 1)
    cfg["image_size"] = 48
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert t2i.main(["--config", str(tmp_path / "c.yaml"), "--device", "cpu", "--quiet", "--no-samples"]) == 0
    assert (f"warning: the VQ-VAE {vqvae_dir} was trained on 32 px images and is used at 48 px (image_size)"
            in capsys.readouterr().err)
