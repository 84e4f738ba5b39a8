"""Text encoders behind one interface: `encode(prompts) -> (embeddings [B, L, D], mask [B, L])`.

* `ClipTextEncoder.from_pretrained(local_dir)`: transformers' CLIPTokenizer + CLIPTextModel
  from a folder on disk (never the hub), frozen; embeddings = last_hidden_state.
* `ScratchTextEncoder.train_new(captions, ...)`: a BPE tokenizer trained with `tokenizers` on
  the dataset's captions, with CLIP's normaliser, pre-tokeniser and `</w>` word ends, wrapped
  as a transformers CLIPTokenizer, plus a small random CLIPTextModel that the generator
  trains jointly. Its saved folder has the layout of a CLIP folder, so both kinds share
  tokenisation and loading code.
* `AutoTextEncoder.from_pretrained(local_dir)`: any other transformers text encoder on disk,
  frozen (BERT, MiniLM, MPNet...; a sentence-transformers folder is read through its
  modules.json): embeddings = every token's last hidden state, padding masked in the model.
* `load_text_encoder(spec_or_dir)`: a saved folder, a plain local CLIP or sentence-transformers /
  transformers folder, or "clip:DIR" / "scratch:DIR" / "auto:DIR".

Every prompt is padded (or truncated, with a warning) to `max_length`, so L is fixed and the
pipeline's learned null embedding has one shape. An empty prompt is an error, except as the
classifier-free "null" condition (`allow_empty=True`).
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn

from gendet_env import GendetWarning
from generation.files import plain_mode
from generation.sampling_options import text_problem

BOS, EOS, PAD = "<|startoftext|>", "<|endoftext|>", "<|pad|>"
SPECIALS = (PAD, BOS, EOS)
# CLIP's pre-tokeniser: contractions, letter runs, single digits, punctuation runs
CLIP_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
FORMAT = 2  # encoder.json "format": 2 = tokenizer saved as a transformers CLIPTokenizer
KINDS = ("scratch", "clip", "auto")


def check_prompts(prompts: Sequence[str], allow_empty: bool) -> list[str]:
    """Stripped prompts; an empty one is rejected here, before it silently becomes "no text"."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if len(prompts) == 0:
        raise ValueError("encode needs at least one prompt, got an empty list")
    out = []
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"prompt {i} is {type(p).__name__}, expected str")
        problem = text_problem(p)
        if problem:
            raise ValueError(f"prompt {i} is not valid text: {problem}")
        if not p.strip() and not allow_empty:
            raise ValueError(f"prompt {i} is empty: describe the image (an empty prompt is only "
                             "used internally as the classifier-free null condition)")
        out.append(p.strip())
    return out


class TextEncoder(nn.Module):
    """The shared interface. Subclasses hold `tokenizer` and `model` (transformers': a CLIPTokenizer
    and CLIPTextModel but in AutoTextEncoder) and set `max_length` (L) and `dim` (D)."""

    kind: str  # encoder.json's "kind": scratch, clip or auto
    max_length: int
    dim: int

    # VQ-Diffusion's way of reading CLIP (official code and diffusers): the text model runs
    # without an attention mask, the transformer attends to all L positions, padding included,
    # and every position's embedding is scaled to unit length. Off for our own encoders.
    normalize: bool = False
    attend_to_padding: bool = False

    def tokenize(self, prompts: Sequence[str], allow_empty: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids [B, L], mask [B, L] bool, True = real token), on the CPU: padded, or truncated
        with a warning, to max_length. The mask stays on the host, where reading it is free."""
        prompts = check_prompts(prompts, allow_empty)
        lengths = [len(x) for x in self.tokenizer(prompts, verbose=False)["input_ids"]]
        long = [(p, n) for p, n in zip(prompts, lengths) if n > self.max_length]
        if len(long) == 1:
            warnings.warn(f"prompt {long[0][0][:60]!r} has {long[0][1]} tokens; truncated to the model's "
                          f"{self.max_length}", GendetWarning, stacklevel=3)
        elif long:
            warnings.warn(f"{len(long)} of {len(prompts)} prompts are longer than the model's {self.max_length} "
                          f"tokens and were truncated, e.g. {long[0][0][:60]!r}", GendetWarning, stacklevel=3)
        enc = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        mask = enc["attention_mask"].bool()
        return enc["input_ids"], torch.ones_like(mask) if self.attend_to_padding else mask

    def encode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Embeddings [B, L, D] on the model's device for token ids from `tokenize`.

        The model gets no padding mask: a CLIP text model is causal and the padding comes last,
        so no real token can see it either way (real positions come out the same, to the bit),
        and building the mask would read it back from the GPU, a sync at every training step.
        The padding positions' embeddings are hidden by `tokenize`'s mask downstream."""
        device = next(self.model.parameters()).device
        with torch.set_grad_enabled(self.training and any(p.requires_grad for p in self.model.parameters())):
            emb = self.model(input_ids=ids.to(device, non_blocking=True)).last_hidden_state
        if self.normalize:
            emb = emb / emb.norm(dim=-1, keepdim=True)
        return emb

    def encode(self, prompts: Sequence[str], allow_empty: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(embeddings [B, L, D] on the model's device, mask [B, L] bool on the CPU)."""
        ids, mask = self.tokenize(prompts, allow_empty)
        return self.encode_ids(ids), mask

    def decode(self, prompt: str) -> str:
        """Tokenise and detokenise: the text the model actually reads (normalised, untruncated)."""
        ids = self.tokenizer(prompt, verbose=False)["input_ids"]
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _save(self, path: str | Path, meta: dict) -> Path:
        """Model + tokenizer + encoder.json, written to a temporary folder and moved in file by file."""
        path = Path(path)
        tmp = path.parent / f".{path.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.model.save_pretrained(tmp, safe_serialization=True)
        self.tokenizer.save_pretrained(tmp)
        (tmp / "encoder.json").write_text(json.dumps(meta | {"format": FORMAT}) + "\n")
        path.mkdir(parents=True, exist_ok=True)
        for f in tmp.iterdir():
            plain_mode(f)  # transformers writes weights through safetensors: 0600
            os.replace(f, path / f.name)
        tmp.rmdir()
        return path


def _load_clip_folder(path: str | Path, what: str):
    """(CLIPTokenizer, CLIPTextModel) from a local folder only, with errors that say what is wrong."""
    from transformers import CLIPTextModel, CLIPTokenizer

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what} folder {str(path)!r} does not exist; gendet loads text encoders "
                                "only from a local folder (download it yourself, then pass its path)")
    try:
        tok = CLIPTokenizer.from_pretrained(path, local_files_only=True)
        # computed in float32 whatever the file stores (a bundle may keep its weights in float16)
        model = CLIPTextModel.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"{path}: not a CLIP tokenizer + text model folder ({e})") from None
    return tok, model


def _clip_style_bpe(vocab_size: int):
    """An untrained `tokenizers` BPE with CLIP's normaliser (NFC, collapse spaces, lowercase) and
    pre-tokeniser (CLIP regex, then byte-level symbols), words ending in `</w>`."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CLIP_PATTERN), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[], end_of_word_suffix="</w>",
                                  show_progress=False)
    return tok, trainer


class ScratchTextEncoder(TextEncoder):
    """BPE tokenizer trained on the captions + a small random CLIPTextModel, trainable."""

    kind = "scratch"

    def __init__(self, tokenizer, model):
        super().__init__()
        self.tokenizer = tokenizer  # a transformers CLIPTokenizer
        self.model = model          # a transformers CLIPTextModel
        self.tokenizer.padding_side = "right"  # encode_ids relies on it (padding after the text)
        self.max_length = model.config.max_position_embeddings
        self.tokenizer.model_max_length = self.max_length
        self.dim = model.config.hidden_size

    @staticmethod
    def train_tokenizer(captions: Iterable[str], vocab_size: int = 1000, max_length: int = 77):
        """A CLIPTokenizer whose merges are learnt from `captions`. vocab_size is the BPE
        trainer's target (symbols seen + merges); all 2 x 256 byte symbols (bare and with
        `</w>`) are always in the vocabulary, so no text is ever unknown or silently dropped.

        Ids are canonical — byte symbols, merges in rank order, then pad/bos/eos — because the
        trainer numbers its vocabulary in hash-map order, which changes from process to
        process; so the same captions always give the same tokenizer (exact resume)."""
        from tokenizers import pre_tokenizers
        from transformers import CLIPTokenizer

        captions = [c for c in captions if c.strip()]
        if not captions:
            raise ValueError("train_tokenizer needs at least one non-empty caption")
        tok, trainer = _clip_style_bpe(vocab_size)
        tok.train_from_iterator(captions, trainer)
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
                  for m in json.loads(tok.to_str())["model"]["merges"]]
        alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
        order = alphabet + [a + "</w>" for a in alphabet]
        known = set(order)
        order += [t for t in dict.fromkeys("".join(m) for m in merges) if t not in known]
        order += [PAD, BOS, EOS]
        return CLIPTokenizer(vocab={t: i for i, t in enumerate(order)}, merges=merges, unk_token=EOS,
                             bos_token=BOS, eos_token=EOS, pad_token=PAD, model_max_length=max_length)

    @classmethod
    def train_new(cls, captions: Iterable[str], vocab_size: int = 1000, dim: int = 256, layers: int = 4,
                  heads: int = 4, max_length: int = 32) -> "ScratchTextEncoder":
        """Tokenizer trained on `captions`; model random (CLIPTextConfig sizes from the arguments)."""
        from transformers import CLIPTextConfig, CLIPTextModel

        tok = cls.train_tokenizer(captions, vocab_size, max_length)
        config = CLIPTextConfig(vocab_size=len(tok), hidden_size=dim, intermediate_size=4 * dim,
                                num_hidden_layers=layers, num_attention_heads=heads,
                                max_position_embeddings=max_length, pad_token_id=tok.pad_token_id,
                                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
        return cls(tok, CLIPTextModel(config))

    def save_pretrained(self, path: str | Path) -> Path:
        return self._save(path, {"kind": self.kind})

    @classmethod
    def from_pretrained(cls, path: str | Path, device=None) -> "ScratchTextEncoder":
        path = Path(path)
        meta = path / "encoder.json"
        if meta.is_file() and json.loads(meta.read_text()).get("format") != FORMAT:
            raise ValueError(f"{meta}: an older scratch text encoder format (raw tokenizers file); "
                             "retrain it with this version of gendet")
        tok, model = _load_clip_folder(path, "scratch text encoder")
        return cls(tok, model).to(device or "cpu")


class ClipTextEncoder(TextEncoder):
    """A pretrained CLIP text tower from a local folder, frozen (as in VQ-Diffusion)."""

    kind = "clip"

    def __init__(self, tokenizer, model, source: str, normalize: bool = False, attend_to_padding: bool = False):
        super().__init__()
        self.tokenizer, self.model, self.source = tokenizer, model, source
        self.tokenizer.padding_side = "right"  # CLIP's own; encode_ids relies on it
        self.normalize, self.attend_to_padding = bool(normalize), bool(attend_to_padding)
        self.max_length = min(tokenizer.model_max_length, model.config.max_position_embeddings)
        self.dim = model.config.hidden_size
        self.model.requires_grad_(False)

    @classmethod
    def from_pretrained(cls, path: str | Path, device=None, normalize: bool | None = None,
                        attend_to_padding: bool | None = None) -> "ClipTextEncoder":
        """A CLIP folder; a folder we saved also restores how it is read (encoder.json)."""
        tok, model = _load_clip_folder(path, "CLIP text encoder")
        meta_path = Path(path) / "encoder.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        normalize = meta.get("normalize", False) if normalize is None else normalize
        attend = meta.get("attend_to_padding", False) if attend_to_padding is None else attend_to_padding
        return cls(tok, model.eval(), meta.get("source", str(path)), normalize, attend).to(device or "cpu")

    def train(self, mode: bool = True):
        return super().train(False)  # frozen: always eval (no dropout)

    def save_pretrained(self, path: str | Path) -> Path:
        return self._save(path, {"kind": self.kind, "source": self.source, "normalize": self.normalize,
                                 "attend_to_padding": self.attend_to_padding})


class AutoTextEncoder(TextEncoder):
    """Any other local transformers text encoder, frozen: BERT, MiniLM, MPNet, RoBERTa..., such as
    a sentence-transformers folder (its Transformer module; the pooling is not used, as the
    denoiser attends to every token). These read both ways, so unlike CLIP's causal model the
    padding must be masked inside the model, or it would change the real tokens' states."""

    kind = "auto"

    def __init__(self, tokenizer, model, source: str, max_length: int):
        super().__init__()
        if tokenizer.pad_token_id is None:
            raise ValueError(f"{source}: the tokenizer has no padding token (every prompt is padded to one length)")
        if getattr(model.config, "is_encoder_decoder", False):
            raise ValueError(f"{source}: an encoder-decoder model ({model.config.model_type}); give a text "
                             "encoder (BERT-like) or a CLIP folder")
        self.tokenizer, self.model, self.source = tokenizer, model, source
        self.tokenizer.padding_side = "right"
        self.max_length = int(max_length)
        self.tokenizer.model_max_length = self.max_length
        self.dim = model.config.hidden_size
        self.model.requires_grad_(False)

    @classmethod
    def from_pretrained(cls, path: str | Path, device=None, max_length: int | None = None) -> "AutoTextEncoder":
        """L is `max_length`, else a folder we saved keeps its own, else the shortest of the model's
        positions, the tokenizer's and sentence-transformers' limits, and CLIP's 77 (prompts here
        are short; every extra position costs cross-attention at every step)."""
        from transformers import AutoModel, AutoTokenizer

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"text encoder folder {str(path)!r} does not exist; gendet loads text encoders "
                                    "only from a local folder (download it yourself, then pass its path)")
        folder = _transformer_folder(path)
        meta = _read_json(path / "encoder.json") or {}
        try:
            tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            # float32 whatever the file stores; never trust_remote_code: only transformers' own classes
            model = AutoModel.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise ValueError(f"{folder}: not a transformers tokenizer + text model folder ({e})") from None
        limits = [getattr(model.config, "max_position_embeddings", 77), tok.model_max_length, 77,
                  (_read_json(folder / "sentence_bert_config.json") or {}).get("max_seq_length", 77)]
        length = max_length or meta.get("max_length") or min(int(x) for x in limits)
        return cls(tok, model.eval(), meta.get("source", str(path)), length).to(device or "cpu")

    def encode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Embeddings [B, L, D]; the padding mask is made on the model's device (nothing read back)."""
        device = next(self.model.parameters()).device
        ids = ids.to(device, non_blocking=True)
        with torch.no_grad():
            mask = (ids != self.tokenizer.pad_token_id).long()
            return self.model(input_ids=ids, attention_mask=mask).last_hidden_state

    def train(self, mode: bool = True):
        return super().train(False)  # frozen: always eval (no dropout)

    def save_pretrained(self, path: str | Path) -> Path:
        return self._save(path, {"kind": self.kind, "source": self.source, "max_length": self.max_length})


def _read_json(path: Path) -> dict | list | None:
    """A JSON file's content, None when there is no such file; bad JSON is an error naming the file."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e.msg})") from None


def _transformer_folder(path: Path) -> Path:
    """Where the transformers model is: the folder itself, or in a sentence-transformers folder its
    Transformer module's path from modules.json ("" in recent ones, "0_Transformer" in older ones)."""
    modules = _read_json(path / "modules.json")
    if modules is None:
        return path
    for module in modules if isinstance(modules, list) else []:
        if isinstance(module, dict) and str(module.get("type", "")).endswith("models.Transformer"):
            return path / str(module.get("path", ""))
    raise ValueError(f"{path / 'modules.json'}: no sentence_transformers.models.Transformer module to read the "
                     "text model from")


def _folder_kind(path: Path) -> str:
    """A plain folder's kind: a sentence-transformers or other transformers text model is "auto",
    CLIP (and anything unreadable, for CLIP's own errors) "clip"."""
    if (path / "modules.json").is_file():
        return "auto"
    config = _read_json(path / "config.json") if path.is_dir() else None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    return "auto" if model_type and model_type not in ("clip", "clip_text_model") else "clip"


def load_text_encoder(spec: str | Path, device=None) -> TextEncoder:
    """A saved encoder folder (its encoder.json says which kind), a plain local CLIP or other
    transformers folder (a sentence-transformers one included), or "clip:DIR" / "scratch:DIR" /
    "auto:DIR"."""
    spec = str(spec)
    kind, _, rest = spec.partition(":")
    if kind in KINDS and rest:
        path = Path(rest)
    else:
        path = Path(spec)
        kind = (_read_json(path / "encoder.json") or {}).get("kind") or _folder_kind(path)
    if kind == "scratch":
        return ScratchTextEncoder.from_pretrained(path, device)
    if kind == "clip":
        return ClipTextEncoder.from_pretrained(path, device)
    if kind == "auto":
        return AutoTextEncoder.from_pretrained(path, device)
    raise ValueError(f"{path / 'encoder.json'}: unknown text encoder kind {kind!r} (expected {', '.join(KINDS)})")
