"""`lmlab tokenize RUN_OR_TOKENIZER [--decode]`: stdin text -> ids (space-separated), or back."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import LmlabError
from .common import add_run_args


def register(sub) -> None:
    p = sub.add_parser("tokenize", help="text on stdin to token ids on stdout, or back with --decode")
    add_run_args(p, device=False, metavar="RUN_OR_TOKENIZER", help="a run, a checkpoint or a tokenizer directory")
    p.add_argument("--decode", action="store_true", help="read ids, write text")
    p.set_defaults(func=run)


def find_tokenizer(source: str):
    from .. import tokenizers
    from ..checkpoint import resolve

    p = Path(source)
    if (p / "lmlab_tokenizer.json").is_file():
        return tokenizers.load(p)
    return tokenizers.load(resolve(p) / "tokenizer")


def run(args) -> int:
    from .common import read_stdin_text

    tok = find_tokenizer(args.run)
    if args.decode:
        try:
            ids = [int(x) for x in sys.stdin.read().split()]
        except ValueError:
            raise LmlabError("--decode reads whitespace-separated integer ids") from None
        bad = [i for i in ids if not 0 <= i < tok.vocab_size]
        if bad:
            raise LmlabError(f"id {bad[0]} is outside the vocabulary (0..{tok.vocab_size - 1})")
        sys.stdout.write(tok.decode(ids))
    else:
        print(" ".join(map(str, tok.encode(read_stdin_text()))))
    return 0
