"""Tokenise a corpus once into a memory-mapped cache keyed by corpus content and tokenizer.

Documents are joined with the tokenizer's end-of-text id. The split is deterministic: the last
`val_fraction` of the token stream is validation, the rest is training.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import LmlabError
from .corpora import Document, cache_root


def tokenizer_fingerprint(tokenizer) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save(tmp)
        h = hashlib.sha256()
        for p in sorted(Path(tmp).rglob("*")):
            if p.is_file():
                h.update(p.name.encode())
                h.update(p.read_bytes())
    return h.hexdigest()


def corpus_fingerprint(docs: list[Document]) -> str:
    h = hashlib.sha256()
    for d in docs:
        h.update(d.name.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
        h.update(d.text.encode("utf-8", "surrogatepass"))
        h.update(b"\1")
    return h.hexdigest()


def encode_documents(docs: list[Document], tokenizer) -> np.ndarray:
    encode = getattr(tokenizer, "encode_array", None) or (lambda t: np.asarray(tokenizer.encode(t), dtype=np.int64))
    pieces = []
    eot = np.array([tokenizer.eot_id], dtype=np.int64)
    for i, d in enumerate(docs):
        pieces.append(np.asarray(encode(d.text), dtype=np.int64))
        if i < len(docs) - 1:
            pieces.append(eot)
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)


def token_dtype(vocab_size: int):
    return np.uint16 if vocab_size <= 65536 else np.uint32


def cached_tokens(docs: list[Document], tokenizer, cache_dir: str = "") -> np.ndarray:
    """All tokens of the corpus as a read-only memmap (built on first use, atomically)."""
    key = hashlib.sha256((corpus_fingerprint(docs) + tokenizer_fingerprint(tokenizer)).encode()).hexdigest()[:32]
    folder = cache_root(cache_dir) / "tokens"
    folder.mkdir(parents=True, exist_ok=True)
    path, meta_path = folder / f"{key}.bin", folder / f"{key}.json"
    dtype = token_dtype(tokenizer.vocab_size)
    if not (path.is_file() and meta_path.is_file()):
        ids = encode_documents(docs, tokenizer).astype(dtype)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(ids.tobytes())
        os.replace(tmp, path)
        meta_path.write_text(json.dumps({"n": int(ids.size), "dtype": np.dtype(dtype).name}))
    n = json.loads(meta_path.read_text())["n"]
    if n == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(n,))


def split(ids: np.ndarray, val_fraction: float, min_len: int) -> tuple[np.ndarray, np.ndarray]:
    n_val = int(len(ids) * val_fraction)
    train, val = ids[: len(ids) - n_val], ids[len(ids) - n_val:]
    if len(train) < min_len or (val_fraction > 0 and len(val) < min_len):
        raise LmlabError(
            f"corpus too small: {len(ids)} tokens give {len(train)} train / {len(val)} validation tokens, "
            f"each split needs at least context+1 = {min_len}"
        )
    return train, val


def token_splits(cfg, tokenizer, docs: list[Document] | None = None):
    from .corpora import read_corpus

    if cfg.data.task:  # a task directory: its train / validation examples, answers marked
        from .task_tokens import task_splits

        return task_splits(cfg, tokenizer)
    docs = docs if docs is not None else read_corpus(cfg.data.corpus, cfg.data.text_field, cfg.data.cache_dir)
    ids = cached_tokens(docs, tokenizer, cfg.data.cache_dir)
    return split(ids, cfg.data.val_fraction, cfg.model.context + 1)
