"""`lmlab glyphs`: see what a frozen glyph embedding gives the model.

Writes a PNG sheet of rendered tokens and, for a few query tokens, their nearest neighbours by
cosine similarity in glyph-embedding space (the d_model-dimensional PCA vectors), and prints the
font coverage. The tokenizer comes from a run (--run), or is built from a config's corpus.
"""
from __future__ import annotations

import math

from ..errors import LmlabError
from .common import COUNT, NONNEG_INT, add_config_args, output_file, print_json, run_path

DEFAULT_QUERIES = ["a", "e", "o", "1", "the", "ing"]


def register(sub) -> None:
    p = sub.add_parser("glyphs", help="PNG sheet of glyph-rendered tokens and their nearest neighbours")
    add_config_args(p)
    p.add_argument("--run", type=run_path, help="take tokenizer and model settings from this run or checkpoint")
    p.add_argument("-o", "--out", default="glyphs.png", type=output_file, help="PNG to write (default glyphs.png)")
    p.add_argument("--query", action="append", default=[], metavar="TOKEN",
                   help="token text whose neighbours to show (repeatable; default a few common ones)")
    p.add_argument("--k", type=COUNT, default=8, help="neighbours per query (default 8)")
    p.add_argument("--count", type=NONNEG_INT, default=128, help="tokens on the sheet (default 128)")
    p.add_argument("--start", type=NONNEG_INT, default=0, help="first token id on the sheet (default: first text token)")
    p.set_defaults(func=run)


def _tokenizer_and_cfg(args):
    from .. import config, tokenizers

    if args.run:
        from ..checkpoint import read_state, resolve

        ckpt = resolve(args.run)
        cfg = config.from_dict(read_state(ckpt)["config"])
        config.apply_overrides(cfg, args.overrides)
        return tokenizers.load(ckpt / "tokenizer"), cfg
    cfg = config.load(args.config, args.overrides)
    if not args.config and not any(o.startswith("tokenizer.kind") for o in args.overrides):
        cfg.tokenizer.kind = "unicode"

    def corpus_text():
        from ..data.corpora import read_corpus

        return "".join(d.text for d in read_corpus(cfg.data.corpus, cfg.data.text_field, cfg.data.cache_dir))

    return tokenizers.build(cfg.tokenizer, corpus_text), cfg


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


def run(args) -> int:
    import os

    from ..embeddings.glyph import build_glyph_matrix, token_texts
    from ..embeddings.render import GlyphRenderer, default_font_chain

    if args.k < 1 or args.count < 0:
        raise LmlabError("--k must be at least 1 and --count at least 0")
    tok, cfg = _tokenizer_and_cfg(args)
    m = cfg.model
    fonts = default_font_chain([f for f in m.glyph_font.split(os.pathsep) if f])
    texts = token_texts(tok, tok.vocab_size)
    matrix, report = build_glyph_matrix(texts, m.d_model, m.glyph_size, fonts, m.glyph_augment)
    if args.run and m.embedding == "glyph":  # neighbours in the exact matrix the run trained with
        from safetensors.torch import load_file

        from ..checkpoint import resolve

        matrix = load_file(resolve(args.run) / "model.safetensors")["embed.weight"][: tok.vocab_size].float()
        report = {**report, "matrix": "from the checkpoint"}
    renderer = GlyphRenderer(size=m.glyph_size, fonts=fonts, augment=m.glyph_augment)
    text_ids = [i for i, t in enumerate(texts) if t and not (t.startswith("<") and t.endswith(">") and len(t) > 2)]
    start = args.start or (text_ids[0] if text_ids else 0)
    sheet = [texts[i] for i in text_ids if i >= start][: args.count]
    rows = []
    for q in args.query or [q for q in DEFAULT_QUERIES if q in texts]:
        ids = tok.encode(q)
        if len(ids) != 1:
            raise LmlabError(f"--query {q!r} is {len(ids)} tokens, not one; pick a single token")
        rows.append((q, [(texts[i], s) for i, s in neighbours(matrix.clone(), ids[0], args.k)]))
    write_sheet(args.out, renderer, sheet, rows)
    print_json({"out": str(args.out), "tokenizer": {"kind": tok.kind, "vocab_size": tok.vocab_size},
                "coverage": report,
                "neighbours": {q: [[t, round(s, 3)] for t, s in found] for q, found in rows}})
    return 0
