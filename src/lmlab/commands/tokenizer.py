"""`lmlab tokenizer train ...` (train any tokenizer kind on corpora) and `lmlab tokenizer stats ...`."""
from __future__ import annotations

import sys
import time

import numpy as np

from ..errors import LmlabError
from .common import NONNEG_INT, existing, output_dir, run_path


def register(sub) -> None:
    p = sub.add_parser("tokenizer", help="train a tokenizer on corpora, or measure one on files")
    verbs = p.add_subparsers(dest="tokenizer_verb", metavar="{train,stats}")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    t = verbs.add_parser("train", help="train a tokenizer and save it to a directory")
    t.add_argument("corpora", nargs="+", metavar="CORPUS",
                   help="files, directories, .jsonl files or corpus names (shakespeare, english-prose, ...)")
    t.add_argument("--kind", default="bpe", help="tokenizer kind: bpe, superbpe, unicode, char, byte, ...")
    t.add_argument("--vocab", type=NONNEG_INT, default=0, help="vocabulary size (0 = the kind's default)")
    t.add_argument("--transition", type=NONNEG_INT, default=0,
                   help="superbpe: vocabulary size where stage 2 (superwords) starts (0 = half of --vocab)")
    t.add_argument("--text-field", default="text", help="JSONL field holding the text")
    t.add_argument("-o", "--out", required=True, metavar="DIR", type=output_dir, help="directory to write the tokenizer to")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    t.set_defaults(func=run_train)

    s = verbs.add_parser("stats", help="bytes per token, tokens per word, vocabulary use, encode speed")
    s.add_argument("tokenizer", metavar="DIR", type=run_path, help="a tokenizer directory, a run or a checkpoint")
    s.add_argument("files", nargs="+", metavar="FILE", type=existing("text file"))
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(func=run_stats)


def read_text(corpora: list[str], text_field: str = "text") -> str:
    from ..data.corpora import read_corpus

    return "".join(d.text for spec in corpora for d in read_corpus(spec, text_field))


def train_tokenizer(kind: str, text: str, vocab: int = 0, transition: int = 0, progress: bool = False):
    """Train any registered kind; bpe and superbpe show their own progress bars."""
    from .. import tokenizers
    from ..config import TokenizerConfig

    if kind not in tokenizers.kinds():
        raise LmlabError(f"unknown tokenizer kind {kind!r}; valid kinds: {', '.join(tokenizers.kinds())}")
    if transition and kind != "superbpe":
        raise LmlabError("--transition only applies to --kind superbpe")
    if kind == "bpe":
        from ..tokenizers import bpe

        return bpe.train(text, vocab or bpe.DEFAULT_VOCAB, show_progress=progress)
    if kind == "superbpe":
        from ..tokenizers import superbpe

        return superbpe.train(text, vocab or superbpe.DEFAULT_VOCAB, transition or None, show_progress=progress)
    if tokenizers.needs_corpus(kind) and not text:
        raise LmlabError(f"cannot train a {kind} tokenizer on an empty corpus")
    trainer, _ = tokenizers.REGISTRY[kind]
    return trainer(text, TokenizerConfig(kind=kind, vocab_size=vocab, transition=transition))


def run_train(args) -> int:
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    if args.vocab < 0 or args.transition < 0:
        raise LmlabError("--vocab and --transition must be >= 0")
    text = read_text(args.corpora, args.text_field)
    log(f"corpus: {len(text.encode('utf-8', 'surrogatepass')) / 1e6:.2f} MB from {len(args.corpora)} source(s)")
    t0 = time.perf_counter()
    tok = train_tokenizer(args.kind, text, args.vocab, args.transition, progress=not args.quiet)
    seconds = time.perf_counter() - t0
    tok.save(args.out)
    extra = ""
    if getattr(tok, "transition", None) is not None:
        extra = f", stage 2 from id {tok.transition}"
    log(f"trained {tok.kind} tokenizer: {tok.vocab_size} ids{extra} in {seconds:.1f} s")
    print(args.out)
    return 0


def superword_ids(tok) -> np.ndarray | None:
    """Boolean per id: does the token span two or more words (None if the kind cannot say)."""
    if not hasattr(tok, "token_bytes"):
        return None
    from ..tokenizers.superbpe_trainer import n_words

    return np.array([n_words(tok.token_bytes(i)) >= 2 for i in range(tok.vocab_size)])


def file_stats(tok, text: str) -> dict:
    t0 = time.perf_counter()
    ids = np.asarray(tok.encode(text), dtype=np.int64)
    seconds = time.perf_counter() - t0
    nbytes = len(text.encode("utf-8", "surrogatepass"))
    words = len(text.split())
    used = np.unique(ids).size if ids.size else 0
    out = {
        "bytes": nbytes, "tokens": int(ids.size), "words": words,
        "bytes_per_token": nbytes / max(ids.size, 1),
        "tokens_per_word": ids.size / max(words, 1),
        "vocab_used": int(used), "vocab_used_frac": used / tok.vocab_size,
        "encode_mb_per_s": nbytes / 1e6 / max(seconds, 1e-9),
    }
    sw = superword_ids(tok)
    if sw is not None and ids.size:
        out["superword_token_frac"] = float(sw[ids].mean())
    return out


def run_stats(args) -> int:
    from .common import print_json, read_text_file
    from .tokenize import find_tokenizer

    tok = find_tokenizer(args.tokenizer)
    rows = {f: file_stats(tok, read_text_file(f)) for f in args.files}
    if args.json:
        print_json({"kind": tok.kind, "vocab_size": tok.vocab_size, "files": rows})
        return 0
    print(f"{tok.kind} tokenizer, {tok.vocab_size} ids")
    cols = ["bytes", "tokens", "bytes_per_token", "tokens_per_word", "vocab_used_frac", "encode_mb_per_s"]
    if any("superword_token_frac" in r for r in rows.values()):
        cols.append("superword_token_frac")
    width = max(len(f) for f in rows)
    print(f"{'file':<{width}}  " + "  ".join(f"{c:>{max(len(c), 10)}}" for c in cols))
    for f, r in rows.items():
        cells = []
        for c in cols:
            v = r.get(c, float("nan"))
            cells.append(f"{v:>{max(len(c), 10)}{'d' if isinstance(v, int) else '.3f'}}")
        print(f"{f:<{width}}  " + "  ".join(cells))
    return 0
