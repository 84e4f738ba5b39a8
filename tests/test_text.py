"""Text encoders: BPE round trips, masks, truncation, empty prompts, exact save/load,
and a local CLIP folder loaded with no network, equal to calling transformers directly."""

import pytest
import torch

from datasets.scenes import render_scene
from generation.text import ClipTextEncoder, ScratchTextEncoder, load_text_encoder


@pytest.fixture(scope="module")
def captions():
    caps = []
    for i in range(150):
        caps += render_scene(i, 64, 0)[2]
    return caps


@pytest.fixture(scope="module")
def scratch(captions):
    torch.manual_seed(0)
    return ScratchTextEncoder.train_new(captions, vocab_size=300, dim=32, layers=2, heads=2, max_length=16)


def test_tokenizer_round_trips_the_caption_vocabulary(scratch, captions):
    for cap in captions[:200]:
        assert scratch.decode(cap) == cap
    assert scratch.decode("Two  BLACK cats") == "two black cats"  # normalised: lowercase, spaces


def test_mask_counts_bos_tokens_eos(scratch):
    emb, mask = scratch.encode(["a cat", "two black cats to the left of a face"])
    assert emb.shape == (2, 16, 32) and mask.dtype == torch.bool
    for row, prompt in zip(mask, ["a cat", "two black cats to the left of a face"]):
        n = len(scratch.tokenizer.encode(prompt).ids) + 2
        assert row.sum() == n and row[:n].all()


def test_long_prompts_warn_and_are_cut(scratch):
    long = " and ".join(["a black cat"] * 10)
    with pytest.warns(UserWarning, match="truncated to the model's 16"):
        emb, mask = scratch.encode([long])
    assert mask.sum() == 16


def test_empty_prompt_is_an_error_except_as_null(scratch):
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        scratch.encode(["a cat", "   "])
    emb, mask = scratch.encode([""], allow_empty=True)
    assert mask.sum() == 2  # bos + eos


def test_save_load_is_exact(scratch, tmp_path):
    scratch.eval()
    scratch.save_pretrained(tmp_path / "enc")
    back = load_text_encoder(tmp_path / "enc").eval()
    a, ma = scratch.encode(["a gray dog above a face"])
    b, mb = back.encode(["a gray dog above a face"])
    assert torch.equal(a, b) and torch.equal(ma, mb)


def test_local_clip_folder_matches_transformers(tmp_path, captions):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    # a real CLIP-format tokenizer (vocab.json + merges.txt) and a tiny random CLIP text model
    tok = ScratchTextEncoder.train_tokenizer(captions, vocab_size=300)
    vocab = tok.get_vocab()
    import json

    model_json = json.loads(tok.to_str())["model"]
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    merges = model_json["merges"]
    lines = [" ".join(m) if isinstance(m, list) else m for m in merges]
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(lines) + "\n")
    clip_tok = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"),
                             unk_token="<|endoftext|>", bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                             pad_token="<|endoftext|>", model_max_length=12)
    torch.manual_seed(0)
    model = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=12))
    folder = tmp_path / "clip"
    clip_tok.save_pretrained(folder)
    model.save_pretrained(folder)
    enc = ClipTextEncoder.from_pretrained(folder)
    emb, mask = enc.encode(["a black cat", "two dogs"])
    ids = clip_tok(["a black cat", "two dogs"], padding="max_length", max_length=12, truncation=True,
                   return_tensors="pt")
    with torch.no_grad():
        want = model.eval()(**ids).last_hidden_state
    assert torch.allclose(emb, want, atol=1e-6) and torch.equal(mask, ids["attention_mask"].bool())
    assert not any(p.requires_grad for p in enc.parameters())
    with pytest.raises(FileNotFoundError, match="only from a local folder"):
        ClipTextEncoder.from_pretrained("openai/clip-vit-base-patch32")


def test_tokenizer_training_is_reproducible_across_processes(captions):
    """tokenizers numbers its vocabulary in hash-map order, which changes per process;
    ours is renumbered canonically, so a retrained tokenizer is identical."""
    import subprocess
    import sys

    code = ("from generation.text import ScratchTextEncoder; from datasets.scenes import render_scene;"
            "caps=[c for i in range(150) for c in render_scene(i, 64, 0)[2]];"
            "print(ScratchTextEncoder.train_tokenizer(caps, 300).to_str())")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert runs[0] == runs[1]
    assert runs[0].strip() == ScratchTextEncoder.train_tokenizer(captions, 300).to_str()
