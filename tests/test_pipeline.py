"""TextToImage end to end with tiny random components: save/load, seeds, callbacks, errors."""

import json

import pytest
import torch

from generation.diffusion import MaskReplaceDiffusion
from generation.pipeline import TextToImage
from generation.text import ScratchTextEncoder
from generation.transformer import DenoisingTransformer, TransformerConfig
from generation.vqvae import VQVAE, VQVAEConfig


def tiny_pipeline(seed=0):
    torch.manual_seed(seed)
    text = ScratchTextEncoder.train_new(["a cat", "two dogs", "a face", "a black cat to the left of a dog"],
                                        vocab_size=120, dim=32, layers=1, heads=2, max_length=12)
    vq = VQVAE(VQVAEConfig(channels=8, channel_mult=(1, 2, 2), codebook_size=16, embed_dim=8))
    vq.codebook.embed.normal_()
    cfg = TransformerConfig(num_classes=16, h=4, w=4, width=32, depth=1, heads=2, text_dim=32, diffusion_steps=10)
    return TextToImage(vq, text, DenoisingTransformer(cfg), MaskReplaceDiffusion(16, 10), image_size=16).eval()


def test_save_load_gives_the_same_images(tmp_path):
    pipe = tiny_pipeline()
    out = pipe(["a cat", "two dogs"], num_images=2, steps=5, seed=3)
    assert out.images.shape == (4, 3, 16, 16) and out.seeds == [3, 4, 5, 6]
    assert out.prompts == ["a cat", "a cat", "two dogs", "two dogs"]
    assert 0 <= out.images.min() and out.images.max() <= 1
    pipe.save_pretrained(tmp_path / "gen")
    back = TextToImage.from_pretrained(tmp_path / "gen", device="cpu")
    again = back(["a cat", "two dogs"], num_images=2, steps=5, seed=3)
    assert torch.equal(out.tokens, again.tokens) and torch.equal(out.images, again.images)
    assert torch.equal(back.null_text, pipe.null_text)


def test_saved_files_get_a_plain_files_mode(tmp_path):
    """safetensors creates its files readable by the owner alone (0600): a model copied to a
    shared folder or served to others could not be read. Every saved file gets umask's mode."""
    import os

    old = os.umask(0o022)
    try:
        tiny_pipeline().save_pretrained(tmp_path / "gen")
    finally:
        os.umask(old)
    files = sorted(p for p in (tmp_path / "gen").rglob("*") if p.is_file())
    assert len([p for p in files if p.suffix == ".safetensors"]) == 3  # vqvae, text encoder, transformer
    assert {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777) for p in files} == \
        {p.relative_to(tmp_path).as_posix(): "0o644" for p in files}


def test_each_image_depends_only_on_its_seed():
    pipe = tiny_pipeline()
    batch = pipe("a face", seeds=[10, 11, 12], steps=4, guidance_scale=2.0)
    alone = pipe("a face", seeds=[11], steps=4, guidance_scale=2.0)
    assert torch.equal(batch.tokens[1:2], alone.tokens)
    assert torch.equal(batch.images[1:2], alone.images)  # to the bit: decoded one by one
    other = pipe("a face", seeds=[99], steps=4, guidance_scale=2.0)
    assert not torch.equal(other.tokens, alone.tokens)


def test_the_denoiser_gives_a_row_the_same_logits_in_any_batch():
    """Bit for bit, not within a tolerance: a [B, C] matmul takes another kernel at B = 1, and the
    purity sampler ranks positions by their logits, so 1e-7 there became another image (seen on the
    demo model: seed 5 alone and in a batch of 4 differed in 32 tokens with purity on)."""
    pipe = tiny_pipeline()
    tr, K = pipe.transformer, pipe.diffusion.num_classes
    rows = torch.randn(5 * tr.config.seq_len, 32, generator=torch.Generator().manual_seed(1))
    w = tr.blocks[0].mlp[0].weight
    if not torch.equal(torch.nn.functional.linear(rows, w)[: tr.config.seq_len],
                       torch.nn.functional.linear(rows[: tr.config.seq_len], w)):
        pytest.skip("this CPU's matrix product itself rounds a row differently in a bigger batch")
    x = torch.randint(0, K + 1, (5, tr.config.seq_len), generator=torch.Generator().manual_seed(0))
    t = torch.tensor([9, 3, 3, 0, 7])
    emb, mask = pipe.encode_text(["a black cat to the left of a dog"] * 5)
    with torch.no_grad():
        together = tr(x, t, tr.prepare_text(emb, mask))
        for i in range(5):
            assert torch.equal(tr(x[i:i + 1], t[i:i + 1], tr.prepare_text(emb[i:i + 1], mask[i:i + 1])), together[i:i + 1])
    batch = pipe("a face", seeds=[10, 11, 12], steps=6, guidance_scale=2.0, purity=True)
    alone = pipe("a face", seeds=[11], steps=6, guidance_scale=2.0, purity=True)
    assert torch.equal(batch.tokens[1:2], alone.tokens)


def test_callback_sees_every_step_and_guidance_doubles_the_batch():
    pipe = tiny_pipeline()
    steps, batches = [], []
    real = pipe.transformer.forward

    def spy(x_t, t, ctx):
        batches.append(x_t.shape[0])
        return real(x_t, t, ctx)

    pipe.transformer.forward = spy
    pipe("a cat", num_images=2, steps=6, guidance_scale=3.0, callback=lambda i, t, x0: steps.append((i, t, x0.shape)))
    assert [s[0] for s in steps] == list(range(6)) and steps[0][1] == 9 and steps[-1][1] == 0
    assert all(shape == (2, 16) for _, _, shape in steps)
    assert batches == [4] * 6  # one call per step on [cond; null]
    batches.clear()
    pipe("a cat", num_images=2, steps=3, guidance_scale=1.0)
    assert batches == [2] * 3
    pipe.transformer.forward = real


def test_bad_inputs_are_named(tmp_path):
    pipe = tiny_pipeline()
    with pytest.raises(ValueError, match="prompt 0 is empty"):
        pipe("  ")
    with pytest.raises(ValueError, match="truncation must be in"):
        pipe("a cat", truncation=0)
    T = pipe.diffusion.num_timesteps
    with pytest.raises(ValueError, match=f"steps must be at most this model's {T} diffusion steps, got {T + 1}"):
        pipe("a cat", steps=T + 1)
    with pytest.raises(FileNotFoundError, match="no pipeline.json"):
        TextToImage.from_pretrained(tmp_path)
    pipe.save_pretrained(tmp_path / "run" / "checkpoint" / "pipeline")  # where an unfinished run keeps its model
    with pytest.raises(FileNotFoundError, match=r"an unfinished training run: its last checkpoint's model is "
                                                r".*run/checkpoint/pipeline \(or finish the run with --resume\)"):
        TextToImage.from_pretrained(tmp_path / "run")


def test_a_default_above_T_is_capped_where_it_is_set(tmp_path):
    """DEFAULTS' 25 steps on the 10-step model, at construction or set later (as a fine-tune's
    config does), reads 10 everywhere; a typo in a default is named, with the folder it came from."""
    pipe = tiny_pipeline()
    assert pipe.defaults["steps"] == 10
    pipe.set_defaults({"steps": 40, "guidance_scale": 4.0})
    assert pipe.defaults == {"steps": 10, "guidance_scale": 4.0, "truncation": 0.86, "purity": False}
    assert pipe("a cat", seed=1).settings["steps"] == 10
    pipe.set_defaults({"steps": 6})
    assert pipe("a cat", seed=1).settings["steps"] == 6
    with pytest.raises(ValueError, match=r"unknown sampling defaults \['guidance'\]"):
        pipe.set_defaults({"guidance": 2})
    pipe.save_pretrained(tmp_path / "gen")
    meta = json.loads((tmp_path / "gen" / "pipeline.json").read_text())
    meta["defaults"]["stpes"] = 5
    (tmp_path / "gen" / "pipeline.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"gen: unknown sampling defaults \['stpes'\]"):
        TextToImage.from_pretrained(tmp_path / "gen", device="cpu")


def test_an_out_folder_that_cannot_be_written_is_said_before_any_drawing(tmp_path, capsys, monkeypatch):
    """generation.sample, evaluation.checked and validate_judge found an unwritable --out at their
    first file, after a minute of drawing, with a PermissionError's traceback. Now at once, in a line,
    and no model is loaded; the runs that hold their folder (trainers, evaluation, scenes) say it too."""
    from pathlib import Path

    import gendet_env
    from evaluation import checked, validate_judge
    from generation import sample

    def no_model(*args, **kwargs):
        raise AssertionError("loaded a model for a run that cannot write its output")

    monkeypatch.setattr(TextToImage, "from_pretrained", no_model)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = blocker / "sub"
    assert sample.main(["a cat", "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err == f"error: --out {out}: {blocker} is a file, not a folder\n"
    for main, argv in ((checked.main, ["a cat", "--out", str(out)]),
                       (validate_judge.main, ["--data", str(tmp_path), "--out", str(out)])):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and f"error: --out {out}: {blocker} is a file, not a folder" in capsys.readouterr().err
    with pytest.raises(gendet_env.RunFolderError, match=f"out folder {out}: {blocker} is a file"):
        with gendet_env.held(out, "test"):
            pass
    if Path("/proc").is_dir():  # a read-only file system, which root cannot write either
        assert gendet_env.unwritable("/proc/gendet/out").startswith("--out /proc/gendet/out: cannot write in /proc (")
    assert gendet_env.unwritable(tmp_path / "new" / "deeper") is None and not (tmp_path / "new").exists()
    real_exists = Path.exists

    def exists(path):  # as for a non-root user inside another user's 0700 home
        if path == tmp_path / "theirs" / "out":
            raise PermissionError(13, "Permission denied")
        return real_exists(path)

    monkeypatch.setattr(Path, "exists", exists)
    assert gendet_env.unwritable(tmp_path / "theirs" / "out") == (f"--out {tmp_path / 'theirs' / 'out'}: cannot reach "
                                                                f"{tmp_path / 'theirs' / 'out'} (Permission denied)")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # the probe left nothing
    # links that lead nowhere: mkdir said only "File exists"
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "dangling").symlink_to(tmp_path / "gone")
    (tmp_path / "links" / "loop_a").symlink_to(tmp_path / "links" / "loop_b")
    (tmp_path / "links" / "loop_b").symlink_to(tmp_path / "links" / "loop_a")
    assert gendet_env.unwritable(tmp_path / "links" / "dangling" / "out") == (
        f"--out {tmp_path / 'links' / 'dangling' / 'out'}: {tmp_path / 'links' / 'dangling'} is a link to "
        f"{tmp_path / 'gone'}, which does not exist")
    assert gendet_env.unwritable_reason(tmp_path / "links" / "loop_a") == (
        f"{tmp_path / 'links' / 'loop_a'} is a link in a loop of links ({tmp_path / 'links' / 'loop_b'})")


def test_sample_cli_writes_pngs_with_their_settings(tmp_path, capsys):
    from generation.png_info import read_settings
    from generation.sample import main, sample

    tiny_pipeline().save_pretrained(tmp_path / "gen")
    assert main(["two dogs", "--model", str(tmp_path / "gen"), "--n", "2", "--seed", "5", "--steps", "3",
                 "--guidance", "1.5", "--out", str(tmp_path / "out"), "--quiet"]) == 0
    files = sorted((tmp_path / "out").glob("*.png"))
    assert [f.name for f in files] == ["two_dogs_5.png", "two_dogs_6.png"]
    s = read_settings(files[1])
    assert s["prompt"] == "two dogs" and s["seed"] == 6 and s["steps"] == 3 and s["guidance_scale"] == 1.5
    # the settings reproduce the image
    pipe = TextToImage.from_pretrained(tmp_path / "gen", device="cpu")
    again = pipe(s["prompt"], seeds=[s["seed"]], steps=s["steps"], guidance_scale=s["guidance_scale"],
                 truncation=s["truncation"]).pil()[0]
    from PIL import Image
    import numpy as np
    assert np.array_equal(np.asarray(Image.open(files[1])), np.asarray(again))
    # in batches of one: the same files, to the byte (image k depends on its seed alone)
    assert main(["two dogs", "--model", str(tmp_path / "gen"), "--n", "2", "--seed", "5", "--steps", "3",
                 "--guidance", "1.5", "--out", str(tmp_path / "one_by_one"), "--batch", "1", "--quiet"]) == 0
    assert all((tmp_path / "one_by_one" / f.name).read_bytes() == f.read_bytes() for f in files)
    # the same command again writes the same files; other settings into the same folder never
    # replace an image (a second guidance overwrote the first); names keep any script's letters
    assert main(["two dogs", "--model", str(tmp_path / "gen"), "--n", "2", "--seed", "5", "--steps", "3",
                 "--guidance", "1.5", "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert sorted(f.name for f in (tmp_path / "out").glob("*.png")) == ["two_dogs_5.png", "two_dogs_6.png"]
    assert main(["two dogs", "--model", str(tmp_path / "gen"), "--n", "1", "--seed", "5", "--steps", "2",
                 "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert read_settings(tmp_path / "out" / "two_dogs_5.png")["steps"] == 3
    assert read_settings(tmp_path / "out" / "two_dogs_5-2.png")["steps"] == 2
    assert main(["un chien au café", "--model", str(tmp_path / "gen"), "--n", "1", "--steps", "2",
                 "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert (tmp_path / "out" / "un_chien_au_café_0.png").is_file()
    capsys.readouterr()
    for argv, message in ((["  "], "the prompt is empty"), (["a cat", "--steps", "0"], "--steps must be >= 1, got 0"),
                          (["a cat", "--batch", "0"], "--batch must be >= 1, got 0"),
                          (["a cat", "--truncation", "1.5"], "--truncation must be in (0, 1], got 1.5"),
                          (["a cat", "--guidance", "-2"], "--guidance must be >= 0 (1 = off), got -2.0"),
                          (["a cat", "--seed", "-1"], "--seed must be >= 0, got -1"),
                          (["a cat", "--init-image", str(tmp_path), "--mask", str(tmp_path)],
                           f"--init-image {tmp_path}: a folder, not an image file"),
                          (["a cat", "--device", "gpu"], "argument --device: 'gpu' is not a device")):
        with pytest.raises(SystemExit) as exit_:
            main(argv + ["--model", str(tmp_path / "gen"), "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and message in err and "sampling" not in err  # no bar before the error
    assert main(["a cat", "--steps", "500", "--model", str(tmp_path / "gen"), "--out", str(tmp_path / "o")]) == 2
    assert "error: steps must be at most this model's 10 diffusion steps, got 500" in capsys.readouterr().err
    (tmp_path / "run").mkdir()  # a training run's folder: the model is its pipeline/
    tiny_pipeline().save_pretrained(tmp_path / "run" / "pipeline")
    for model, message in ((tmp_path / "run", f"no pipeline.json); did you mean {tmp_path / 'run' / 'pipeline'}?"),
                           (tmp_path / "nowhere", f"{tmp_path / 'nowhere'}: no such folder")):
        assert main(["a cat", "--model", str(model), "--out", str(tmp_path / "o")]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(ValueError, match="prompt 0 is empty"):  # the Python API checks inside the pipeline
        sample("  ", tmp_path / "gen", tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()  # and a failed run leaves no empty output folder


def test_a_long_prompt_in_four_byte_letters_makes_a_file_name_under_255_bytes(tmp_path):
    """slug cut at 60 characters: 60 four-byte letters, _, a 19-digit seed and .png made 264 bytes
    (OSError: File name too long, after drawing). It is cut at 120 bytes, between characters."""
    from generation.sample import main, slug

    assert slug("a" + "\U00010428" * 70) == "a" + "\U00010428" * 29  # 117 bytes; a 30th letter makes 121
    assert slug("é" * 70) == "é" * 60 and slug("two dogs") == "two_dogs"
    tiny_pipeline().save_pretrained(tmp_path / "gen")
    assert main(["\U00010428" * 70, "--model", str(tmp_path / "gen"), "--n", "1", "--seed", str(10 ** 18),
                 "--steps", "2", "--out", str(tmp_path / "out"), "--quiet"]) == 0
    [png] = (tmp_path / "out").glob("*.png")
    assert png.name == "\U00010428" * 30 + f"_{10 ** 18}.png" and len(png.name.encode()) == 144


def test_sample_records_a_prompt_without_the_bom_and_cr_of_the_file_it_came_from(tmp_path):
    """`generation.sample "$(cat prompt.txt)"` on a Notepad file kept '\\ufeffa cat\\r' in the PNG (and
    the file name); evaluation.run strips them. Both record 'a cat' now."""
    from generation.png_info import read_settings
    from generation.sample import main, sample

    tiny_pipeline().save_pretrained(tmp_path / "gen")
    assert main(["\ufeffa cat\r", "--model", str(tmp_path / "gen"), "--n", "1", "--steps", "2",
                 "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    [png] = (tmp_path / "cli").glob("*.png")
    assert png.name == "a_cat_0.png" and read_settings(png)["prompt"] == "a cat"
    [png] = sample("a cat\r\n", tmp_path / "gen", tmp_path / "api", n=1, steps=2, progress=False)
    assert read_settings(png)["prompt"] == "a cat"


def test_sample_cli_edits_and_inpaints_a_given_image(tmp_path, capsys):
    """--init-image (cut to a centre square at the model's size), --filter-ratio and --mask (white =
    redraw) give what the pipeline gives on the same tensors; the PNGs record the edit."""
    import numpy as np
    from PIL import Image

    from generation.png_info import read_settings
    from generation.sample import main

    tiny_pipeline().save_pretrained(tmp_path / "gen")
    pipe = TextToImage.from_pretrained(tmp_path / "gen", device="cpu")
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)  # 2:1, twice the model's 16 px
    Image.fromarray(wide).save(tmp_path / "photo.png")
    mask = np.zeros((32, 64), np.uint8)
    mask[:, 40:] = 255  # columns 40-63: in the centre square (columns 16-47) its last quarter
    Image.fromarray(mask).save(tmp_path / "mask.png")
    # the centre square, halved: what the pipeline is given
    square = torch.from_numpy(wide[:, 16:48].reshape(16, 2, 16, 2, 3).mean((1, 3))).permute(2, 0, 1) / 255
    keep = torch.zeros(16, 16, dtype=torch.bool)
    keep[:, 12:] = True  # the last token column of 4 (squashed, not cut, it would be two)
    for k, (flags, extra) in enumerate(((["--filter-ratio", "0.6"], {"filter_ratio": 0.6}),
                                        (["--mask", str(tmp_path / "mask.png")], {"inpaint_mask": keep}),
                                        (["--filter-ratio", "0.6", "--mask", str(tmp_path / "mask.png")],
                                         {"filter_ratio": 0.6, "inpaint_mask": keep}))):
        out = tmp_path / f"out{k}"  # (two of them shared a folder, the second writing over the first)
        assert main(["a cat", "--model", str(tmp_path / "gen"), "--n", "2", "--steps", "3", "--out", str(out),
                     "--init-image", str(tmp_path / "photo.png"), *flags, "--quiet"]) == 0
        want = pipe("a cat", seeds=[0, 1], steps=3, init_image=square, **extra)
        if "inpaint_mask" in extra:  # the three token columns outside the mask are the image's own
            kept = want.tokens.view(2, 4, 4)[:, :, :3]
            assert torch.equal(kept, pipe.vqvae.encode(square[None]).view(1, 4, 4)[:, :, :3].expand(2, -1, -1))
        files = sorted(out.glob("*.png"))
        for f, image in zip(files, want.pil()):
            assert np.array_equal(np.asarray(Image.open(f)), np.asarray(image)), (flags, f.name)
        s = read_settings(files[0])
        assert s["init_image"] == str(tmp_path / "photo.png") and s.get("filter_ratio") == extra.get("filter_ratio")
        assert ("mask" in s) == ("inpaint_mask" in extra)
    capsys.readouterr()
    black = tmp_path / "black.png"
    Image.fromarray(np.zeros((32, 64), np.uint8)).save(black)  # the photo's size
    for argv, message in ((["--filter-ratio", "0.5"], "give it with --init-image"),
                          (["--init-image", str(tmp_path / "photo.png")], "needs --filter-ratio (edit), --mask"),
                          (["--init-image", str(tmp_path / "photo.png"), "--filter-ratio", "1.5"],
                           "--filter-ratio must be in (0, 1], got 1.5"),
                          (["--init-image", str(tmp_path / "nope.png"), "--filter-ratio", "0.5"],
                           "nope.png: no such file")):
        with pytest.raises(SystemExit) as exit_:
            main(["a cat", "--model", str(tmp_path / "gen"), "--out", str(tmp_path / "o"), *argv])
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert main(["a cat", "--model", str(tmp_path / "gen"), "--out", str(tmp_path / "o"), "--quiet",
                 "--init-image", str(tmp_path / "photo.png"), "--mask", str(black)]) == 2
    assert "black.png: no white pixel" in capsys.readouterr().err
    assert main(["a cat", "--model", str(tmp_path / "gen"), "--out", str(tmp_path / "o"), "--quiet",
                 "--init-image", str(tmp_path / "mask.png"),
                 "--filter-ratio", "0.001"]) == 2  # below 1/T: the pipeline's error, named
    assert "filter_ratio must be in [1/T, 1]" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_inpainting_keeps_the_image_outside_the_mask_and_editing_starts_midway():
    pipe = tiny_pipeline()
    image = torch.rand(3, 16, 16)
    tokens = pipe.vqvae.encode(image[None])
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[:8, :8] = True  # the top-left quarter: tokens (0,0), (0,1), (1,0), (1,1) of the 4x4 grid
    out = pipe("a cat", seeds=[0, 1], steps=4, init_image=image, inpaint_mask=mask)
    region = torch.zeros(4, 4, dtype=torch.bool)
    region[:2, :2] = True
    keep = ~region.flatten()
    assert torch.equal(out.tokens[:, keep], tokens.expand(2, -1)[:, keep])
    seen = []
    pipe("a cat", seeds=[0], steps=None, init_image=image, filter_ratio=0.5,
         callback=lambda i, t, x0: seen.append(t))
    assert seen == list(range(4, -1, -1))  # int(10 * 0.5) - 1 = 4, then the full chain below it
    with pytest.raises(ValueError, match="need init_image"):
        pipe("a cat", filter_ratio=0.5)
    with pytest.raises(ValueError, match="inpaint_mask must be"):
        pipe("a cat", init_image=image, inpaint_mask=torch.ones(8, 8, dtype=torch.bool))


def test_an_image_recorded_with_the_bundles_absolute_path_is_drawn_again_in_place(tmp_path):
    """PNGs made before b841453 name the repository's bundle by its absolute path; the same image
    drawn again (the model now recorded as models/demo/generator) replaces it, not a -2 copy.
    Another model is still another image."""
    import gendet_env
    from PIL import Image

    from generation.png_info import save_png
    from generation.sample import free_path

    old = {"prompt": "a cat", "seed": 0, "steps": 50, "model": str(gendet_env.ROOT / "models" / "demo" / "generator")}
    save_png(Image.new("RGB", (8, 8)), tmp_path / "a_cat_0.png", old)
    assert free_path(tmp_path, "a cat", 0, {**old, "model": "models/demo/generator"}) == tmp_path / "a_cat_0.png"
    assert free_path(tmp_path, "a cat", 0, {**old, "model": "/elsewhere/generator"}) == tmp_path / "a_cat_0-2.png"
