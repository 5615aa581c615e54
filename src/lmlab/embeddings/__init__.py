"""Input embeddings chosen by `model.embedding`. Each maps ids [B, T] to vectors [B, T, d].

A frozen kind registers its matrix as a buffer: it gets no gradient and no optimizer state.
Other modules register more kinds (glyph, binary, gaussian) in EMBEDDINGS.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from .trainable import TrainableEmbedding

# kind -> constructor(model_cfg, tokenizer or None) -> nn.Module with a `.weight` [vocab, d]
EMBEDDINGS: dict[str, Callable] = {
    "trainable": lambda cfg, tokenizer: TrainableEmbedding(cfg.vocab_size, cfg.d_model),
}


def _ensure_plugins() -> None:
    import importlib

    for name in ("glyph", "codes"):
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise


def make_embedding(cfg, tokenizer=None) -> nn.Module:
    _ensure_plugins()
    if cfg.embedding not in EMBEDDINGS:
        raise ValueError(f"unknown model.embedding {cfg.embedding!r}; valid: {', '.join(sorted(EMBEDDINGS))}")
    return EMBEDDINGS[cfg.embedding](cfg, tokenizer)
