"""The text side of the official VQ-Diffusion release as transformers' CLIP.

* Weights: the checkpoint carries OpenAI CLIP's text tower (``condition_emb.*``:
  ``transformer.resblocks.{i}.attn.in_proj_weight`` etc.); it becomes a ``CLIPTextModel``
  (q/k/v split from the fused projection, QuickGELU, causal mask, heads = width / 64 as in
  OpenAI's ``build_model``).
* Tokenizer: OpenAI's ``bpe_simple_vocab_16e6.txt.gz`` becomes a ``CLIPTokenizer``: the
  vocabulary is built as OpenAI's SimpleTokenizer builds it (256 byte symbols, the same with
  ``</w>``, one entry per merge, then start/end of text), padding with id 0 (``!``) as the
  official Tokenize does.
"""

from __future__ import annotations

import gzip
import json
import re
import tempfile
from pathlib import Path

import torch

LAYER = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
         "attn.out_proj": "self_attn.out_proj"}
UNUSED = ("text_projection",)  # VQ-Diffusion reads every position, not CLIP's projected end token


class ClipError(ValueError):
    pass


def bytes_to_unicode() -> dict[int, str]:
    """OpenAI's printable stand-in for each byte (the order defines the first 256 ids)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def tokenizer_from_bpe(bpe_path: str | Path, max_length: int = 77, end_idx: int = 49152):
    """A CLIPTokenizer equal to OpenAI's SimpleTokenizer(end_idx) over `bpe_path`."""
    from transformers import CLIPTokenizer

    bpe_path = Path(bpe_path)
    wanted = end_idx - 256 - 2  # merges after the header line: only those are read
    lines = []
    try:  # line by line, each at most 1,000 bytes: a small .gz can expand to gigabytes on one line
        with gzip.open(bpe_path) as fh:
            for _ in range(wanted + 1):
                line = fh.readline(1000)
                if not line:
                    break
                lines.append(line.decode("utf-8").rstrip("\n"))
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise ClipError(f"{bpe_path}: not a gzipped BPE merges file ({e})") from None
    merges = [tuple(line.split()) for line in lines[1:]]
    bad = next((i for i, m in enumerate(merges) if len(m) != 2), None)
    if bad is not None:
        raise ClipError(f"{bpe_path}: line {bad + 2} is not a merge of two symbols: {lines[bad + 1][:80]!r}")
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps({s: i for i, s in enumerate(vocab)}))
        (Path(tmp) / "merges.txt").write_text("\n".join(["#version: 0.2"] + [" ".join(m) for m in merges]) + "\n")
        tok = CLIPTokenizer(str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"), pad_token="!",
                            model_max_length=max_length)
    if tok.pad_token_id != 0:
        raise ClipError(f"{bpe_path}: padding symbol '!' has id {tok.pad_token_id}, the official tokenizer pads with 0")
    return tok


def hf_text_weights(sd: dict[str, torch.Tensor], where: str) -> tuple[dict[str, torch.Tensor], dict]:
    """OpenAI CLIP text-tower weights (prefix already removed) -> (CLIPTextTransformer state dict, config)."""
    need = ["token_embedding.weight", "positional_embedding", "ln_final.weight", "ln_final.bias"]
    missing = [k for k in need if k not in sd]
    if missing:
        raise ClipError(f"{where}: no CLIP text weights {missing} (condition_emb of a CLIPTextEmbedding)")
    width = sd["token_embedding.weight"].shape[1]
    layers = 1 + max((int(m.group(1)) for k in sd if (m := re.match(r"transformer\.resblocks\.(\d+)\.", k))),
                     default=-1)
    if layers == 0 or width % 64:
        raise ClipError(f"{where}: {layers} text blocks of width {width}: not an OpenAI CLIP text tower "
                        f"(width must be a multiple of 64)")
    out = {"embeddings.token_embedding.weight": sd["token_embedding.weight"],
           "embeddings.position_embedding.weight": sd["positional_embedding"],
           "final_layer_norm.weight": sd["ln_final.weight"],
           "final_layer_norm.bias": sd["ln_final.bias"]}
    used = set(need) | {k for k in UNUSED if k in sd}
    for i in range(layers):
        src, dst = f"transformer.resblocks.{i}.", f"encoder.layers.{i}."
        for leaf in ("weight", "bias"):
            key = f"{src}attn.in_proj_{leaf}"
            if key not in sd:
                raise ClipError(f"{where}: {key} is missing")
            for name, part in zip(("q_proj", "k_proj", "v_proj"), sd[key].chunk(3, dim=0)):
                out[f"{dst}self_attn.{name}.{leaf}"] = part
            used.add(key)
            for a, b in LAYER.items():
                key = f"{src}{a}.{leaf}"
                if key not in sd:
                    raise ClipError(f"{where}: {key} is missing")
                out[f"{dst}{b}.{leaf}"] = sd[key]
                used.add(key)
    unused = sorted(set(sd) - used)
    if unused:
        raise ClipError(f"{where}: CLIP text weights with no counterpart: {unused[:6]}")
    config = dict(vocab_size=sd["token_embedding.weight"].shape[0], hidden_size=width,
                  intermediate_size=sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
                  num_hidden_layers=layers, num_attention_heads=width // 64,
                  max_position_embeddings=sd["positional_embedding"].shape[0], hidden_act="quick_gelu")
    return out, config


def text_model_from_openai(sd: dict[str, torch.Tensor], tokenizer, where: str):
    """A CLIPTextModel with the OpenAI text tower `sd` (its prefix removed)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from generation.convert import ConversionError, check_tokenizer

    weights, cfg = hf_text_weights({k: v.float() for k, v in sd.items()}, where)
    try:  # an empty --tokenizer folder loads as two symbols that read every prompt the same
        check_tokenizer(tokenizer, cfg["vocab_size"], Path(getattr(tokenizer, "name_or_path", "") or where))
    except ConversionError as e:
        raise ClipError(str(e)) from None
    ids = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
               eos_token_id=tokenizer.eos_token_id)
    model = CLIPTextModel(CLIPTextConfig(**cfg, **ids))
    if any(k.startswith("text_model.") for k in model.state_dict()):  # the prefix depends on the version
        weights = {f"text_model.{k}": v for k, v in weights.items()}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]  # a buffer, not a weight
    if missing or unexpected:
        raise ClipError(f"{where}: CLIP text weights do not fit (missing {missing[:4]}, unexpected {unexpected[:4]})")
    return model.eval()
