"""generation.convert against diffusers as the independent reference.

A tiny random diffusers VQ-Diffusion pipeline (VQModel, Transformer2DModel with
num_vector_embeds, CLIPTextModel with a tokenizer trained here, VQDiffusionScheduler,
LearnedClassifierFreeSamplingEmbeddings) is saved part by part, converted, loaded as a
TextToImage, and compared number by number: text embeddings, transformer log-probabilities,
one posterior step, decoded images, and a whole 100-step guided, truncated sampling run.
"""

import json
import pickle

import pytest
import torch

pytest.importorskip("diffusers")

from benchmarks import diffusers_reference  # noqa: E402
from generation.convert import ConversionError, convert_diffusers, main, read_weights  # noqa: E402
from generation.diffusion import log_onehot  # noqa: E402
from generation.pipeline import TextToImage  # noqa: E402
from generation.transformer import TextContext  # noqa: E402

K, T, SIDE = 24, 100, 4  # diffusers_reference.SHAPES['test']
PROMPTS = ["a black cat", "two white dogs to the left of a face"]


@pytest.fixture(scope="module", params=[True, False], ids=["learned-null", "empty-prompt-null"])
def converted(request, tmp_path_factory):
    ref = diffusers_reference.build("test", learnable_null=request.param)
    src = diffusers_reference.save(ref, tmp_path_factory.mktemp("diffusers_src"))
    out = tmp_path_factory.mktemp("converted") / "model"
    convert_diffusers(src, out)
    ours = TextToImage.from_pretrained(out, device="cpu")
    return ref, ours


def test_text_embeddings_and_null_condition_match(converted):
    ref, ours = converted
    want = ref._encode_prompt(PROMPTS, 1, do_classifier_free_guidance=True)  # [null; text]
    emb, mask = ours.encode_text(PROMPTS)
    assert mask.all()  # VQ-Diffusion attends to every position, padding included
    assert (emb - want[2:]).abs().max() < 1e-5
    assert (ours.null_text.unsqueeze(0).expand(2, -1, -1) - want[:2]).abs().max() < 1e-5
    assert torch.allclose(emb.norm(dim=-1), torch.ones(emb.shape[:2]), atol=1e-5)  # unit length


@pytest.mark.parametrize("null", [False, True], ids=["prompt", "null-text"])
def test_transformer_log_probs_match(converted, null):
    ref, ours = converted
    g = torch.Generator().manual_seed(3)
    want_text = ref._encode_prompt(PROMPTS, 1, do_classifier_free_guidance=True)
    text = want_text[:2] if null else want_text[2:]
    ctx = ours.null_context(2) if null else ours.transformer.prepare_text(*ours.encode_text(PROMPTS))
    for t in (0, 1, 37, 99):
        x_t = torch.randint(0, K + 1, (2, SIDE * SIDE), generator=g)  # includes [MASK] = K
        x_t[0, :5] = K
        with torch.no_grad():
            want = ref.transformer(x_t, encoder_hidden_states=text, timestep=torch.tensor(t)).sample
            got = torch.log_softmax(ours.transformer(x_t, torch.tensor([t, t]), ctx).double(), dim=1).float()
        assert got.shape == want.shape == (2, K, SIDE * SIDE)
        assert (got - want).abs().max() < 1e-4, t


def test_one_posterior_step_matches_the_scheduler(converted):
    ref, ours = converted
    sched = ref.scheduler
    g = torch.Generator().manual_seed(4)
    for t in (1, 2, 50, 98, 99):
        log_p_x0 = torch.log_softmax(torch.randn(3, K, SIDE * SIDE, generator=g) * 3, dim=1)
        x_t = torch.randint(0, K + 1, (3, SIDE * SIDE), generator=g)
        x_t[1] = K
        want = sched.q_posterior(log_p_x0, x_t, torch.tensor(t))
        want = want - torch.logsumexp(want, dim=1, keepdim=True)
        log_x0 = torch.cat([log_p_x0, torch.full_like(log_p_x0[:, :1], -70.0)], dim=1)
        got = ours.diffusion.q_posterior(log_x0, log_onehot(x_t, K + 1), torch.tensor(t))
        assert got.shape == want.shape
        assert (got.exp() - want.exp()).abs().max() < 1e-4, t
        sure = want > -20  # log-probabilities themselves, where the probability is not ~0
        assert (got[sure] - want[sure]).abs().max() < 1e-4, t


def test_decoded_images_match(converted):
    ref, ours = converted
    ids = torch.randint(0, K, (3, SIDE * SIDE), generator=torch.Generator().manual_seed(5))
    emb = ref.vqvae.quantize.get_codebook_entry(ids, shape=(3, SIDE, SIDE, 8))
    with torch.no_grad():
        want = (ref.vqvae.decode(emb, force_not_quantize=True).sample / 2 + 0.5).clamp(0, 1)
    got = ours.decode_tokens(ids)
    assert got.shape == (3, 3, 8, 8) and ours.image_size == 8
    assert (got - want).abs().max() < 1e-4
    # encoding agrees with diffusers' own quantiser
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        h = ref.vqvae.encode(x * 2 - 1).latents
        want_ids = ref.vqvae.quantize(h)[2][2].view(2, -1)
    assert torch.equal(ours.vqvae.encode(x), want_ids)


def test_whole_sampling_run_matches_diffusers(converted):
    """Same generator, 100 steps, guidance and truncation: the same tokens and images."""
    ref, ours = converted
    n = 2
    with torch.no_grad():
        want = ref(PROMPTS, num_inference_steps=T, guidance_scale=4.0, truncation_rate=0.9,
                   generator=torch.Generator().manual_seed(7), num_images_per_prompt=n, output_type="np").images
    emb, mask = ours.encode_text(PROMPTS)
    ctx = ours.transformer.prepare_text(emb, mask).repeat_interleave(n)
    denoise = ours.transformer.denoiser(TextContext.cat([ctx, ours.null_context(len(PROMPTS) * n)]))
    tokens = ours.diffusion.sample(denoise, len(PROMPTS) * n, SIDE * SIDE, steps=None, guidance_scale=4.0,
                                   truncation=0.9, generator=torch.Generator().manual_seed(7))
    got = ours.decode_tokens(tokens).permute(0, 2, 3, 1).numpy()
    assert got.shape == want.shape
    # a single flipped token would change its 2x2 pixel block by far more than this
    assert abs(got - want).max() < 1e-4


def test_cli_and_refusals(tmp_path, capsys):
    ref = diffusers_reference.build("test")
    src = diffusers_reference.save(ref, tmp_path / "src")
    assert main(["--from", "diffusers", str(src), "--out", str(tmp_path / "out"), "--steps", "50"]) == 0
    assert "wrote" in capsys.readouterr().out
    pipe = TextToImage.from_pretrained(tmp_path / "out", device="cpu")
    assert pipe.defaults["steps"] == 50 and pipe.defaults["guidance_scale"] == 5.0
    out = pipe("a black cat", num_images=1, steps=5, seed=0)
    assert out.images.shape == (1, 3, 8, 8)

    assert main(["--from", "diffusers", str(tmp_path / "nope"), "--out", str(tmp_path / "o2")]) == 2
    assert "does not exist" in capsys.readouterr().err
    # a .bin that needs arbitrary unpickling is refused, not executed
    bad = tmp_path / "bad"
    bad.mkdir()
    with open(bad / "diffusion_pytorch_model.bin", "wb") as fh:
        pickle.dump({"w": _Evil()}, fh)
    with pytest.raises(ConversionError, match="refused"):
        read_weights(bad)
    # a continuous (not VQ) transformer is named as such
    import json
    cfg = json.loads((src / "transformer" / "config.json").read_text())
    cfg.pop("num_vector_embeds")
    (src / "transformer" / "config.json").write_text(json.dumps(cfg))
    assert main(["--from", "diffusers", str(src), "--out", str(tmp_path / "o3")]) == 2
    assert "num_vector_embeds" in capsys.readouterr().err


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_converted_pipeline_fine_tunes(converted, tmp_path):
    """`init:` a converted folder: generation.train tokenises through the diffusers VQModel
    adapter, trains the transformer (the CLIP text encoder stays frozen) and exports a pipeline
    that loads and samples."""
    import json

    import yaml
    from safetensors.torch import load_file

    from datasets.scenes import generate
    from generation import train as t2i

    ref, ours = converted
    src = tmp_path / "model"
    ours.save_pretrained(src)
    scenes = generate(tmp_path / "scenes", n=8, size=32, seed=1, val_fraction=0.25, progress=False)
    cfg = {"init": str(src), "data": str(scenes), "out": str(tmp_path / "ft"),
           "train": {"steps": 2, "batch_size": 2, "lr": 1e-2, "warmup": 1, "log_every": 1, "val_every": 2,
                     "sample_every": 100, "ckpt_every": 2, "val_batches": 1},
           "sample": {"prompts": ["a cat"], "per_prompt": 1, "steps": 2}}
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(cfg))
    assert t2i.main(["--config", str(tmp_path / "ft.yaml"), "--device", "cpu", "--quiet"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "ft" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2] and all(r["loss"] > 0 for r in rows if "loss" in r)
    before = load_file(str(src / "transformer" / "model.safetensors"))
    after = load_file(str(tmp_path / "ft" / "pipeline" / "transformer" / "model.safetensors"))
    assert any(not torch.equal(before[k], after[k]) for k in before if k != "null_text")
    tuned = TextToImage.from_pretrained(tmp_path / "ft" / "pipeline", device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(ours.text_encoder.parameters(), tuned.text_encoder.parameters()))
    assert tuned("a cat", steps=2, seed=0).images.shape == (1, 3, 8, 8)


def test_broken_sources_and_outs_are_refused_in_one_line(tmp_path, capsys, monkeypatch):
    """From a walk with broken downloads: each was converted without a word (or gave a traceback)."""
    import json
    import shutil

    from safetensors.torch import save_file

    src = diffusers_reference.save(diffusers_reference.build("test"), tmp_path / "src")
    (src / "model_index.json").write_text(json.dumps({"_class_name": "VQDiffusionPipeline"}))

    def broken(name, change):
        copy = tmp_path / name
        shutil.copytree(src, copy)
        change(copy)
        return copy

    def refused(folder, *extra, out=None):
        code = main(["--from", "diffusers", str(folder), "--out", str(out or tmp_path / f"out_{folder.name}"), *extra])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
        return err

    def empty_tokenizer(d):
        for f in (d / "tokenizer").iterdir():
            f.unlink()

    assert "reads different prompts the same" in refused(broken("notok", empty_tokenizer))
    assert "is not a diffusers VQ-Diffusion folder: learned_classifier_free_sampling_embeddings/ is missing" in \
        refused(broken("nonull", lambda d: shutil.rmtree(d / "learned_classifier_free_sampling_embeddings")))
    assert "a StableDiffusionPipeline folder, not a VQDiffusionPipeline" in refused(broken(
        "sd", lambda d: (d / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')))

    def cut(d):
        f = next((d / "transformer").glob("*.safetensors"))
        f.write_bytes(f.read_bytes()[:100])
    assert "not a complete safetensors file" in refused(broken("cut", cut))
    bad_bin = tmp_path / "bin"
    bad_bin.mkdir()
    torch.save({"w": torch.ones(3)}, bad_bin / "diffusion_pytorch_model.bin")
    (bad_bin / "diffusion_pytorch_model.bin").write_bytes((bad_bin / "diffusion_pytorch_model.bin").read_bytes()[:60])
    with pytest.raises(ConversionError, match=r"not a complete PyTorch file .*a download cut short\?"):
        read_weights(bad_bin)

    def more_blocks(d):
        cfg = json.loads((d / "transformer" / "config.json").read_text())
        cfg["num_layers"] -= 1
        (d / "transformer" / "config.json").write_text(json.dumps(cfg))
    assert "does num_layers match the weights?" in refused(broken("layers", more_blocks))

    def other_codebook(d):
        from diffusers import VQModel

        vq = VQModel.from_pretrained(str(src / "vqvae"))
        shutil.rmtree(d / "vqvae")
        VQModel.from_config({**dict(vq.config), "num_vq_embeddings": 2 * K}).save_pretrained(d / "vqvae")
    assert f"{2 * K} codes, but the transformer draws {K} (num_vector_embeds - 1)" in \
        refused(broken("codes", other_codebook))
    assert "--null empty only apply to --from official" in refused(src, "--null", "empty")
    with pytest.raises(SystemExit):
        main(["--from", "diffusers", str(src), "--out", str(tmp_path / "g"), "--guidance", "nan"])
    assert "--guidance must be >= 0 (1 = off), got nan" in capsys.readouterr().err
    # a variant file beside the weights (diffusers' .fp16) is not merged into them
    variant = broken("variant", lambda d: save_file(
        {k: torch.ones_like(v) for k, v in read_weights(d / "transformer").items()},
        str(d / "transformer" / "diffusion_pytorch_model.fp16.safetensors")))
    assert all(torch.equal(a, b) for a, b in zip(read_weights(variant / "transformer").values(),
                                                 read_weights(src / "transformer").values()))
    # --out: not a file, not the source, not a folder of other files; an earlier conversion is replaced
    (tmp_path / "file").write_text("x")
    assert "is a file" in refused(src, out=tmp_path / "file")
    assert "is the source folder or holds it" in refused(src, out=src)
    assert "is the source folder or holds it" in refused(src, out=tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert "holds other files" in refused(src, out=tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    for _ in range(2):
        assert main(["--from", "diffusers", str(src), "--out", str(tmp_path / "again")]) == 0
    assert "null condition: learned" in capsys.readouterr().out
    # a conversion that fails while saving leaves the earlier one whole (its vqvae/ was deleted first)
    before = {p.relative_to(tmp_path / "again"): p.read_bytes() for p in (tmp_path / "again").rglob("*") if p.is_file()}

    def fails_midway(self, path):
        (path / "vqvae").mkdir(parents=True)
        (path / "vqvae" / "half.json").write_text("{")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TextToImage, "save_pretrained", fails_midway)
    with pytest.raises(OSError, match="No space left"):
        convert_diffusers(src, tmp_path / "again")
    after = {p.relative_to(tmp_path / "again"): p.read_bytes() for p in (tmp_path / "again").rglob("*") if p.is_file()}
    assert after == before and sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".again")) == []


@pytest.mark.parametrize("argv, message", [
    (["--repeats", "0"], "--repeats must be >= 1, got 0"), (["--steps", "150"], "at most the models' 100 diffusion"),
    (["--batch", "1", "0"], "--batch must be >= 1, got 0"), (["--truncation", "0"], "--truncation must be in (0, 1]"),
])
def test_the_sampling_benchmark_refuses_settings_before_building_models(argv, message, capsys, monkeypatch):
    from benchmarks import sampling

    monkeypatch.setattr(diffusers_reference, "build", lambda *a, **k: pytest.fail("built a model first"))
    with pytest.raises(SystemExit) as e:
        sampling.main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_the_sampling_benchmarks_ratio_comes_from_unrounded_times(capsys, monkeypatch):
    """Seconds are printed to 4 decimals; the ratio and ms/step come from the medians themselves
    (from the rounded ones, a run under 0.1 ms divided by zero, and short runs were off)."""
    from benchmarks import sampling

    times = iter([3e-5, 9e-5, 3e-5, 9e-5, 3e-5, 9e-5])  # ours, diffusers, per repeat
    monkeypatch.setattr(sampling, "timed", lambda fn, device: next(times))
    assert sampling.main(["--shape", "test", "--steps", "2", "--batch", "1", "--guidance", "1", "--repeats", "3"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[1])
    assert row["ours_s"] == 0.0 and row["diffusers_s"] == 0.0001 and row["ratio"] == 3.0
    assert row["ours_img_s"] == pytest.approx(1 / 3e-5, abs=1e-3)
