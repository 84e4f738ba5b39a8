"""Text encoders: BPE round trips, masks, truncation, empty prompts, exact save/load, and a
local CLIP or sentence-transformers folder loaded with no network, equal to calling
transformers directly."""

import json
import subprocess
import sys

import pytest
import torch

from datasets.scenes import render_scene
from generation.text import AutoTextEncoder, ClipTextEncoder, ScratchTextEncoder, load_text_encoder


@pytest.fixture(scope="module")
def captions():
    return [c for i in range(150) for c in render_scene(i, 64, 0)[2]]


@pytest.fixture(scope="module")
def scratch(captions):
    torch.manual_seed(0)
    return ScratchTextEncoder.train_new(captions, vocab_size=300, dim=32, layers=2, heads=2, max_length=16)


def test_tokenizer_round_trips_the_caption_vocabulary(scratch, captions):
    assert len(set(captions)) > 50
    for cap in sorted(set(captions)):
        assert scratch.decode(cap) == cap
    assert scratch.decode("Two  BLACK cats") == "two black cats"  # CLIP normaliser: lowercase, spaces
    # words never seen in training still round-trip: every byte symbol is in the vocabulary
    assert scratch.decode("a quizzical zebra") == "a quizzical zebra"
    tok = scratch.tokenizer
    ids = tok("two cats")["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert tok.convert_ids_to_tokens(ids[1:-1]) == ["two</w>", "cats</w>"]  # merged whole words, CLIP </w>
    assert len({tok.pad_token_id, tok.bos_token_id, tok.eos_token_id}) == 3


def test_mask_counts_bos_tokens_eos(scratch):
    prompts = ["a cat", "two black cats to the left of a face"]
    emb, mask = scratch.encode(prompts)
    assert emb.shape == (2, 16, 32) and mask.dtype == torch.bool
    for row, prompt in zip(mask, prompts):
        n = len(scratch.tokenizer.tokenize(prompt)) + 2
        assert 4 <= n < 16 and row.sum() == n and row[:n].all() and not row[n:].any()


def test_long_prompts_warn_and_are_cut(scratch):
    long = " and ".join(["a black cat"] * 10)
    with pytest.warns(UserWarning, match=r"prompt 'a black cat and .* truncated to the model's 16"):
        emb, mask = scratch.encode([long, "a cat"])
    assert mask[0].all() and mask[1].sum() == 4
    ids = scratch.tokenize([long])[0][0]
    full = scratch.tokenizer(long)["input_ids"]
    assert ids[:15].tolist() == full[:15] and ids[15] == scratch.tokenizer.eos_token_id


def test_a_prompt_of_exactly_max_length_tokens_does_not_warn(scratch):
    """L = 16 positions hold bos + 14 words + eos with nothing cut: no warning. One word more
    is cut and warns. Warning at n == L would tell users a prompt was truncated when it was not."""
    import warnings
    exact, over = " ".join(["cat"] * 14), " ".join(["cat"] * 15)
    assert len(scratch.tokenizer(exact)["input_ids"]) == 16 and len(scratch.tokenizer(over)["input_ids"]) == 17
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ids, mask = scratch.tokenize([exact])
    assert mask.all() and ids[0, -1] == scratch.tokenizer.eos_token_id
    with pytest.warns(UserWarning, match="has 17 tokens; truncated to the model's 16"):
        scratch.tokenize([over])


def test_empty_prompt_is_an_error_except_as_null(scratch):
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        scratch.encode(["a cat", "   "])
    emb, mask = scratch.encode([""], allow_empty=True)
    assert mask.sum() == 2  # bos + eos
    with pytest.raises(ValueError, match="at least one prompt"):
        scratch.encode([])


def test_save_load_is_exact(scratch, tmp_path):
    scratch.eval()
    scratch.save_pretrained(tmp_path / "enc")
    back = load_text_encoder(tmp_path / "enc")
    assert isinstance(back, ScratchTextEncoder) and back.max_length == 16
    assert back.tokenizer.get_vocab() == scratch.tokenizer.get_vocab()
    prompts = ["a gray dog above a face", "two cats"]
    a, ma = scratch.encode(prompts)
    b, mb = back.eval().encode(prompts)
    assert torch.equal(a, b) and torch.equal(ma, mb)
    assert any(p.requires_grad for p in back.parameters())  # scratch: trainable
    assert isinstance(load_text_encoder(f"scratch:{tmp_path / 'enc'}"), ScratchTextEncoder)
    (tmp_path / "enc" / "encoder.json").write_text(json.dumps({"kind": "scratch"}))  # an old format
    with pytest.raises(ValueError, match="older scratch text encoder format"):
        load_text_encoder(tmp_path / "enc")


def test_local_clip_folder_matches_transformers(tmp_path, captions):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    # a CLIP-format tokenizer saved by transformers and a tiny random CLIP text model
    trained = ScratchTextEncoder.train_tokenizer(captions, vocab_size=300, max_length=12)
    folder = tmp_path / "clip"
    trained.save_pretrained(folder)
    torch.manual_seed(0)
    model = CLIPTextModel(CLIPTextConfig(vocab_size=len(trained), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=12))
    model.save_pretrained(folder)
    enc = ClipTextEncoder.from_pretrained(folder)
    assert enc.max_length == 12 and enc.dim == 32
    prompts = ["a black cat", "two dogs"]
    emb, mask = enc.encode(prompts)
    tok = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
    ids = tok(prompts, padding="max_length", max_length=12, truncation=True, return_tensors="pt")
    with torch.no_grad():
        want = model.eval()(**ids).last_hidden_state
    # real tokens as transformers gives them (padding positions are hidden by the mask downstream)
    assert torch.equal(mask, ids["attention_mask"].bool()) and torch.allclose(emb[mask], want[mask], atol=1e-6)
    assert not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.model.training  # frozen: stays in eval mode
    assert isinstance(load_text_encoder(folder), ClipTextEncoder)  # no encoder.json: a plain CLIP folder
    with pytest.raises(FileNotFoundError, match="only from a local folder"):
        ClipTextEncoder.from_pretrained("openai/clip-vit-base-patch32")
    (tmp_path / "junk").mkdir()
    with pytest.raises(ValueError, match="not a CLIP tokenizer"):
        ClipTextEncoder.from_pretrained(tmp_path / "junk")


WORDS = "a an one two three black white brown gray orange cat cats dog dogs face faces to the left right of and".split()


def tiny_sentence_transformer(folder, legacy: bool = False, max_seq_length: int = 24):
    """A tiny random BERT as sentence-transformers saves one: modules.json, sentence_bert_config.json,
    the model at the top (or, `legacy`, in 0_Transformer/ as older versions do). Returns the model."""
    from transformers import BertConfig, BertModel, BertTokenizer

    model_dir = folder / "0_Transformer" if legacy else folder
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])})
    tok.save_pretrained(model_dir)
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64, max_position_embeddings=64)).eval()
    model.save_pretrained(model_dir)
    (model_dir / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "0_Transformer" if legacy else "",
         "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    return model, tok


def test_sentence_transformers_folder_matches_transformers(tmp_path):
    model, tok = tiny_sentence_transformer(tmp_path / "st")
    enc = load_text_encoder(tmp_path / "st")  # a plain folder: its modules.json says what it is
    assert isinstance(enc, AutoTextEncoder) and (enc.max_length, enc.dim) == (24, 32)
    prompts = ["a black cat", "two dogs to the left of a face"]
    emb, mask = enc.encode(prompts)
    for i, prompt in enumerate(prompts):  # each prompt alone, unpadded, as transformers reads it
        ids = tok(prompt, return_tensors="pt")
        with torch.no_grad():
            want = model(**ids).last_hidden_state[0]
        n = len(want)
        assert mask[i].sum() == n and mask[i, :n].all()
        assert torch.allclose(emb[i, :n], want, atol=1e-5), i
    # the padding is masked inside the model: unmasked, it would change the short prompt's states
    ids = tok(prompts, padding="max_length", max_length=24, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        unmasked = model(input_ids=ids).last_hidden_state
    assert (unmasked[0][mask[0]] - emb[0][mask[0]]).abs().max() > 1e-3
    assert not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.model.training  # frozen: stays in eval mode

    enc.save_pretrained(tmp_path / "saved")  # as a pipeline's text_encoder/ folder
    again = load_text_encoder(tmp_path / "saved")
    assert isinstance(again, AutoTextEncoder) and again.max_length == 24
    assert torch.equal(again.encode(prompts)[0], emb)
    # the older layout (the model in 0_Transformer/), a bare transformers folder, "auto:DIR"
    tiny_sentence_transformer(tmp_path / "legacy", legacy=True)
    assert torch.equal(load_text_encoder(tmp_path / "legacy").encode(prompts)[0], emb)
    bare = load_text_encoder(f"auto:{tmp_path / 'legacy' / '0_Transformer'}")
    assert isinstance(load_text_encoder(tmp_path / "legacy" / "0_Transformer"), AutoTextEncoder)
    assert torch.equal(bare.encode(prompts)[0], emb)


def test_sentence_transformers_length_and_errors(tmp_path):
    tiny_sentence_transformer(tmp_path / "st", max_seq_length=256)
    assert AutoTextEncoder.from_pretrained(tmp_path / "st").max_length == 64  # the model's positions
    short = AutoTextEncoder.from_pretrained(tmp_path / "st", max_length=6)
    with pytest.warns(UserWarning, match="truncated to the model's 6"):
        emb, mask = short.encode(["two black cats to the left of a white dog"])
    assert emb.shape == (1, 6, 32) and mask.all()
    with pytest.raises(FileNotFoundError, match="only from a local folder"):
        AutoTextEncoder.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")
    (tmp_path / "st" / "modules.json").write_text('[{"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]')
    with pytest.raises(ValueError, match="modules.json: no sentence_transformers.models.Transformer module"):
        load_text_encoder(tmp_path / "st")
    (tmp_path / "st" / "modules.json").write_text("[{")
    with pytest.raises(ValueError, match="modules.json: not JSON"):
        load_text_encoder(tmp_path / "st")
    (tmp_path / "junk").mkdir()
    with pytest.raises(ValueError, match="not a transformers tokenizer"):
        AutoTextEncoder.from_pretrained(tmp_path / "junk")


def test_tokenizer_training_is_reproducible_across_processes(captions):
    """tokenizers numbers its vocabulary in hash-map order, which changes per process;
    ours is renumbered canonically, so a retrained tokenizer is identical."""
    code = ("import json; from generation.text import ScratchTextEncoder; from datasets.scenes import render_scene;"
            "caps=[c for i in range(150) for c in render_scene(i, 64, 0)[2]];"
            "print(json.dumps(ScratchTextEncoder.train_tokenizer(caps, 300).get_vocab(), sort_keys=True))")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    runs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and runs[0] == runs[1]
    here = ScratchTextEncoder.train_tokenizer(captions, 300).get_vocab()
    assert json.loads(runs[0]) == here and len(here) > 512 + 3


def test_no_padding_mask_is_needed_by_the_causal_text_model(scratch):
    """encode_ids runs the CLIP text model without the padding mask (building one reads it
    back from a GPU): the model is causal and the padding comes last, so every real token's
    embedding is what the masked model gives, to the bit."""
    scratch.tokenizer.padding_side = "left"
    from generation.text import ScratchTextEncoder

    enc = ScratchTextEncoder(scratch.tokenizer, scratch.model)
    assert enc.tokenizer.padding_side == "right"
    ids, mask = enc.tokenize(["a black cat", "a cat to the left of two dogs", "a"])
    assert mask.device.type == "cpu" and not mask[:, 0].logical_not().any()
    with torch.no_grad():
        want = enc.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        got = enc.encode_ids(ids)
    assert torch.equal(got[mask], want[mask])
