"""Training a tokenizer of any kind on a text, and measuring one on a text (bytes per token,
tokens per word, vocabulary use, superword share, encode speed). `lmlab tokenizer train/stats` and
the SuperBPE experiment both go through these."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..errors import LmlabError
from .base import Tokenizer


def train_tokenizer(kind: str, text: str, vocab: int = 0, transition: int = 0, progress: bool = False) -> Tokenizer:
    """Train any registered kind (vocab 0: the kind's default); bpe and superbpe can show progress bars."""
    from . import REGISTRY, bpe, needs_corpus, superbpe
    from ..config import TokenizerConfig

    trainer, _ = REGISTRY.get(kind)
    if transition and kind != "superbpe":
        raise LmlabError("--transition only applies to --kind superbpe")
    if kind == "bpe":
        return bpe.train(text, vocab or bpe.DEFAULT_VOCAB, show_progress=progress)
    if kind == "superbpe":
        return superbpe.train(text, vocab or superbpe.DEFAULT_VOCAB, transition or None, show_progress=progress)
    if needs_corpus(kind) and not text:
        raise LmlabError(f"cannot train a {kind} tokenizer on an empty corpus")
    return trainer(text, TokenizerConfig(kind=kind, vocab_size=vocab, transition=transition))


def train_and_save(kind: str, text: str, out: str | Path, vocab: int = 0, transition: int = 0,
                   progress: bool = False) -> tuple[Tokenizer, float]:
    """Train (see train_tokenizer) and save to `out`; returns the tokenizer and the training seconds."""
    t0 = time.perf_counter()
    tok = train_tokenizer(kind, text, vocab, transition, progress)
    seconds = time.perf_counter() - t0
    tok.save(out)
    return tok, seconds


def utf8_bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def superword_mask(tok) -> np.ndarray | None:
    """Boolean per id: does the token span two or more words (None if the kind cannot say)."""
    if not hasattr(tok, "token_bytes"):
        return None
    from .superbpe_trainer import n_words

    return np.array([n_words(tok.token_bytes(i)) >= 2 for i in range(tok.vocab_size)])


def bytes_per_token(tok, text: str) -> float:
    return utf8_bytes(text) / max(len(tok.encode(text)), 1)


def superword_share(tok, text: str) -> float:
    """Fraction of the tokens of `text` that span two or more words (0 for an empty text)."""
    ids = tok.encode(text)
    return float(superword_mask(tok)[ids].mean()) if ids else 0.0


def text_stats(tok, text: str) -> dict:
    """What `lmlab tokenizer stats` prints for one file."""
    t0 = time.perf_counter()
    ids = np.asarray(tok.encode(text), dtype=np.int64)
    seconds = time.perf_counter() - t0
    nbytes = utf8_bytes(text)
    words = len(text.split())
    used = np.unique(ids).size if ids.size else 0
    out = {
        "bytes": nbytes, "tokens": int(ids.size), "words": words,
        "bytes_per_token": nbytes / max(ids.size, 1),
        "tokens_per_word": ids.size / max(words, 1),
        "vocab_used": int(used), "vocab_used_frac": used / tok.vocab_size,
        "encode_mb_per_s": nbytes / 1e6 / max(seconds, 1e-9),
    }
    mask = superword_mask(tok)
    if mask is not None and ids.size:
        out["superword_token_frac"] = float(mask[ids].mean())
    return out
