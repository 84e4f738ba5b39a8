"""Text encoders behind one interface: `encode(prompts) -> (embeddings [B, L, D], mask [B, L])`.

* `ClipTextEncoder.from_pretrained(local_dir)`: transformers' CLIPTokenizer + CLIPTextModel
  from a folder on disk (never the hub), frozen.
* `ScratchTextEncoder.train_new(captions, ...)`: a byte-level BPE tokenizer trained with
  `tokenizers` on the dataset's captions plus a small CLIPTextModel-style transformer that
  the generator trains jointly.

Every prompt is padded (or truncated, with a warning) to `max_length`, so L is fixed and the
pipeline's learned null embedding has one shape. An empty prompt is an error, except as the
classifier-free "null" condition (`allow_empty=True`).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn

SPECIALS = ("<|pad|>", "<|startoftext|>", "<|endoftext|>")


def check_prompts(prompts: Sequence[str], allow_empty: bool) -> list[str]:
    if isinstance(prompts, str):
        prompts = [prompts]
    out = []
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"prompt {i} is {type(p).__name__}, expected str")
        if not p.strip() and not allow_empty:
            raise ValueError(f"prompt {i} is empty: describe the image (an empty prompt is only "
                             "used internally as the classifier-free null condition)")
        out.append(p.strip())
    return out


class TextEncoder(nn.Module):
    """The shared interface; subclasses set tokenizer/model and implement `_ids`."""

    max_length: int
    dim: int

    def _ids(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        raise NotImplementedError

    def encode(self, prompts: Sequence[str], allow_empty: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        prompts = check_prompts(prompts, allow_empty)
        ids, mask, lengths = self._ids(prompts)
        for p, n in zip(prompts, lengths):
            if n > self.max_length:
                warnings.warn(f"prompt {p[:60]!r} has {n} tokens; truncated to the model's {self.max_length}",
                              stacklevel=2)
        device = next(self.model.parameters()).device
        ids, mask = ids.to(device), mask.to(device)
        with torch.set_grad_enabled(self.training and any(p.requires_grad for p in self.model.parameters())):
            emb = self.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        return emb, mask.bool()


class ScratchTextEncoder(TextEncoder):
    def __init__(self, tokenizer, model):
        super().__init__()
        self.tokenizer = tokenizer  # a tokenizers.Tokenizer
        self.model = model          # a transformers CLIPTextModel
        self.max_length = model.config.max_position_embeddings
        self.dim = model.config.hidden_size

    @staticmethod
    def train_tokenizer(captions: Iterable[str], vocab_size: int = 1000):
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE(unk_token=None, end_of_word_suffix="</w>"))
        tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase(),
                                               normalizers.Replace(r"\s+", " ")])
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
        tok.decoder = decoders.BPEDecoder(suffix="</w>")
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS),
                                      end_of_word_suffix="</w>", show_progress=False,
                                      initial_alphabet=list("abcdefghijklmnopqrstuvwxyz0123456789.,'-"))
        tok.train_from_iterator(list(captions), trainer)
        return ScratchTextEncoder._canonical_ids(tok)

    @staticmethod
    def _canonical_ids(tok):
        """The trainer's merges are deterministic but its token ids are not (a hash map's order
        varies per process): renumber as specials, sorted alphabet, then merges in order, so
        the same captions always give the same tokenizer (exact resume, reproducible runs)."""
        import json as _json

        from tokenizers import models

        spec = _json.loads(tok.to_str())
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in spec["model"]["merges"]]
        merged = ["".join(m) for m in merges]
        alphabet = sorted(set(spec["model"]["vocab"]) - set(SPECIALS) - set(merged))
        order = list(SPECIALS) + alphabet + [t for t in dict.fromkeys(merged) if t not in alphabet]
        tok.model = models.BPE(vocab={t: i for i, t in enumerate(order)}, merges=merges, unk_token=None,
                               end_of_word_suffix="</w>")
        return tok

    @classmethod
    def train_new(cls, captions: Iterable[str], vocab_size: int = 1000, dim: int = 256, layers: int = 4,
                  heads: int = 4, max_length: int = 32) -> "ScratchTextEncoder":
        from transformers import CLIPTextConfig, CLIPTextModel

        tok = cls.train_tokenizer(captions, vocab_size)
        pad, bos, eos = (tok.token_to_id(s) for s in SPECIALS)
        config = CLIPTextConfig(vocab_size=tok.get_vocab_size(), hidden_size=dim, intermediate_size=4 * dim,
                                num_hidden_layers=layers, num_attention_heads=heads,
                                max_position_embeddings=max_length, pad_token_id=pad, bos_token_id=bos,
                                eos_token_id=eos)
        return cls(tok, CLIPTextModel(config))

    def _ids(self, prompts):
        pad, bos, eos = (self.tokenizer.token_to_id(s) for s in SPECIALS)
        rows, lengths = [], []
        for enc in self.tokenizer.encode_batch(prompts):
            ids = [bos] + enc.ids + [eos]
            lengths.append(len(ids))
            if len(ids) > self.max_length:
                ids = ids[:self.max_length - 1] + [eos]
            rows.append(ids)
        ids = torch.full((len(rows), self.max_length), pad, dtype=torch.long)
        mask = torch.zeros(len(rows), self.max_length, dtype=torch.bool)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r)
            mask[i, :len(r)] = True
        return ids, mask, lengths

    def decode(self, prompt: str) -> str:
        """Tokenise and detokenise: what the model actually reads."""
        return self.tokenizer.decode(self.tokenizer.encode(prompt).ids)

    def save_pretrained(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path, safe_serialization=True)
        tmp = path / "tokenizer.json.tmp"
        self.tokenizer.save(str(tmp))
        os.replace(tmp, path / "tokenizer.json")
        (path / "encoder.json").write_text(json.dumps({"kind": "scratch"}) + "\n")
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path, device=None) -> "ScratchTextEncoder":
        from tokenizers import Tokenizer
        from transformers import CLIPTextModel

        path = Path(path)
        if not (path / "tokenizer.json").is_file():
            raise FileNotFoundError(f"{path}: no tokenizer.json (not a scratch text encoder folder)")
        model = CLIPTextModel.from_pretrained(path, local_files_only=True)
        return cls(Tokenizer.from_file(str(path / "tokenizer.json")), model).to(device or "cpu")


class ClipTextEncoder(TextEncoder):
    """A pretrained CLIP text tower from a local folder, frozen (as in VQ-Diffusion)."""

    def __init__(self, tokenizer, model, source: str):
        super().__init__()
        self.tokenizer, self.model, self.source = tokenizer, model, source
        self.max_length = min(tokenizer.model_max_length, model.config.max_position_embeddings)
        self.dim = model.config.hidden_size
        self.model.requires_grad_(False)

    @classmethod
    def from_pretrained(cls, path: str | Path, device=None) -> "ClipTextEncoder":
        from transformers import CLIPTextModel, CLIPTokenizer

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"CLIP text encoder folder {str(path)!r} does not exist; gendet loads CLIP "
                                    "only from a local folder (download it yourself, then pass its path)")
        try:
            tok = CLIPTokenizer.from_pretrained(path, local_files_only=True)
            model = CLIPTextModel.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: not a CLIP tokenizer + text model folder ({e})") from None
        return cls(tok, model.eval(), str(path)).to(device or "cpu")

    def _ids(self, prompts):
        lengths = [len(x) for x in self.tokenizer(prompts)["input_ids"]]
        enc = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"].bool(), lengths

    def train(self, mode: bool = True):
        return super().train(False) if mode else super().train(mode)  # frozen: always eval

    def save_pretrained(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)
        (path / "encoder.json").write_text(json.dumps({"kind": "clip", "source": self.source}) + "\n")
        return path


def load_text_encoder(path: str | Path, device=None) -> TextEncoder:
    """A saved encoder folder (its encoder.json says which kind), or a plain local CLIP folder."""
    path = Path(path)
    meta = path / "encoder.json"
    kind = json.loads(meta.read_text()).get("kind") if meta.is_file() else "clip"
    if kind == "scratch":
        return ScratchTextEncoder.from_pretrained(path, device)
    if kind == "clip":
        return ClipTextEncoder.from_pretrained(path, device)
    raise ValueError(f"{meta}: unknown text encoder kind {kind!r}")
