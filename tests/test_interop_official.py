"""generation.convert --from official against the same weights converted --from diffusers.

A random diffusers pipeline (benchmarks.diffusers_reference, shape "official") is written
twice: as diffusers saves it, and in the official microsoft/VQ-Diffusion layout
(benchmarks.official_reference: checkpoint with model + EMA, yaml configs with
!!python/tuple, taming VQGAN, OpenAI CLIP names). The diffusers conversion is proven equal
to diffusers itself in test_interop_diffusers; here the official conversion must give the
same model number for number.
"""

import gzip
import os
import pickle

import pytest
import torch

pytest.importorskip("diffusers")

from benchmarks import diffusers_reference, official_reference  # noqa: E402
from generation.convert import ConversionError, convert_diffusers, main  # noqa: E402
from generation.convert_official import convert_official  # noqa: E402
from generation.official_clip import bytes_to_unicode, tokenizer_from_bpe  # noqa: E402
from generation.pipeline import TextToImage  # noqa: E402

PROMPTS = ["a black cat", "two white dogs to the left of a face"]
K, SIDE = 24, 4


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    ref = diffusers_reference.build("official")
    ref.tokenizer.pad_token = "!"  # the official tokenizer pads with id 0 ("!")
    with torch.no_grad():  # move norms/biases off their init values so a swapped name shows
        for seed, module in enumerate((ref.vqvae, ref.text_encoder)):
            g = torch.Generator().manual_seed(40 + seed)
            for p in module.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    base = tmp_path_factory.mktemp("official")
    src = diffusers_reference.save(ref, base / "diffusers")
    convert_diffusers(src, base / "via_diffusers")
    root = official_reference.save(ref, base / "repo")
    return ref, src, root, TextToImage.from_pretrained(base / "via_diffusers", device="cpu"), base


@pytest.fixture(scope="module")
def converted(sources):
    ref, src, root, want, base = sources
    _, report = convert_official(root, base / "via_official", tokenizer=src / "tokenizer")
    return TextToImage.from_pretrained(base / "via_official", device="cpu"), want, report


def test_transformer_text_null_and_schedule_equal_the_diffusers_conversion(converted):
    got, want, report = converted
    assert report.ema and report.null == "learned"
    a, b = got.transformer.state_dict(), want.transformer.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(got.null_text, want.null_text)
    e1, m1 = got.encode_text(PROMPTS)
    e2, m2 = want.encode_text(PROMPTS)
    assert m1.all() and (e1 - e2).abs().max() < 1e-5
    assert torch.allclose(got.diffusion.log_cumprod_at, want.diffusion.log_cumprod_at)
    assert torch.allclose(got.diffusion.log_cumprod_ct, want.diffusion.log_cumprod_ct)
    assert got.defaults["steps"] == 100 and got.image_size == want.image_size == SIDE * 2


def test_image_tokenizer_equals_and_leftovers_are_reported(converted):
    got, want, report = converted
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, K, (3, SIDE * SIDE), generator=g)
    assert (got.vqvae.decode(ids) - want.vqvae.decode(ids)).abs().max() < 1e-6
    images = torch.rand(2, 3, SIDE * 2, SIDE * 2, generator=g)
    assert torch.equal(got.vqvae.encode(images), want.vqvae.encode(images))
    assert "content_codec" in report.vqvae  # the checkpoint's own copy wins, as in the official code
    assert report.ignored == ["transformer.Lt_history"]


def test_whole_sampling_run_is_identical(converted):
    got, want, _ = converted
    kw = dict(steps=10, guidance_scale=3.0, truncation=0.9, num_images=2, seed=7)
    a, b = got(PROMPTS, **kw), want(PROMPTS, **kw)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.images, b.images)


def test_raw_weights_empty_null_and_a_named_vqgan_file(sources, tmp_path):
    ref, src, root, want, _ = sources
    raw = torch.load(root / official_reference.PATHS["checkpoint"], weights_only=True)["model"]
    pipe, report = convert_official(root / official_reference.PATHS["checkpoint"], tmp_path / "m",
                                    config=root / official_reference.PATHS["config"],
                                    vqvae=root / official_reference.PATHS["vqvae"],
                                    vqvae_config=root / official_reference.PATHS["vqvae_config"],
                                    tokenizer=src / "tokenizer", use_ema=False, null="empty")
    assert not report.ema and report.null == "empty prompt"
    key = "blocks.1.attn2.query.weight"
    assert torch.equal(pipe.transformer.state_dict()[key], raw["transformer.transformer." + key])
    assert not torch.equal(pipe.transformer.state_dict()[key], want.transformer.state_dict()[key])
    with torch.no_grad():
        empty = pipe.text_encoder.encode([""], allow_empty=True)[0][0]
    assert torch.equal(pipe.null_text, empty)
    assert report.vqvae.endswith("ithq_vqvae.pth")
    assert sorted(k.split(": ")[1] for k in report.ignored if ": " in k) == [
        "loss.discriminator.main.0.weight", "quantize.cluster_size"]
    ids = torch.randint(0, K, (2, SIDE * SIDE))
    assert (pipe.vqvae.decode(ids) - want.vqvae.decode(ids)).abs().max() < 1e-6


def test_bpe_vocabulary_is_built_like_openais_simple_tokenizer(tmp_path):
    bpe = tmp_path / "bpe.txt.gz"
    with gzip.open(bpe, "wt") as f:
        f.write("\n".join(["bpe_simple_vocab_16e6.txt#version: 0.2", "h e", "l l", "he ll", "hell o</w>"]) + "\n")
    sym = list(bytes_to_unicode().values())
    assert sym[:3] == ["!", '"', "#"] and len(sym) == 256
    tok = tokenizer_from_bpe(bpe, max_length=8)
    sot, eot = 512 + 4, 512 + 5
    assert tok("hello")["input_ids"] == [sot, 512 + 3, eot]  # the last merge, "hello</w>"
    assert tok("hi")["input_ids"] == [sot, ord("h") - 33, 256 + ord("i") - 33, eot]  # 'h', 'i</w>'
    assert tok("hi", padding="max_length")["input_ids"][-1] == 0 == tok.pad_token_id  # pads with "!"
    short = tokenizer_from_bpe(bpe, max_length=8, end_idx=256 + 2 + 2)  # keeps the first two merges
    assert short("hello")["input_ids"] == [512 + 2, 512, 513, 256 + ord("o") - 33, 512 + 3]
    bad = tmp_path / "bad.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="bad.gz"):
        tokenizer_from_bpe(bad)


def test_cli_with_the_bpe_file_and_with_a_tokenizer_folder(sources, tmp_path, capsys):
    ref, src, root, _, _ = sources
    bpe = tmp_path / "bpe.txt.gz"
    with gzip.open(bpe, "wt") as f:
        f.write("header\nh e\nl l\nhe ll\nhell o</w>\n")
    assert main(["--from", "official", str(root), "--out", str(tmp_path / "b"), "--bpe", str(bpe)]) == 0
    out = capsys.readouterr().out
    assert "weights: EMA" in out and "null condition: learned" in out and "transformer.Lt_history" in out
    text = TextToImage.from_pretrained(tmp_path / "b").text_encoder
    assert text.tokenizer("hello")["input_ids"] == [516, 515, 517]
    assert main(["--from", "official", str(root), "--out", str(tmp_path / "t"),
                 "--tokenizer", str(src / "tokenizer"), "--steps", "25"]) == 0
    assert TextToImage.from_pretrained(tmp_path / "t").defaults["steps"] == 25
    assert main(["--from", "diffusers", str(src), "--out", str(tmp_path / "d"), "--bpe", str(bpe)]) == 2
    assert "only apply to --from official" in capsys.readouterr().err


class _Payload:
    def __reduce__(self):
        return (os.makedirs, ("/tmp/gendet-official-pwned",))


def test_refusals_name_the_file_and_field(sources, tmp_path):
    ref, src, root, _, _ = sources
    ckpt = tmp_path / "evil.pth"
    ckpt.write_bytes(pickle.dumps({"model": _Payload()}))
    kw = dict(config=root / official_reference.PATHS["config"],
              vqvae_config=root / official_reference.PATHS["vqvae_config"], tokenizer=src / "tokenizer")
    with pytest.raises(ConversionError, match="evil.pth: refused"):
        convert_official(ckpt, tmp_path / "m", **kw)
    assert not os.path.exists("/tmp/gendet-official-pwned")

    text = (root / official_reference.PATHS["config"]).read_text()
    bad = tmp_path / "gelu.yaml"
    bad.write_text(text.replace("block_activate: GELU2", "block_activate: ReLU"))
    with pytest.raises(ConversionError, match="gelu.yaml: block_activate='ReLU'"):
        convert_official(root, tmp_path / "m", **{**kw, "config": bad})
    evil = tmp_path / "object.yaml"
    evil.write_text(text.replace("!!python/tuple [0.9, 0.96]", "!!python/object/apply:os.system ['true']"))
    with pytest.raises(ConversionError, match="object.yaml: not a readable config"):
        convert_official(root, tmp_path / "m", **{**kw, "config": evil})

    full = torch.load(root / official_reference.PATHS["checkpoint"], weights_only=True)
    del full["ema"]["transformer.blocks.0.mlp.2.bias"], full["model"]["transformer.transformer.blocks.0.mlp.2.bias"]
    cut = tmp_path / "cut.pth"
    torch.save(full, cut)
    with pytest.raises(ConversionError, match=r"cut.pth: transformer.transformer.blocks.0.mlp.2.bias is missing"):
        convert_official(cut, tmp_path / "m", **kw)
    with pytest.raises(ConversionError, match="no tokenizer"):
        convert_official(root, tmp_path / "m")
    with pytest.raises(ConversionError, match="no checkpoint: pass SRC \\(looked for .*ithq_learnable.pth"):
        convert_official(tmp_path, tmp_path / "m", tokenizer=src / "tokenizer")
    with pytest.raises(ConversionError, match="no config: pass --config"):
        convert_official(cut, tmp_path / "m", tokenizer=src / "tokenizer")
    # from a walk: a download cut short is not called unsafe; an empty --tokenizer folder (two
    # symbols, every prompt read the same) and an --out that is the source are refused
    short = tmp_path / "short.pth"
    short.write_bytes((root / official_reference.PATHS["checkpoint"]).read_bytes()[:4096])
    with pytest.raises(ConversionError, match=r"short.pth: not a complete PyTorch file .*a download cut short\?"):
        convert_official(short, tmp_path / "m", **kw)
    (tmp_path / "empty_tok").mkdir()
    with pytest.raises(ConversionError, match="reads different prompts the same"):
        convert_official(root, tmp_path / "m", **{**kw, "tokenizer": tmp_path / "empty_tok"})
    with pytest.raises(ConversionError, match="is the source folder or holds it"):
        convert_official(root, root, **kw)


def test_the_command_line_prints_refusals_as_one_line(tmp_path):
    """`python -m generation.convert` runs the file as __main__: its errors must still be the
    one-line `error:` of the importable module, not a traceback."""
    import subprocess
    import sys

    import gendet_env

    missing = tmp_path / "VQ-Diffusion"
    run = subprocess.run([sys.executable, "-m", "generation.convert", "--from", "official", str(missing),
                          "--out", str(tmp_path / "m")], capture_output=True, text=True, timeout=300,
                         cwd=gendet_env.ROOT)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-1500:]
    assert run.stderr.strip().splitlines()[-1] == f"error: source {str(missing)!r} does not exist"


def test_the_reference_cli_writes_both_layouts_that_convert_to_one_model(tmp_path, capsys):
    """`python -m benchmarks.diffusers_reference --official`: inputs to try the converter on
    offline. Both folders convert, and to the same weights; a shape taming cannot build is refused."""
    d, o = tmp_path / "d", tmp_path / "o"
    assert diffusers_reference.main(["--shape", "official", "--out", str(d), "--official", str(o)]) == 0
    assert f"--from official {o} --tokenizer {d}/tokenizer" in capsys.readouterr().out
    assert main(["--from", "diffusers", str(d), "--out", str(tmp_path / "cd")]) == 0
    assert main(["--from", "official", str(o), "--tokenizer", str(d / "tokenizer"), "--out", str(tmp_path / "co")]) == 0
    a = TextToImage.from_pretrained(tmp_path / "cd", device="cpu").transformer.state_dict()
    b = TextToImage.from_pretrained(tmp_path / "co", device="cpu").transformer.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    capsys.readouterr()
    assert diffusers_reference.main(["--shape", "tiny", "--out", str(tmp_path / "t"), "--official", str(o)]) == 2
    assert capsys.readouterr().err == ("error: --official needs a shape whose VQGAN has GroupNorm(32): "
                                       "official or ithq, not tiny\n")
    assert diffusers_reference.main(["--out", str(d)]) == 2
    assert f"{d} is not empty" in capsys.readouterr().err
