"""benchmarks.text_conditioning: the x0 cross-entropy with the own, another's and the null text."""

import json

import pytest
import torch

from benchmarks.text_conditioning import main, text_worth
from datasets.scenes import generate
from test_pipeline import tiny_pipeline


def test_a_model_blind_to_the_text_scores_the_same_for_every_text():
    pipe = tiny_pipeline()
    tokens = torch.randint(0, 16, (6, 16), generator=torch.Generator().manual_seed(1))
    prompts = ["a cat", "two dogs", "a face", "a black cat to the left of a dog", "a cat", "a face"]
    rows = text_worth(pipe, tokens, prompts, [3, 9], batch=4)
    assert [r["t"] for r in rows] == [3, 9] and all(0 < r["masked"] <= 1 for r in rows)
    assert all(r["true"] != r["wrong"] for r in rows)  # random cross-attention reads the text
    for block in pipe.transformer.blocks:  # cut the text out: its cross-attention adds nothing
        torch.nn.init.zeros_(block.attn2.proj.weight)
        torch.nn.init.zeros_(block.attn2.proj.bias)
    blind = text_worth(pipe, tokens, prompts, [3, 9], batch=4)
    assert all(r["true"] == r["wrong"] == r["null"] for r in blind)
    # the same noise for the same seed: the masked share does not depend on the model
    assert [r["masked"] for r in blind] == [r["masked"] for r in rows]
    # known answer at t = 9 (every token masked, x_t the same for all): the mean cross-entropy of
    # the model's x0 distribution at the codes of the images
    D = pipe.diffusion
    xt = torch.full_like(tokens, D.mask_id)
    with torch.no_grad():
        emb, mask = pipe.encode_text(prompts)
        log_x0 = D.predict_start(pipe.transformer.denoiser(pipe.transformer.prepare_text(emb, mask)), xt,
                                 torch.full((6,), 9))
    ce = -log_x0[:, :-1].gather(1, tokens.unsqueeze(1)).mean()
    assert blind[1]["masked"] == 1.0  # gamma_bar 0.99999 at the last step
    assert blind[1]["true"] == pytest.approx(float(ce), rel=1e-5)
    with pytest.raises(ValueError, match="t must be in 0..9"):
        text_worth(pipe, tokens, prompts, [10])


def test_cli_reads_the_val_split_and_writes_rows(tmp_path, capsys):
    scenes = generate(tmp_path / "s", n=8, size=32, seed=3, val_fraction=0.5, progress=False)
    tiny_pipeline().save_pretrained(tmp_path / "gen")
    out = tmp_path / "rows.json"
    assert main(["--model", str(tmp_path / "gen"), "--data", str(scenes), "--images", "3", "--t", "5", "9",
                 "--json-out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["images"] == 3 and [r["t"] for r in report["rows"]] == [5, 9]
    assert "| 9 |" in capsys.readouterr().out
    assert main(["--model", str(tmp_path / "gen"), "--data", str(scenes), "--t", "12"]) == 2
    assert "t must be in 0..9" in capsys.readouterr().err
    assert main(["--model", str(tmp_path / "nope"), "--data", str(scenes)]) == 2
