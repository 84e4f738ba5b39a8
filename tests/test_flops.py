"""benchmarks.flops: the analytic per-step count equals torch's own FLOP counter."""

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.flops import floor, matmul_rate, step_flops
from generation.transformer import DenoisingTransformer, TransformerConfig


def test_step_flops_equal_torchs_flop_counter():
    for cfg, rows, text_len in [
        (TransformerConfig.preset("tiny"), 3, 7),
        (TransformerConfig(num_classes=40, h=3, w=5, width=48, depth=3, heads=4, text_dim=24, mlp_ratio=4,
                           activation="gelu2"), 4, 11),
    ]:
        model = DenoisingTransformer(cfg).eval()
        with torch.no_grad():
            ctx = model.prepare_text(torch.randn(rows, text_len, cfg.text_dim))  # cached: not part of a step
            x = torch.randint(0, cfg.num_classes + 1, (rows, cfg.seq_len))
            t = torch.randint(0, cfg.diffusion_steps, (rows,))
            # the math kernel runs attention as counted matrix products (CPU flash attention is not counted)
            with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
                model(x, t, ctx)
        assert counter.get_total_flops() == step_flops(cfg, rows, text_len), cfg


def test_floor_is_flops_over_the_measured_rate():
    cfg = TransformerConfig.preset("ithq")
    f = floor(cfg, batch=8, guidance=True, text_len=77, rate=500e12)
    assert f["gflop_per_step"] == round(step_flops(cfg, 16, 77) / 1e9, 2)
    assert abs(f["floor_ms_per_step"] - 1e3 * step_flops(cfg, 16, 77) / 500e12) < 1e-3
    # ITHQ, one grid: 2 x 1024 tokens x ~1.0 G block parameters, plus attention and the logits head
    assert 2.0e12 < step_flops(cfg, 1, 77) < 2.5e12
    assert matmul_rate(torch.device("cpu"), torch.float32, size=256, repeats=2) > 1e8


def test_cli_refuses_counts_below_one(capsys):
    """--batch -3 printed a negative floor; --batch 0 and --text-len -5 were accepted."""
    import pytest

    from benchmarks.flops import main

    for argv, message in ((["--batch", "-3"], "argument --batch: must be >= 1, got -3"),
                          (["--batch", "8", "0"], "argument --batch: must be >= 1, got 0"),
                          (["--text-len", "-5"], "argument --text-len: must be >= 1, got -5")):
        with pytest.raises(SystemExit) as e:
            main(["--preset", "tiny", "--device", "cpu", *argv])
        assert e.value.code == 2 and message in capsys.readouterr().err, argv
