"""Input embeddings chosen by `model.embedding`. Each maps ids [B, T] to vectors [B, T, d].

A frozen kind keeps its matrix in a buffer: it gets no gradient and no optimizer state. A kind
whose matrix needs more than the config (glyph: the tokenizer's token texts and font files) builds
it outside the model: `frozen_matrix(cfg, tokenizer)`, called by whoever builds a model to train,
is handed to `Transformer(cfg, embedding_matrix=...)`; without it the buffer starts as zeros of
the right shape, for a checkpoint's saved matrix to replace. The model itself touches no files.
"""
from __future__ import annotations

import torch
from torch import nn

from ..registry import Registry

# kind -> constructor(model_cfg, matrix [vocab, d] or None) -> nn.Module with a `.weight` [vocab, d];
# a constructor with a `matrix_for(model_cfg, tokenizer)` attribute needs its matrix from outside.
EMBEDDINGS = Registry("model.embedding")


def make_embedding(cfg, matrix: torch.Tensor | None = None) -> nn.Module:
    module = EMBEDDINGS.get(cfg.embedding)(cfg, matrix)
    if tuple(module.weight.shape) != (cfg.vocab_size, cfg.d_model):
        raise ValueError(f"model.embedding {cfg.embedding!r}: matrix of shape {tuple(module.weight.shape)}, "
                         f"expected (vocab_size, d_model) = ({cfg.vocab_size}, {cfg.d_model})")
    return module


def frozen_matrix(cfg, tokenizer) -> torch.Tensor | None:
    """The matrix `cfg.embedding` needs from outside the model (cached on disk where it is costly
    to build), or None when the model can make its embedding from the config alone."""
    build = getattr(EMBEDDINGS.get(cfg.embedding), "matrix_for", None)
    return None if build is None else build(cfg, tokenizer)


from . import codes, glyph, trainable  # noqa: E402,F401  register their kinds
