"""Frozen glyph embedding (PAPERS.md section 1): a token's vector is a picture of its text.

render RxR bits (render.py) -> reorder them centre-out ("polar snake") -> PCA over the whole
vocabulary (centre, rotate; keep the top d_model components when d_model < R*R, pad with zero
columns when d_model > R*R) -> L2-normalise each row -> a frozen buffer.

PCA makes the pixel order irrelevant (a permutation of the input columns is an orthogonal map, so
the component scores are unchanged); the order is kept for fidelity and for `pca=False` use.

The matrix is cached under <cache>/glyph/<key>.npy, the key hashing every token's text, the font
chain (file names and sizes), R, augmentation and d_model, so a rebuild happens only when one of
them changes.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from .. import jsonio
from ..errors import LmlabError
from . import EMBEDDINGS
from .frozen import FrozenEmbedding, l2_normalise
from .render import RENDERER_VERSION, GlyphRenderer, default_font_chain

CACHE_VERSION = "glyph-matrix-v1"


def polar_snake_order(size: int) -> np.ndarray:
    """Row-major pixel indices ordered centre-out: by ring (rounded distance from the centre),
    within a ring by angle, the direction alternating ring by ring (a snake)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    c = (size - 1) / 2.0
    dy, dx = ys - c, xs - c
    ring = np.floor(np.hypot(dy, dx)).astype(np.int64).ravel()
    angle = np.arctan2(dy, dx).ravel()
    angle = np.where(ring % 2 == 0, angle, -angle)
    return np.lexsort((np.arange(size * size), angle, ring))


def pca_scores(bits: np.ndarray, d_model: int) -> np.ndarray:
    """Centred principal-component scores [N, d_model] of binary rows [N, P].

    X^T X of 0/1 data is exact in float32 (integer sums below 2^24), the covariance and its
    eigendecomposition run in float64, and each component's sign is fixed (largest loading
    positive), so the result is deterministic."""
    n, p = bits.shape
    x = torch.from_numpy(bits.astype(np.float32))
    gram = (x.T @ x).double()
    mean = x.double().mean(0)
    cov = gram / n - torch.outer(mean, mean)
    evals, evecs = torch.linalg.eigh(cov)
    k = min(d_model, p)
    comps = evecs[:, torch.argsort(evals, descending=True)[:k]]
    pivot = comps.abs().argmax(0)
    comps = comps * torch.sign(comps[pivot, torch.arange(k)])[None, :]
    scores = (x - mean.float()) @ comps.float()
    if d_model > k:
        scores = torch.cat([scores, torch.zeros(n, d_model - k)], dim=1)
    return scores.numpy()


def glyph_matrix_from_bits(bits: np.ndarray, d_model: int, size: int, pca: bool = True) -> torch.Tensor:
    ordered = bits[:, polar_snake_order(size)]
    if pca:
        m = torch.from_numpy(pca_scores(ordered, d_model))
    else:  # raw +-1 pixels, truncated or zero-padded to d_model
        raw = torch.from_numpy(ordered.astype(np.float32) * 2 - 1)[:, :d_model]
        m = torch.cat([raw, torch.zeros(len(raw), d_model - raw.shape[1])], dim=1)
    return l2_normalise(m)


def token_texts(tokenizer, vocab_size: int) -> list[str]:
    """What is drawn for each id; ids beyond the tokenizer (padded vocabularies) get a hex box."""
    n = tokenizer.vocab_size
    return [tokenizer.token_text(i) if i < n else "" for i in range(vocab_size)]


def _cache_dir() -> Path:
    from ..data.corpora import cache_root

    return cache_root() / "glyph"


def cache_key(texts: list[str], renderer: GlyphRenderer, d_model: int) -> str:
    h = hashlib.sha256(f"{CACHE_VERSION}|{renderer.identity()}|{d_model}|{len(texts)}".encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()[:24]


def build_glyph_matrix(texts: list[str], d_model: int, size: int = 32, fonts: list[str] | None = None,
                       augment: float = 0.0, use_cache: bool = True) -> tuple[torch.Tensor, dict]:
    """The frozen glyph matrix [len(texts), d_model] and a coverage report (cached on disk)."""
    renderer = GlyphRenderer(size=size, fonts=fonts, augment=augment)
    key = cache_key(texts, renderer, d_model)
    folder = _cache_dir()
    path, meta = folder / f"{key}.npy", folder / f"{key}.json"
    if use_cache and path.is_file() and meta.is_file():
        return torch.from_numpy(np.load(path)), json.loads(meta.read_text())
    bits, coverage = renderer.bits(texts)
    matrix = glyph_matrix_from_bits(bits, d_model, size)
    report = {**coverage.as_dict(), "fonts": [Path(p).name for p in renderer.font_paths], "renderer": RENDERER_VERSION,
              "size": size,
              "augment": augment, "d_model": d_model}
    if use_cache:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npy.tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, matrix.numpy())
        os.replace(tmp, path)
        meta.write_text(jsonio.dumps(report, ensure_ascii=False))
    return matrix, report


def font_chain(cfg) -> list[str]:
    """`model.glyph_font` (files joined by os.pathsep) followed by the default fonts."""
    extra = [f for f in getattr(cfg, "glyph_font", "").split(os.pathsep) if f]
    for f in extra:
        if not Path(f).expanduser().is_file():
            raise LmlabError(f"model.glyph_font: font file {f!r} does not exist")
    return default_font_chain(extra)


def glyph_matrix(cfg, tokenizer) -> tuple[torch.Tensor, dict]:
    """The glyph matrix [cfg.vocab_size, d_model] of a tokenizer's vocabulary and its coverage report."""
    return build_glyph_matrix(token_texts(tokenizer, cfg.vocab_size), cfg.d_model, getattr(cfg, "glyph_size", 32),
                              font_chain(cfg), getattr(cfg, "glyph_augment", 0.0))


@EMBEDDINGS.register("glyph")
class GlyphEmbedding(FrozenEmbedding):
    """Frozen glyph vectors, rendered outside the model (`matrix_for`, i.e. embeddings.frozen_matrix).
    Without a matrix the buffer is zeros of the right shape, for a checkpoint's saved one to replace."""

    def __init__(self, cfg, matrix: torch.Tensor | None = None):
        super().__init__(torch.zeros(cfg.vocab_size, cfg.d_model) if matrix is None else matrix)

    @staticmethod
    def matrix_for(cfg, tokenizer) -> torch.Tensor:
        return glyph_matrix(cfg, tokenizer)[0]
