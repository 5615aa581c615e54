"""What a frozen glyph embedding gives the model, as a picture: a PNG sheet of rendered tokens and,
for a few query tokens, their nearest neighbours by cosine similarity in glyph-embedding space
(the d_model-dimensional PCA vectors). `lmlab glyphs` and the frozen-glyph experiment draw it."""
from __future__ import annotations

import math

from ..errors import LmlabError

DEFAULT_QUERIES = ["a", "e", "o", "1", "the", "ing"]


def neighbours(matrix, token_id: int, k: int) -> list[tuple[int, float]]:
    """The k rows nearest to a row by cosine similarity (rows are unit length), itself excluded."""
    import torch

    sims = matrix @ matrix[token_id]
    sims[token_id] = -math.inf
    top = torch.topk(sims, min(k, len(matrix) - 1))
    return [(int(i), float(s)) for s, i in zip(top.values, top.indices)]


def label(text: str) -> str:
    """ASCII-safe label (matplotlib's fonts lack most scripts)."""
    return ascii(text)[1:-1][:10]


def write_sheet(path, renderer, sheet_texts: list[str], rows: list[tuple[str, list[tuple[str, float]]]]) -> None:
    """Draw `sheet_texts` in a grid, then one row per query: the query and its neighbours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 16
    k = max((len(n) for _, n in rows), default=0)
    cols = max(cols, k + 1)
    sheet_rows = math.ceil(len(sheet_texts) / cols)
    n_rows = sheet_rows + len(rows)
    fig, axes = plt.subplots(n_rows, cols, figsize=(cols * 0.75, n_rows * 0.9), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, text in enumerate(sheet_texts):
        ax = axes[i // cols][i % cols]
        grey, _ = renderer.draw(text)
        ax.imshow(grey >= 128, cmap="gray_r", interpolation="nearest")
        ax.set_title(label(text), fontsize=6)
    for r, (query, found) in enumerate(rows):
        row = axes[sheet_rows + r]
        for c, (text, sim) in enumerate([(query, None)] + found):
            grey, _ = renderer.draw(text)
            row[c].imshow(grey >= 128, cmap="Blues" if sim is None else "gray_r", interpolation="nearest")
            row[c].set_title(f"q {label(text)}" if sim is None else f"{label(text)} {sim:.2f}", fontsize=6)
    fig.suptitle("rendered tokens; then per row: query (blue) and nearest neighbours (cosine)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def glyph_sheet(tok, model_cfg, path, queries: list[str] = (), k: int = 8, count: int = 128, start: int = 0,
                matrix=None) -> dict:
    """Write the sheet of `count` text tokens from id `start` (0: the first text token) and the k
    neighbours of each query (default: DEFAULT_QUERIES the vocabulary has) to `path`; returns the
    font coverage and the neighbours. `matrix` (e.g. a checkpoint's) replaces the rendered one
    for the neighbours."""
    from .glyph import build_glyph_matrix, font_chain, token_texts
    from .render import GlyphRenderer

    m = model_cfg
    fonts = font_chain(m)
    texts = token_texts(tok, tok.vocab_size)
    rendered, report = build_glyph_matrix(texts, m.d_model, m.glyph_size, fonts, m.glyph_augment)
    if matrix is not None:
        report = {**report, "matrix": "from the checkpoint"}
    matrix = rendered if matrix is None else matrix[: tok.vocab_size].float()
    renderer = GlyphRenderer(size=m.glyph_size, fonts=fonts, augment=m.glyph_augment)
    text_ids = [i for i, t in enumerate(texts) if t and not (t.startswith("<") and t.endswith(">") and len(t) > 2)]
    start = start or (text_ids[0] if text_ids else 0)
    sheet = [texts[i] for i in text_ids if i >= start][:count]
    rows = []
    for q in queries or [q for q in DEFAULT_QUERIES if q in texts]:
        ids = tok.encode(q)
        if len(ids) != 1:
            raise LmlabError(f"--query {q!r} is {len(ids)} tokens, not one; pick a single token")
        rows.append((q, [(texts[i], s) for i, s in neighbours(matrix.clone(), ids[0], k)]))
    write_sheet(path, renderer, sheet, rows)
    return {"coverage": report, "neighbours": {q: [[t, round(s, 3)] for t, s in found] for q, found in rows}}
