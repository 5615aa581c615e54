"""`lmlab glyphs`: see what a frozen glyph embedding gives the model.

Writes a PNG sheet of rendered tokens and the nearest neighbours of a few query tokens
(embeddings/sheet.py), and prints the font coverage. The tokenizer comes from a run (--run), or is
built from a config's corpus.
"""
from __future__ import annotations

from ..errors import LmlabError
from .common import COUNT, NONNEG_INT, add_config_args, output_file, print_json, run_path


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


def run(args) -> int:
    from ..embeddings.sheet import glyph_sheet

    if args.k < 1 or args.count < 0:
        raise LmlabError("--k must be at least 1 and --count at least 0")
    tok, cfg = _tokenizer_and_cfg(args)
    matrix = None
    if args.run and cfg.model.embedding == "glyph":  # neighbours in the exact matrix the run trained with
        from ..checkpoint import load_tensors, read_state, resolve

        ckpt = resolve(args.run)
        matrix = load_tensors(ckpt, read_state(ckpt))["embed.weight"]
    found = glyph_sheet(tok, cfg.model, args.out, args.query, args.k, args.count, args.start, matrix)
    print_json({"out": str(args.out), "tokenizer": {"kind": tok.kind, "vocab_size": tok.vocab_size}, **found})
    return 0
