"""`lmlab analyze RUN --what heads|lens|trajectory|sinks|patterns|cache -o DIR`: JSON + PNGs in DIR.

lens and sinks read a text (--text FILE, else --prompt), windowed to the context as `lmlab eval`;
trajectory, patterns and cache analyse one sequence (--prompt, or --text) that must fit in it.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import LmlabError
from .common import load_model_arg, print_json, read_text_file

WHAT = ("heads", "lens", "trajectory", "sinks", "patterns", "cache")


def register(sub) -> None:
    p = sub.add_parser("analyze", help="look inside a model: heads, logit lens, trajectories, attention sinks")
    p.add_argument("run", metavar="RUN_OR_CKPT")
    p.add_argument("--what", required=True, choices=WHAT,
                   help="heads: OV/QK spectra and composition scores; lens: logit lens over a text; "
                        "trajectory: a prompt's states across layers; sinks: attention sinks, massive "
                        "activations and the redistribution experiment; patterns: attention patterns; "
                        "cache: named activations to safetensors")
    p.add_argument("--text", help="a UTF-8 text file (lens and sinks run over its windows)")
    p.add_argument("--prompt", help="a prompt (one sequence, at most the model's context)")
    p.add_argument("--max-tokens", type=int, default=8192, help="use at most this many tokens of --text (0 = all)")
    p.add_argument("--layer", type=int, action="append", help="patterns: only this block (repeatable)")
    p.add_argument("--names", action="append", help="cache: hook names or globs (repeatable), e.g. 'blocks.*.attn.pattern'")
    p.add_argument("--sink-threshold", type=float, default=0.5,
                   help="sinks: heads giving position 0 at least this share of attention are sink heads")
    p.add_argument("--device", default="cpu")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output directory (created)")
    p.set_defaults(func=run)


def _text_ids(args, tokenizer) -> list[int]:
    if args.text:
        ids = tokenizer.encode(read_text_file(args.text))
        ids = ids[: args.max_tokens + 1] if args.max_tokens else ids
    elif args.prompt:
        ids = tokenizer.encode(args.prompt)
    else:
        raise LmlabError(f"--what {args.what} needs --text FILE or --prompt TEXT")
    if len(ids) < 3:
        raise LmlabError(f"--what {args.what} needs a text of at least 3 tokens (got {len(ids)})")
    return ids


def _sequence_ids(args, tokenizer, context: int) -> list[int]:
    from ..analysis.windows import prompt_ids

    if args.prompt is None and not args.text:
        raise LmlabError(f"--what {args.what} needs --prompt TEXT (or --text FILE that fits in the context)")
    return prompt_ids(tokenizer, args.prompt if args.prompt is not None else read_text_file(args.text), context)


def run(args) -> int:
    from ..analysis import report

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise LmlabError(f"{out} exists and is not a directory")
    if args.what == "cache" and not args.names:
        raise LmlabError("--what cache needs --names (hook names or globs)")
    model, tokenizer, cfg = load_model_arg(args.run, args.device)
    model.eval()
    text = lambda i: tokenizer.token_text(i)
    if args.what in ("lens", "sinks"):
        ids = _text_ids(args, tokenizer)
    elif args.what != "heads":
        ids = _sequence_ids(args, tokenizer, cfg.model.context)
    report.validate(model, args.what, args.layer, args.names)
    out.mkdir(parents=True, exist_ok=True)  # only once the input is known to be good
    if args.what == "heads":
        result = report.heads_report(model, out)
    elif args.what == "lens":
        result = report.lens_report(model, ids, tokenizer.token_nbytes(), out)
    elif args.what == "trajectory":
        result = report.trajectory_report(model, ids, text, out)
    elif args.what == "sinks":
        result = report.sinks_report(model, ids, tokenizer.token_nbytes(), text, out, args.sink_threshold)
    elif args.what == "patterns":
        result = report.patterns_report(model, ids, text, out, args.layer)
    else:
        result = report.cache_report(model, ids, args.names, out)
    print_json({"what": args.what, **result})
    return 0
