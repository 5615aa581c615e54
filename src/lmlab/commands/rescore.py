"""`lmlab rescore RUN --nbest FILE --weight W [--length-bonus B]`: LM rescoring of n-best lists.

Input: JSONL, one list per line: {"id": ..., "hypotheses": [{"text": str, "score": number}, ...]}
("score" is the first-pass log score, e.g. an acoustic model's). Output: JSONL in the same order,
each hypothesis with "lm" (natural-log probability under the run's LM) and "total"
(score + W * lm + B * words), and "chosen", the text with the highest total.
"""
from __future__ import annotations

import json
import sys

from .. import config
from ..errors import LmlabError
from ..options import NONNEG_FLOAT, ranged
from .common import load_model_arg

FINITE_FLOAT = ranged(float, config.Range())  # any finite number (a bonus may be negative)


def register(sub) -> None:
    p = sub.add_parser("rescore", help="rescore n-best lists (JSONL) with a causal LM")
    p.add_argument("run", metavar="RUN_OR_CKPT", help="a causal lmlab run, or ngram:ORDER:TEXTFILE for a char n-gram")
    p.add_argument("--nbest", required=True, help="JSONL n-best lists ('-' for stdin)")
    p.add_argument("--weight", type=NONNEG_FLOAT, required=True, help="W, the LM weight")
    p.add_argument("--length-bonus", type=FINITE_FLOAT, default=0.0, help="B, added per word of a hypothesis")
    p.add_argument("--out", help="write the JSONL here instead of stdout")
    p.add_argument("--device", default="auto", help="auto (a GPU if there is one), cpu, cuda, cuda:N")
    p.set_defaults(func=run)


def parse_nbest(lines, name: str) -> list[dict]:
    """Every list, checked; a malformed one is an error naming its line."""
    lists = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{name}:{n}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise LmlabError(f"{where}: invalid JSON ({e.msg})") from None
        hyps = record.get("hypotheses") if isinstance(record, dict) else None
        if not isinstance(hyps, list) or not hyps:
            raise LmlabError(f"{where}: needs a non-empty \"hypotheses\" list")
        for i, h in enumerate(hyps):
            if not isinstance(h, dict) or not isinstance(h.get("text"), str) \
                    or not isinstance(h.get("score"), (int, float)) or isinstance(h.get("score"), bool):
                raise LmlabError(f"{where}: hypothesis {i} needs a string \"text\" and a number \"score\"")
        lists.append(record)
    return lists


def scorer_for(spec: str, device: str):
    if spec.startswith("ngram:"):
        from ..infer.ngram import CharNgramLM
        from .common import read_text_file

        _, order, path = (spec.split(":", 2) + ["", ""])[:3]
        if not order.isdigit() or int(order) < 1 or not path:
            raise LmlabError(f"{spec}: an n-gram scorer is ngram:ORDER:TEXTFILE with ORDER >= 1")
        return CharNgramLM(read_text_file(path), int(order))
    from ..infer.fusion import TransformerScorer
    from .generate import require_causal

    model, tokenizer, cfg = load_model_arg(spec, device)
    require_causal(cfg)
    return TransformerScorer(model, tokenizer)


def run(args) -> int:
    from ..infer.fusion import rescore

    if args.nbest == "-":
        lines, name = sys.stdin.read().splitlines(), "stdin"
    else:
        from .common import read_text_file

        lines, name = read_text_file(args.nbest).splitlines(), args.nbest
    lists = parse_nbest(lines, name)  # all checked before the model loads or anything is written
    scorer = scorer_for(args.run, args.device)
    out_lines = []
    for record in lists:
        try:
            result = rescore(record["hypotheses"], scorer, args.weight, args.length_bonus)
        except ValueError as e:
            raise LmlabError(f"list {record.get('id')!r}: {e}") from None
        out_lines.append(json.dumps({**record, **result}, ensure_ascii=False))
    text = "".join(line + "\n" for line in out_lines)
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
