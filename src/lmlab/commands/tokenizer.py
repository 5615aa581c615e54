"""`lmlab tokenizer train ...` (train any tokenizer kind on corpora) and `lmlab tokenizer stats ...`."""
from __future__ import annotations

import sys

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


def run_train(args) -> int:
    from ..tokenizers.training import train_and_save, utf8_bytes

    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    if args.vocab < 0 or args.transition < 0:
        raise LmlabError("--vocab and --transition must be >= 0")
    text = read_text(args.corpora, args.text_field)
    log(f"corpus: {utf8_bytes(text) / 1e6:.2f} MB from {len(args.corpora)} source(s)")
    tok, seconds = train_and_save(args.kind, text, args.out, args.vocab, args.transition, progress=not args.quiet)
    extra = ""
    if getattr(tok, "transition", None) is not None:
        extra = f", stage 2 from id {tok.transition}"
    log(f"trained {tok.kind} tokenizer: {tok.vocab_size} ids{extra} in {seconds:.1f} s")
    print(args.out)
    return 0


def run_stats(args) -> int:
    from ..tokenizers.training import text_stats
    from .common import print_json, read_text_file
    from .tokenize import find_tokenizer

    tok = find_tokenizer(args.tokenizer)
    rows = {f: text_stats(tok, read_text_file(f)) for f in args.files}
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
