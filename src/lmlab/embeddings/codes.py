"""Control embeddings from the follow-up work: frozen codes that carry no visual content.

- binary: each token gets a distinct random n-bit code (n = ceil(log2 vocab)): the bits of a
  random permutation of its id, as +-1, repeated across d_model. Asks "does glyph content
  matter, or only that each token has a fixed, distinct vector?"
- gaussian: i.i.d. N(0, 1) vectors.
Rows are L2-normalised like the glyph matrix, so all frozen kinds have the same scale. The seed
is fixed (CODE_SEED), so a code depends only on vocabulary size and d_model.
"""
from __future__ import annotations

import math

import torch

from . import EMBEDDINGS
from .frozen import FrozenEmbedding, l2_normalise

CODE_SEED = 0


def binary_codes(vocab_size: int, d_model: int, seed: int = CODE_SEED) -> torch.Tensor:
    n_bits = max(1, math.ceil(math.log2(max(vocab_size, 2))))
    g = torch.Generator().manual_seed(seed)
    codes = torch.randperm(vocab_size, generator=g)
    bits = (codes[:, None] >> torch.arange(n_bits)) & 1
    signs = (2 * bits - 1).to(torch.float32)
    tiled = signs.repeat(1, math.ceil(d_model / n_bits))[:, :d_model]
    return l2_normalise(tiled)


def gaussian_codes(vocab_size: int, d_model: int, seed: int = CODE_SEED) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return l2_normalise(torch.randn(vocab_size, d_model, generator=g))


def _frozen(codes):
    # a matrix handed in (e.g. zeros before a checkpoint's buffer is loaded) is used as given
    return lambda cfg, matrix=None: FrozenEmbedding(codes(cfg.vocab_size, cfg.d_model) if matrix is None else matrix)


EMBEDDINGS.register("binary", _frozen(binary_codes))
EMBEDDINGS.register("gaussian", _frozen(gaussian_codes))
