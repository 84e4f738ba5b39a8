"""VQ-VAE: quantisation against brute force, the EMA update by hand, dead-code restarts,
exact save/load, and a tiny model that learns to reconstruct scenes."""

import json
import math
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from datasets.scenes import render_scene
from generation import train_vqvae
from generation import precision as precision_mod
from generation.precision import resolve_precision, training_autocast
from generation.schedule import cosine_lr
from generation.vqvae import VQVAE, EMACodebook, VQVAEConfig


TINY = VQVAEConfig(channels=16, channel_mult=(1, 2, 2), codebook_size=32, embed_dim=8, restart_after=0)


def test_encode_is_the_nearest_code_and_decode_uses_it():
    torch.manual_seed(0)
    vq = VQVAE(TINY).eval()
    vq.codebook.embed.normal_()
    x = torch.rand(2, 3, 16, 16)
    ids = vq.encode(x)
    assert ids.shape == (2, 16) and vq.token_grid(16) == (4, 4)
    z = vq.encoder(x * 2 - 1).permute(0, 2, 3, 1).reshape(-1, 8)
    brute = torch.stack([((z[i] - vq.codebook.embed) ** 2).sum(1).argmin() for i in range(len(z))])
    assert torch.equal(ids.flatten(), brute)
    zq = vq.codebook.embed[brute].view(2, 4, 4, 8).permute(0, 3, 1, 2)
    assert torch.allclose(vq.decode(ids), ((vq.decoder(zq) + 1) / 2).clamp(0, 1))
    with pytest.raises(ValueError, match="not divisible"):
        vq.encode(torch.rand(1, 3, 18, 18))
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 32\)"):
        vq.decode(torch.full((1, 16), 32))


def test_ema_update_matches_a_hand_computation():
    cb = EMACodebook(K=3, dim=2, decay=0.5, restart_after=0)
    cb.initialised.fill_(True)
    cb.embed.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]))
    cb.embed_sum.copy_(cb.embed)
    cb.cluster_size.fill_(1.0)
    flat = torch.tensor([[1.0, 1.0], [3.0, 1.0], [9.0, 1.0]])
    idx = cb.nearest(flat)
    assert idx.tolist() == [0, 0, 1]
    cb.update(flat, idx)
    size = torch.tensor([0.5 + 0.5 * 2, 0.5 + 0.5 * 1, 0.5 * 1])            # [1.5, 1.0, 0.5]
    sums = torch.tensor([[0.5 * 0 + 0.5 * 4, 0.5 * 0 + 0.5 * 2], [5 + 4.5, 0.5], [0.0, 5.0]])
    n = size.sum()
    smoothed = (size + 1e-5) / (n + 3e-5) * n
    assert torch.allclose(cb.cluster_size, size) and torch.allclose(cb.embed_sum, sums)
    assert torch.allclose(cb.embed, sums / smoothed[:, None])


def test_dead_codes_are_reseeded_from_encoder_outputs():
    cb = EMACodebook(K=4, dim=2, decay=0.9, restart_after=3)
    cb.initialised.fill_(True)
    cb.embed.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [50.0, 50.0], [60.0, 60.0]]))
    cb.embed_sum.copy_(cb.embed)
    flat = torch.tensor([[0.1, 0.0], [0.9, 0.0], [0.2, 0.1]])
    for step in range(3):
        cb.update(flat, cb.nearest(flat))
        if step < 2:
            assert cb.unused_steps[2:].tolist() == [step + 1, step + 1]
    # codes 2 and 3 were unused for 3 steps: they now sit on batch vectors
    for k in (2, 3):
        assert any(torch.equal(cb.embed[k], v) for v in flat)
    assert cb.unused_steps.tolist() == [0, 0, 0, 0]


def test_commitment_loss_pulls_the_encoder_output_toward_its_code():
    """Training-mode EMA quantisation: loss = commitment * mse(z, code), with its gradient on z
    (the encoder) only, and the straight-through output passes d/dzq to z unchanged. A loss
    on the code side instead has the same value but never trains the encoder to commit."""
    torch.manual_seed(0)
    vq = VQVAE(TINY).train()
    vq.codebook.initialised.fill_(True)
    vq.codebook.embed.normal_()
    vq.codebook.embed_sum.copy_(vq.codebook.embed)
    vq.codebook.cluster_size.fill_(1.0)
    z = torch.randn(2, 8, 3, 3, requires_grad=True)
    zq, ids, loss = vq.quantize(z)
    code = vq.codebook.embed[ids.flatten()].view(2, 3, 3, 8).permute(0, 3, 1, 2)  # the codes after the update
    c = vq.config.commitment
    assert math.isclose(float(loss.detach()), c * float(((z.detach() - code) ** 2).mean()), rel_tol=1e-5)
    (loss + (3.0 * zq).sum()).backward()
    want = 3.0 + c * 2 * (z.detach() - code) / z.numel()
    assert torch.allclose(z.grad, want, atol=1e-6, rtol=1e-5)


def test_save_load_round_trip_is_exact(tmp_path):
    torch.manual_seed(1)
    vq = VQVAE(TINY)
    vq.train()
    vq(torch.rand(2, 3, 16, 16))  # initialise the codebook
    vq.save_pretrained(tmp_path / "vq")
    back = VQVAE.from_pretrained(tmp_path / "vq")
    x = torch.rand(3, 3, 16, 16)
    vq.eval()
    assert torch.equal(vq.encode(x), back.encode(x))
    assert torch.equal(vq.decode(vq.encode(x)), back.decode(back.encode(x)))
    (tmp_path / "vq" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="model.safetensors: cannot read weights"):
        VQVAE.from_pretrained(tmp_path / "vq")
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        VQVAE.from_pretrained(tmp_path)
    vq.save_pretrained(tmp_path / "vq")
    cfg = json.loads((tmp_path / "vq" / "config.json").read_text())
    (tmp_path / "vq" / "config.json").write_text(json.dumps(cfg | {"codebook_size": 33}))
    with pytest.raises(ValueError, match="weights do not match config.json"):
        VQVAE.from_pretrained(tmp_path / "vq")
    assert not list((tmp_path / "vq").glob("*.tmp"))  # atomic writes leave no temporaries


def test_gumbel_quantiser_is_argmax_in_eval_and_differentiable_in_training():
    torch.manual_seed(0)
    vq = VQVAE(VQVAEConfig(channels=16, channel_mult=(1, 2, 2), codebook_size=32, embed_dim=8, quantizer="gumbel"))
    x = torch.rand(2, 3, 16, 16)
    ids = vq.encode(x)
    logits = vq.to_logits(vq.encoder(x * 2 - 1))
    assert torch.equal(ids, logits.argmax(1).flatten(1))
    zq = vq.code_embed.weight[ids].view(2, 4, 4, 8).permute(0, 3, 1, 2)
    assert torch.allclose(vq.decode(ids), ((vq.decoder(zq) + 1) / 2).clamp(0, 1))
    vq.train()
    rec, _, qloss = vq(x)
    ((rec - x).abs().mean() + qloss).backward()
    assert vq.code_embed.weight.grad.abs().sum() > 0 and vq.to_logits.weight.grad.abs().sum() > 0
    assert vq.last_stats["codes_used"] >= 1


def test_gumbel_kl_term_is_zero_at_uniform_and_pushes_peaked_logits_back():
    """The Gumbel quantiser's prior term is 5e-4 * KL(softmax(logits) || uniform): 0 for flat
    logits, positive for a peaked code, and its gradient lowers the peak and raises the rest.
    With the sign flipped, training would collapse every position onto one code."""
    K = 32
    vq = VQVAE(VQVAEConfig(channels=16, channel_mult=(1, 2, 2), codebook_size=K, embed_dim=8, quantizer="gumbel")).train()
    z = torch.randn(2, 8, 3, 3)
    with torch.no_grad():
        vq.to_logits.weight.zero_()
        vq.to_logits.bias.zero_()
    assert abs(float(vq.quantize(z)[2].detach())) < 1e-9
    with torch.no_grad():
        vq.to_logits.bias[0] = 5.0
    loss = vq.quantize(z)[2]
    p = torch.softmax(torch.tensor([5.0] + [0.0] * (K - 1), dtype=torch.float64), 0)
    kl = float((p * (p * K).log()).sum())
    assert kl > 1 and math.isclose(float(loss.detach()), 5e-4 * kl, rel_tol=1e-5)
    loss.backward()
    want = 5e-4 * p * ((p * K).log() - kl)  # d KL / d logit_j, the same at every position
    assert torch.allclose(vq.to_logits.bias.grad.double(), want, atol=1e-9, rtol=1e-4)
    assert vq.to_logits.bias.grad[0] > 0 and (vq.to_logits.bias.grad[1:] < 0).all()


def psnr(a, b):
    return float(10 * torch.log10(1 / ((a.detach() - b) ** 2).mean()))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_tiny_vqvae_learns_to_reconstruct_scenes(precision):
    torch.manual_seed(0)
    images = torch.stack([torch.from_numpy(np.array(render_scene(i, 32, 4)[0])).permute(2, 0, 1).float() / 255
                          for i in range(8)])
    vq = VQVAE(VQVAEConfig(channels=16, channel_mult=(1, 2, 2), codebook_size=64, embed_dim=16, restart_after=20))
    vq.train()
    opt = torch.optim.Adam(vq.parameters(), lr=2e-3)
    vq(images)  # the first training batch seeds the codebook
    vq.eval()
    before = psnr(vq.decode(vq.encode(images)), images)
    vq.train()
    for step in range(120):
        with training_autocast("cpu", precision):
            rec, ids, qloss = vq(images)
            loss = (rec - images).abs().mean() + qloss
        opt.zero_grad()
        loss.backward()
        opt.step()
    vq.eval()
    after = psnr(vq.decode(vq.encode(images)), images)
    print(f"PSNR through the tokens: {before:.2f} dB at init -> {after:.2f} dB after 120 steps")
    assert after > before + 5, (before, after)
    usage = vq.code_usage(vq.encode(images))
    assert usage["codes_used"] > 8 and usage["perplexity"] > 4


def write_scenes_root(root, n_train=6, n_val=2, size=32):
    """A scenes-style root with images only (images/{train,val}/*.png), no captions.jsonl."""
    for split, (lo, hi) in {"train": (0, n_train), "val": (n_train, n_train + n_val)}.items():
        (root / "images" / split).mkdir(parents=True)
        for i in range(lo, hi):
            render_scene(i, size, 7)[0].save(root / "images" / split / f"{i:06d}.png")
    return root


ARGS = ["--size", "32", "--batch", "4", "--codebook-size", "16", "--embed-dim", "8", "--channels", "8",
        "--downsample", "4", "--val-every", "3", "--ckpt-every", "3", "--restart-after", "2", "--quiet"]


@pytest.mark.parametrize("gan", [[], ["--gan-weight", "0.1", "--gan-start", "2"]], ids=["plain", "gan"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cli_resume_is_bit_identical_and_logs_metrics(tmp_path, gan, precision):
    data = write_scenes_root(tmp_path / "scenes")
    args = [*ARGS, *gan, "--precision", precision]
    full, half = tmp_path / "full", tmp_path / "half"
    assert train_vqvae.main(["--data", str(data), "--out", str(full), "--steps", "6", *args]) == 0
    # interrupted after its first step (the time limit), with the same --steps, so the same lr curve
    assert train_vqvae.main(["--data", str(data), "--out", str(half), "--steps", "6", "--time-limit", "1e-9",
                             *args]) == 0
    rows = [json.loads(x) for x in (half / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1] and "time limit" in rows[0]["stopped"]
    assert train_vqvae.main(["--data", str(data), "--out", str(half), "--steps", "6", "--resume", *args]) == 0
    a, b = load_file(str(full / "model.safetensors")), load_file(str(half / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads(x) for x in (half / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 3, 6]
    final = json.loads((full / "metrics.json").read_text())
    assert final["step"] == 6 and final["val_split"] == "val" and 1 <= final["codes_used"] <= 16
    assert final["precision"] == precision and final["val_psnr_per_image"] >= final["val_psnr"]
    # metrics.json's PSNR is the saved model's encode -> decode PSNR on the 2 val images, and says so
    assert final["val_images"] == 2
    vq = VQVAE.from_pretrained(full)
    val = train_vqvae.as_float(train_vqvae.load_images(train_vqvae.image_paths(data, "val"), 32, quiet=True), "cpu")
    assert final["val_psnr"] == pytest.approx(train_vqvae.psnr(vq.decode(vq.encode(val)), val), abs=1e-4)


def test_psnr_pooled_and_per_image_known_answers():
    b = torch.zeros(2, 3, 4, 4)
    a = b.clone()
    a[0] += 0.1        # MSE 0.01 -> 20 dB
    a[1] += 0.01       # MSE 0.0001 -> 40 dB
    assert train_vqvae.psnr_per_image(a, b) == pytest.approx(30.0, abs=1e-4)
    assert train_vqvae.psnr(a, b) == pytest.approx(10 * math.log10(1 / 0.00505), abs=1e-4)  # 22.97 dB pooled
    assert train_vqvae.psnr(b - 0.5, b) == float("inf")  # clamped to [0, 1] first: a perfect match


def test_cli_bad_data_is_a_clear_error(tmp_path, capsys):
    assert train_vqvae.main(["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), *ARGS]) == 2
    assert "nope does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert train_vqvae.main(["--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), *ARGS]) == 2
    assert "no captions.jsonl and no images/train/" in capsys.readouterr().err
    assert train_vqvae.main(["--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "--resume", *ARGS]) == 2


def test_precision_auto_follows_the_hardware_and_names_bad_values(monkeypatch):
    assert resolve_precision("fp32", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="'half'"):
        resolve_precision("half", "cpu")
    for native, expected in [(True, "bf16"), (False, "fp32")]:
        monkeypatch.setattr(precision_mod, "cpu_has_native_bf16", lambda native=native: native)
        assert resolve_precision("auto", "cpu") == expected


def test_bf16_autocast_keeps_the_codebook_float32_and_the_codes_nearest():
    torch.manual_seed(0)
    vq = VQVAE(TINY).train()
    x = torch.rand(4, 3, 16, 16)
    with training_autocast("cpu", "bf16"):
        z = vq.encoder(x * 2 - 1)
        rec, ids, qloss = vq(x)
    assert z.dtype == torch.bfloat16  # the convolutions did run in bf16
    assert rec.dtype == qloss.dtype == torch.float32
    assert all(b.dtype != torch.bfloat16 for b in vq.codebook.buffers())
    # the codes are the brute-force nearest (float32) of the same bf16 encoder output
    flat = z.float().permute(0, 2, 3, 1).reshape(-1, TINY.embed_dim)
    dist = torch.cdist(flat.double(), vq.codebook.embed.double())
    chosen = dist.gather(1, ids.flatten()[:, None]).squeeze(1)
    # ties up to float32 rounding of |a|^2 - 2ab + |b|^2 may pick either code; bf16 would be off by ~1e-2
    assert (chosen - dist.min(1).values).max() < 1e-5


def test_training_speed_benchmark_times_every_setting(capsys):
    from benchmarks import training_speed

    training_speed.main(["vqvae", "--size", "16", "--channels", "8", "--batch", "2", "--downsample", "4",
                         "--embed-dim", "8", "--warmup", "1", "--repeats", "1", "--device", "cpu"])
    training_speed.main(["transformer", "--width", "16", "--depth", "1", "--heads", "2", "--grid", "2",
                         "--codes", "8", "--text-dim", "16", "--batch", "2", "--precision", "bf16",
                         "--warmup", "0", "--repeats", "1", "--device", "cpu"])
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    settings = [(r["model"], r["precision"], r.get("layout")) for r in rows]
    assert settings == [("vqvae", p, lay) for p in ("fp32", "bf16") for lay in ("contiguous", "channels_last")] + [
        ("transformer", "bf16", None)]
    for r in rows[:4]:
        assert r["s_step"] > 0 and r["images_s"] == pytest.approx(2 / r["s_step"], rel=0.01)
    assert rows[4]["tokens"] == 4 and rows[4]["tokens_s"] == pytest.approx(8 / rows[4]["s_step"], rel=0.01)


def test_lr_schedule_known_values_and_the_cli_follows_it(tmp_path):
    from types import SimpleNamespace

    cos = SimpleNamespace(lr=1e-3, steps=100, lr_schedule="cosine")
    assert train_vqvae.lr_at(0, cos) == pytest.approx(1e-3)
    assert train_vqvae.lr_at(50, cos) == pytest.approx(0.55e-3)
    assert train_vqvae.lr_at(100, cos) == pytest.approx(1e-4) == train_vqvae.lr_at(500, cos)
    assert train_vqvae.lr_at(50, SimpleNamespace(lr=1e-3, steps=100, lr_schedule="constant")) == 1e-3
    # under a time limit the cosine follows whichever of steps and time is further along
    assert train_vqvae.lr_at(10, cos, elapsed=0.5) == pytest.approx(0.55e-3)
    assert train_vqvae.lr_at(60, cos, elapsed=0.5) == train_vqvae.lr_at(60, cos)
    assert train_vqvae.lr_at(10, cos, elapsed=1.0) == pytest.approx(1e-4)
    assert cosine_lr(4, 1e-3, 100, warmup=10, elapsed=0.9) == pytest.approx(0.5e-3)  # warm-up goes by steps
    assert cosine_lr(55, 1e-3, 100, warmup=10, elapsed=0.25) == pytest.approx(0.55e-3)  # (55-10)/90 = 0.5
    data = write_scenes_root(tmp_path / "scenes")
    out = tmp_path / "run"
    assert train_vqvae.main(["--data", str(data), "--out", str(out), "--steps", "6", "--lr", "1e-3", *ARGS]) == 0
    state = torch.load(out / "checkpoint" / "state.pt", weights_only=True)
    # the last step (index 5 of 6) ran at the cosine's value there
    assert state["opt"]["param_groups"][0]["lr"] == pytest.approx(1e-3 * (0.1 + 0.45 * (1 + np.cos(np.pi * 5 / 6))))
    # --schedule-by-time: a run whose clock is already out takes its one step at the cosine's end
    timed = tmp_path / "timed"
    assert train_vqvae.main(["--data", str(data), "--out", str(timed), "--steps", "6", "--lr", "1e-3", "--time-limit",
                             "1e-9", "--schedule-by-time", *ARGS]) == 0
    state = torch.load(timed / "checkpoint" / "state.pt", weights_only=True)
    assert state["step"] == 1 and state["opt"]["param_groups"][0]["lr"] == pytest.approx(1e-4)
    with pytest.raises(SystemExit):
        train_vqvae.main(["--data", str(data), "--out", str(timed), "--schedule-by-time", *ARGS])


def usage_error(argv, capsys) -> str:
    """The one-line argparse error that train_vqvae.main(argv) exits with (status 2)."""
    with pytest.raises(SystemExit) as exit_:
        train_vqvae.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_cli_numbers_and_out_are_checked_before_any_work(tmp_path, capsys):
    """Each numeric option out of range is one line naming it and its value (they were tracebacks
    from the first step, or for --steps -5 an untrained model saved); so is an --out that is a file."""
    base = ["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), *ARGS]
    for option, value, message in [("--batch", "0", "--batch must be at least 1, got 0"),
                                   ("--steps", "-5", "--steps must be at least 1, got -5"),
                                   ("--size", "0", "--size must be at least 1, got 0"),
                                   ("--val-every", "0", "--val-every must be at least 1, got 0"),
                                   ("--ckpt-every", "0", "--ckpt-every must be at least 1, got 0"),
                                   ("--codebook-size", "1", "--codebook-size must be at least 2, got 1"),
                                   ("--val-images", "-1", "--val-images must be at least 0, got -1"),
                                   ("--lr", "-1", "--lr must be a positive number, got -1"),
                                   ("--lr", "nan", "--lr must be a positive number, got nan"),
                                   ("--time-limit", "0", "--time-limit must be a positive number, got 0"),
                                   ("--gan-weight", "-0.5", "--gan-weight must be 0 (off) or more, got -0.5")]:
        assert usage_error([*base, option, value], capsys).endswith(f"error: {message}"), option
    taken = tmp_path / "README.md"
    taken.write_text("a file")
    out = ["--data", str(tmp_path / "nope"), *ARGS]
    assert usage_error([*out, "--out", str(taken)], capsys).endswith(f"error: {taken}: --out exists and is not a folder")
    assert usage_error([*out, "--out", str(taken / "x")], capsys).endswith(
        f"error: {taken / 'x'}: --out is inside {taken}, which is a file")
    assert "argument --device: 'gpu' is not a device" in usage_error([*base, "--device", "gpu"], capsys)
    # the image side must split into whole tokens: checked before any image is loaded
    assert train_vqvae.main([*base, "--size", "30"]) == 2  # ARGS: --downsample 4
    assert capsys.readouterr().err == "error: --size 30 must be a multiple of the downsampling factor 4\n"
    assert train_vqvae.main([*base, "--size", "36", "--downsample", "8"]) == 2
    assert "--size 36 must be a multiple of the downsampling factor 8" in capsys.readouterr().err
    assert train_vqvae.main([*base, "--channels", "9"]) == 2
    assert "--channels 9 does not make a model" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing was written


def test_an_out_folder_with_a_run_or_other_files_is_not_written_over(tmp_path, capsys):
    """As generation.train: without --resume a run (interrupted or finished) would be trained over
    from step 0, and a dataset's folder would get a model written into it. Both are refused and the
    files kept; --resume says where it starts."""
    data = write_scenes_root(tmp_path / "scenes")
    run = tmp_path / "run"
    argv = ["--data", str(data), "--out", str(run), "--steps", "2", *ARGS]
    assert train_vqvae.main([*argv, "--time-limit", "1e-9"]) == 0  # one step, then a checkpoint
    weights = (run / "model.safetensors").read_bytes()
    assert usage_error(argv, capsys).endswith(
        f"error: {run} holds a train_vqvae run (checkpoint); pass --resume to continue it, or choose a new out "
        "folder (or delete this one to start over)")
    assert (run / "model.safetensors").read_bytes() == weights
    shutil.rmtree(run / "checkpoint")  # a finished model without its checkpoint is a run too
    assert f"error: {run} holds a train_vqvae run (model.safetensors)" in usage_error(argv, capsys)
    assert usage_error([*argv[:3], str(data), *argv[4:]], capsys).endswith(
        f"error: {data} holds files that are not a train_vqvae run's (images); choose an empty or new out folder")
    assert sorted(p.name for p in data.iterdir()) == ["images"]
    again = tmp_path / "again"
    assert train_vqvae.main([*argv[:3], str(again), *argv[4:], "--time-limit", "1e-9"]) == 0
    capsys.readouterr()
    assert train_vqvae.main([*argv[:3], str(again), *argv[4:], "--resume"]) == 0
    assert f"resumed from step 1 of 2 ({again / 'checkpoint'})" in capsys.readouterr().err


def test_cli_architecture_options_must_agree_with_a_saved_model(tmp_path, capsys):
    """--resume and --init train the saved architecture: an option given that contradicts it is an
    error naming the option and both values (it was silently ignored); one that repeats it is fine."""
    data = write_scenes_root(tmp_path / "scenes")
    run = tmp_path / "run"
    assert train_vqvae.main(["--data", str(data), "--out", str(run), "--steps", "2", "--time-limit", "1e-9",
                             *ARGS]) == 0
    assert train_vqvae.main(["--data", str(data), "--out", str(run), "--steps", "2", "--resume", *ARGS,
                             "--channels", "16"]) == 2
    assert capsys.readouterr().err == (f"error: --channels 16 disagrees with the checkpoint in {run / 'checkpoint'} "
                                       "(channels 8): a saved model keeps its architecture; leave --channels out\n")
    ft = ["--data", str(data), "--out", str(tmp_path / "ft"), "--steps", "1", "--init", str(run), "--quiet"]
    assert train_vqvae.main([*ft, "--codebook-size", "64"]) == 2
    assert f"--codebook-size 64 disagrees with --init {run} (codebook-size 16)" in capsys.readouterr().err
    assert train_vqvae.main([*ft, "--downsample", "8"]) == 2
    assert "--downsample 8 disagrees" in capsys.readouterr().err
    assert train_vqvae.main([*ft, "--size", "32", "--channels", "8"]) == 0  # repeats the saved value: fine
    assert VQVAE.from_pretrained(tmp_path / "ft").config == VQVAE.from_pretrained(run).config
    # the options left out resume the saved model (the defaults, 64 channels, do not apply)
    assert train_vqvae.main(["--data", str(data), "--out", str(run), "--steps", "2", "--resume", "--size", "32",
                             "--batch", "4", "--quiet"]) == 0


def test_images_per_second_counts_the_steps_since_the_last_row(tmp_path, monkeypatch):
    """The last row of a run can come fewer than --val-every steps after the one before: its rate
    counted --val-every steps (15581 images/s logged for ~12)."""
    clock = iter([0.0, 10.0, 10.5, 11.0]).__next__
    rate = train_vqvae.Throughput(0, 8, clock)  # t = 0
    assert rate(5) == 8 * 5 / 10                 # 5 steps of 8 images in 10 s
    rate.restart()                               # validation ran until 10.5 s: not training time
    assert rate(6) == 8 * 1 / 0.5                # one step since the last row, not --val-every
    # the CLI: 4 steps, rows at 3 and 4; on a clock that ticks a second per reading, the last
    # row's 1 step of 4 images cannot read more than 4 images/s (the old formula gave 12)
    ticks = iter(range(10**6))
    monkeypatch.setattr(train_vqvae, "time", SimpleNamespace(time=lambda: float(next(ticks))))
    data = write_scenes_root(tmp_path / "scenes")
    assert train_vqvae.main(["--data", str(data), "--out", str(tmp_path / "o"), "--steps", "4", *ARGS]) == 0
    rows = [json.loads(x) for x in (tmp_path / "o" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 4]
    assert 0 < rows[1]["images_s"] <= 4 and 0 < rows[0]["images_s"] <= 12
