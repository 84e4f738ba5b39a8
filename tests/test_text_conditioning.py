"""benchmarks.text_conditioning: the x0 cross-entropy with the own, another's and the null text."""

import json

import pytest
import torch

from benchmarks.text_conditioning import main, object_tokens, other_captions, swapped_relation, text_worth
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


def test_object_and_background_means_make_up_the_whole():
    pipe = tiny_pipeline()
    tokens = torch.randint(0, 16, (6, 16), generator=torch.Generator().manual_seed(2))
    on = torch.rand(6, 16, generator=torch.Generator().manual_seed(3)) < 0.3
    prompts = ["a cat", "two dogs", "a face", "a dog", "a cat", "a face"]
    for r in text_worth(pipe, tokens, prompts, [2, 6, 9], on_object=on):
        masked_share = r["masked"] * on.numel()
        xt = pipe.diffusion.q_sample(tokens, torch.full((6,), r["t"]), generator=torch.Generator().manual_seed(r["t"]))
        n_obj = int(((xt == pipe.diffusion.mask_id) & on).sum())
        for k in ("true", "wrong", "null"):
            whole = (r["object"][k] * n_obj + r["background"][k] * (masked_share - n_obj)) / masked_share
            assert r[k] == pytest.approx(whole, rel=1e-6)


def test_object_tokens_marks_the_cells_whose_centre_is_in_a_box():
    # 32 px image, boxes scaled to 16 px and a 4x4 grid (4 px cells, centres 2, 6, 10, 14)
    rows = [{"image": "a.png", "width": 32, "height": 32, "objects": [{"box": [0, 0, 8, 8]}, {"box": [24, 16, 32, 32]}]},
            {"image": "b.png", "width": 32, "height": 32, "objects": []}]
    got = object_tokens(rows, 16, (4, 4)).view(2, 4, 4)
    want = torch.zeros(4, 4, dtype=torch.bool)
    want[0, 0] = True          # [0, 8) px at 32 -> [0, 4) at 16: the centre 2
    want[2:, 3] = True         # x [12, 16), y [8, 16): centre x 14, centres y 10 and 14
    assert torch.equal(got[0], want) and not got[1].any()
    with pytest.raises(ValueError, match="c.png: 32x16 is not square"):
        object_tokens([{"image": "c.png", "width": 32, "height": 16, "objects": []}], 16, (4, 4))


def test_cli_reads_the_val_split_and_writes_rows(tmp_path, capsys):
    scenes = generate(tmp_path / "s", n=8, size=32, seed=3, val_fraction=0.5, progress=False)
    tiny_pipeline().save_pretrained(tmp_path / "gen")
    out = tmp_path / "rows.json"
    assert main(["--model", str(tmp_path / "gen"), "--data", str(scenes), "--images", "3", "--t", "5", "9",
                 "--json-out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["images"] == 3 and [r["t"] for r in report["rows"]] == [5, 9]
    assert 0 < report["object_token_share"] < 1 and {"object", "background"} <= set(report["rows"][0])
    assert "| t | masked | all | object | background |\n|---|---|---|---|---|\n| 5 |" in capsys.readouterr().out
    assert main(["--model", str(tmp_path / "gen"), "--data", str(scenes), "--t", "12"]) == 2
    assert "t must be in 0..9" in capsys.readouterr().err
    assert main(["--model", str(tmp_path / "nope"), "--data", str(scenes)]) == 2
    with pytest.raises(SystemExit):
        main(["--model", str(tmp_path / "gen"), "--data", str(scenes), "--images", "0"])
    assert "--images must be >= 2 (the wrong caption is another image's), got 0" in capsys.readouterr().err
    objects = scenes / "objects.jsonl"
    objects.write_text("\n".join(x for x in objects.read_text().splitlines() if '"val"' not in x) + "\n\n")
    assert main(["--model", str(tmp_path / "gen"), "--data", str(scenes), "--t", "9"]) == 2
    assert "objects.jsonl has no row for images/val/" in capsys.readouterr().err


def test_swapped_relation_swaps_the_two_objects_and_keeps_the_words():
    assert swapped_relation("a black cat to the left of a dog") == "a dog to the left of a black cat"
    assert swapped_relation("a face above an orange cat") == "an orange cat above a face"
    assert swapped_relation("a cat below a dog") == "a dog below a cat"
    assert swapped_relation("two cats and a dog") is None


def test_a_given_wrong_text_is_used_and_must_match_the_images():
    pipe = tiny_pipeline()
    tokens = torch.randint(0, 16, (4, 16), generator=torch.Generator().manual_seed(4))
    prompts = ["a cat to the left of a dog", "a dog above a face", "a cat below a face", "a face to the right of a dog"]
    same = text_worth(pipe, tokens, prompts, [5, 9], wrong=prompts)
    assert all(r["true"] == r["wrong"] for r in same)
    swapped = text_worth(pipe, tokens, prompts, [5, 9], wrong=[swapped_relation(p) for p in prompts])
    assert [r["true"] for r in swapped] == [r["true"] for r in same]
    assert all(r["wrong"] != r["true"] for r in swapped)
    with pytest.raises(ValueError, match="3 wrong prompts for 4 images"):
        text_worth(pipe, tokens, prompts, [5], wrong=prompts[:3])


def test_cli_relations_uses_only_images_with_a_relation_caption(tmp_path, capsys):
    pairs = generate(tmp_path / "pairs", n=16, size=64, seed=5, val_fraction=0.5, progress=False,
                     count_probs=(0, 0, 1, 0, 0))
    singles = generate(tmp_path / "singles", n=8, size=32, seed=5, val_fraction=0.5, progress=False,
                       count_probs=(0, 1, 0, 0, 0))
    tiny_pipeline().save_pretrained(tmp_path / "gen")
    val = [json.loads(x) for x in (pairs / "captions.jsonl").read_text().splitlines()]
    with_relation = [r for r in val if r["split"] == "val" and any(swapped_relation(c) for c in r["captions"])]
    assert with_relation  # a two-object world has some
    out = tmp_path / "rows.json"
    assert main(["--model", str(tmp_path / "gen"), "--data", str(pairs), "--relations", "--t", "9",
                 "--json-out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["images"] == len(with_relation) and report["wrong"] == "swapped relation"
    assert "objects swapped" in capsys.readouterr().out
    assert main(["--model", str(tmp_path / "gen"), "--data", str(singles), "--relations"]) == 2
    assert "no val caption" in capsys.readouterr().err


def test_the_wrong_caption_is_the_next_one_that_differs():
    """The plain next image's caption was the image's own for --images 1 and for neighbours with the
    same caption: own = wrong, read as a model that ignores the prompt."""
    assert other_captions(["a cat", "a cat", "a dog", "a face"]) == ["a dog", "a dog", "a face", "a cat"]
    assert other_captions(["a cat", "a dog", "a dog"]) == ["a dog", "a cat", "a cat"]
    for same in (["a cat"], ["a cat", "a cat"]):
        with pytest.raises(ValueError, match="no other caption to compare with"):
            other_captions(same)
    pipe = tiny_pipeline()
    tokens = torch.randint(0, 16, (3, 16), generator=torch.Generator().manual_seed(5))
    prompts = ["a cat", "a cat", "a dog"]
    assert text_worth(pipe, tokens, prompts, [9]) == text_worth(pipe, tokens, prompts, [9],
                                                                 wrong=["a dog", "a dog", "a cat"])


def test_cli_refuses_one_image_a_folder_json_out_and_one_caption(tmp_path, capsys):
    scenes = generate(tmp_path / "s", n=8, size=32, seed=3, val_fraction=0.5, progress=False)
    tiny_pipeline().save_pretrained(tmp_path / "gen")
    base = ["--model", str(tmp_path / "gen"), "--data", str(scenes), "--t", "9"]
    for argv, message in ((["--images", "1"], "--images must be >= 2"),
                          (["--json-out", str(tmp_path)], f"--json-out {tmp_path}: a folder; name a file in it")):
        with pytest.raises(SystemExit) as e:
            main(base + argv)
        assert e.value.code == 2 and message in capsys.readouterr().err
    captions = scenes / "captions.jsonl"
    rows = [json.loads(x) for x in captions.read_text().splitlines()]
    captions.write_text("".join(json.dumps(r | {"captions": ["a cat"]}) + "\n" for r in rows))
    assert main(base) == 2
    assert "has the caption 'a cat': no other caption" in capsys.readouterr().err


def test_cli_records_the_default_model_as_the_repositorys_path(tmp_path):
    scenes = generate(tmp_path / "s", n=6, size=32, seed=3, val_fraction=0.5, progress=False)
    out = tmp_path / "new" / "rows.json"
    assert main(["--data", str(scenes), "--images", "2", "--t", "99", "--json-out", str(out)]) == 0
    assert json.loads(out.read_text())["model"] == "models/demo/generator"
