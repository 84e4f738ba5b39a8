"""benchmarks.token_stability: how many token ids change under faint noise and on re-encoding."""

import json

import torch

from benchmarks.token_stability import main, token_stability
from datasets.scenes import generate
from generation.vqvae import VQVAE, VQVAEConfig


class CellCodes:
    """A known VQ: 4x4-pixel cells; code = brightness level (round(3 * cell mean), 0..3), plus 4
    when `detail` is on and the cell's top-left pixel is brighter than its mean: a second code
    for the same decoded cell (a duplicate), as a real codebook may hold."""

    def __init__(self, detail: bool):
        self.detail = detail

    def encode(self, x):
        cells = x.mean(1).unfold(1, 4, 4).unfold(2, 4, 4)  # [B, h, w, 4, 4]
        mean = cells.mean((-1, -2))
        code = (3 * mean).round().long()
        if self.detail:
            code = code + 4 * (cells[..., 0, 0] > mean + 1e-6).long()
        return code.flatten(1)

    def decode(self, ids):
        side = round(ids.shape[1] ** 0.5)
        level = (ids % 4).float().view(-1, 1, side, side) / 3
        return level.repeat_interleave(4, 2).repeat_interleave(4, 3).expand(-1, 3, -1, -1)


def test_known_answers_for_a_codebook_with_and_without_duplicates():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(5, 3, 16, 16, generator=g)
    on_object = torch.rand(5, 16, generator=g) < 0.4
    clean = token_stability(CellCodes(detail=False), images, on_object, noise=0.0, batch=2)
    assert clean == {m: {"object": 0.0, "background": 0.0, "all": 0.0} for m in ("noise", "re-encode")}
    dup = CellCodes(detail=True)
    got = token_stability(dup, images, on_object, noise=0.0, batch=2)
    has_detail = dup.encode(images) >= 4  # decoded flat, so these come back without their detail
    assert got["noise"]["all"] == 0.0
    assert got["re-encode"] == {"object": float(has_detail[on_object].float().mean()),
                                "background": float(has_detail[~on_object].float().mean()),
                                "all": float(has_detail.float().mean())}
    assert 0.2 < got["re-encode"]["all"] < 0.8
    # faint noise moves the top-left pixels around the cell means: some details flip, no level does
    noisy = token_stability(dup, images, on_object, noise=0.01, batch=2)
    flips = noisy["noise"]["all"]
    assert 0 < flips < 0.3
    assert token_stability(CellCodes(detail=False), images, on_object, noise=0.01)["noise"]["all"] < flips


def test_cli_measures_a_saved_vqvae_on_scenes(tmp_path, capsys):
    scenes = generate(tmp_path / "s", n=8, size=32, seed=3, val_fraction=0.5, progress=False)
    torch.manual_seed(0)
    vq = VQVAE(VQVAEConfig(channels=8, channel_mult=(1, 2, 2), codebook_size=16, embed_dim=8))
    vq.codebook.embed.normal_()
    vq.save_pretrained(tmp_path / "vq")
    out = tmp_path / "stability.json"
    assert main(["--vqvae", str(tmp_path / "vq"), "--data", str(scenes), "--size", "32", "--images", "3",
                 "--json-out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["images"] == 3 and set(report) >= {"noise", "re-encode"}
    # the noise measure did overwrite the std it was measured with; size and seed were not recorded
    assert (report["noise_std"], report["size"], report["seed"]) == (2 / 255, 32, 0)
    assert all(0 <= report[m][k] <= 1 for m in ("noise", "re-encode") for k in ("object", "background", "all"))
    assert "| measure | object | background | all |" in capsys.readouterr().out
    # without --size: the data's image side (32), so the same figures
    again = tmp_path / "again.json"
    assert main(["--vqvae", str(tmp_path / "vq"), "--data", str(scenes), "--images", "3",
                 "--json-out", str(again)]) == 0
    assert "at 32 px" in capsys.readouterr().out and json.loads(again.read_text()) == report
    (scenes / "objects.jsonl").unlink()
    assert main(["--vqvae", str(tmp_path / "vq"), "--data", str(scenes), "--size", "32"]) == 2
    assert "objects.jsonl is missing" in capsys.readouterr().err
    assert main(["--vqvae", str(tmp_path / "nope"), "--data", str(scenes), "--size", "32"]) == 2


def test_cli_refuses_bad_values_in_one_line(tmp_path, capsys):
    import pytest

    scenes = generate(tmp_path / "s", n=6, size=32, seed=3, val_fraction=0.5, progress=False)
    torch.manual_seed(0)
    VQVAE(VQVAEConfig(channels=8, channel_mult=(1, 2, 2), codebook_size=16, embed_dim=8)).save_pretrained(tmp_path / "vq")
    base = ["--vqvae", str(tmp_path / "vq"), "--data", str(scenes)]
    for argv, message in ((["--images", "0"], "argument --images: must be >= 1, got 0"),
                          (["--size", "0"], "argument --size: must be >= 1, got 0"),
                          (["--noise", "-1"], "argument --noise: must be a finite number >= 0, got -1"),
                          (["--noise", "nan"], "argument --noise: must be a finite number >= 0, got nan"),
                          (["--json-out", str(tmp_path)], f"--json-out {tmp_path}: a folder; name a file in it")):
        with pytest.raises(SystemExit) as e:
            main(base + argv)
        assert e.value.code == 2 and message in capsys.readouterr().err, argv
    # objects.jsonl: a blank line is skipped, a bad one named by file and line
    objects = scenes / "objects.jsonl"
    lines = objects.read_text().splitlines()
    objects.write_text("\n".join([lines[0], ""] + lines[1:]) + "\n\n")
    assert main(base + ["--size", "32", "--images", "2"]) == 0
    objects.write_text("\n".join([lines[0], "", "{not json"] + lines[1:]) + "\n")
    assert main(base + ["--size", "32", "--images", "2"]) == 2
    assert f"error: {objects}:3: not JSON" in capsys.readouterr().err
