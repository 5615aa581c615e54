"""`lmlab analyze RUN --what heads|lens|trajectory|sinks|keys|laundry|patterns|cache -o DIR`: JSON + PNGs in DIR.

lens, sinks and keys read a text (--text FILE, else --prompt), windowed to the context as `lmlab eval`;
trajectory, patterns and cache analyse one sequence (--prompt, or --text) that must fit in it;
laundry reads a Laundry List task (--task DIR, or the generator's default split).
"""
from __future__ import annotations

from pathlib import Path

from ..analysis.progress import forward_bar
from ..errors import LmlabError
from ..options import COUNT, NONNEG_INT
from .common import load_model_arg, print_json, read_text_file

WHAT = ("heads", "lens", "trajectory", "sinks", "keys", "laundry", "patterns", "cache")
TEXT_WHAT = ("lens", "sinks", "keys")


def register(sub) -> None:
    p = sub.add_parser("analyze", help="look inside a model: heads, logit lens, trajectories, attention sinks")
    p.add_argument("run", metavar="RUN_OR_CKPT")
    p.add_argument("--what", required=True, choices=WHAT,
                   help="heads: OV/QK spectra and composition scores; lens: logit lens over a text; "
                        "trajectory: a prompt's states across layers; sinks: attention sinks, massive "
                        "activations and the redistribution experiment; keys: the vocabulary key space "
                        "(rank vs key cosine, ICN query shift); laundry: Laundry List heads and the "
                        "channel intervention; patterns: attention patterns; "
                        "cache: named activations to safetensors")
    p.add_argument("--text", help="a UTF-8 text file (lens and sinks run over its windows)")
    p.add_argument("--prompt", help="a prompt (one sequence, at most the model's context)")
    p.add_argument("--max-tokens", type=int, default=8192, help="use at most this many tokens of --text (0 = all)")
    p.add_argument("--tuned-lens", type=NONNEG_INT, default=0, metavar="STEPS",
                   help="lens: also train a tuned lens this many steps on the text's first half and report "
                        "both lenses on its second half (0 = the logit lens alone)")
    p.add_argument("--layer", type=int, action="append", help="patterns: only this block (repeatable)")
    p.add_argument("--names", action="append", help="cache: hook names or globs (repeatable), e.g. 'blocks.*.attn.pattern'")
    p.add_argument("--sink-threshold", type=float, default=0.5,
                   help="sinks: heads giving position 0 at least this share of attention are sink heads")
    p.add_argument("--rank-top", type=COUNT, default=3, help="keys: ranks below this are the top (the middle runs to V/2)")
    p.add_argument("--icn-answers", type=NONNEG_INT, default=4, help="keys: ICN answers per prompt (0 = no ICN measure)")
    p.add_argument("--icn-prompts", type=COUNT, default=8, help="keys: ICN prompts cut from --text (--prompt: that one)")
    p.add_argument("--task", default="laundry", help="laundry: a task directory (lmlab task make laundry) or 'laundry'")
    p.add_argument("--scales", default="0,0.5,1.5,2,3,5", help="laundry: scales of the channel to try (comma list in [0, 100])")
    p.add_argument("--controls", type=COUNT, default=4, help="laundry: random directions in the control")
    p.add_argument("--device", default="cpu")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar (it is on stderr, and off anyway when stderr is not a terminal)")
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


def _scales(text: str) -> list[float]:
    from ..analysis.laundry import check_scales

    try:
        scales = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise LmlabError(f"--scales must be a comma-separated list of numbers, not {text!r}") from None
    check_scales(scales)
    return scales


def run(args) -> int:
    from ..analysis import report

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise LmlabError(f"{out} exists and is not a directory")
    if args.what == "cache" and not args.names:
        raise LmlabError("--what cache needs --names (hook names or globs)")
    scales = _scales(args.scales) if args.what == "laundry" else None
    if args.tuned_lens and args.what != "lens":
        raise LmlabError(f"--tuned-lens applies to --what lens, not --what {args.what}")
    model, tokenizer, cfg = load_model_arg(args.run, args.device)
    model.eval()
    text = lambda i: tokenizer.token_text(i)
    ids = None  # heads and laundry read no text
    if args.what in TEXT_WHAT:
        ids = _text_ids(args, tokenizer)
        if args.tuned_lens and len(ids) < 6:
            raise LmlabError(f"--tuned-lens needs a text of at least 6 tokens (two halves), got {len(ids)}")
    elif args.what not in ("heads", "laundry"):
        ids = _sequence_ids(args, tokenizer, cfg.model.context)
    report.validate(model, args.what, args.layer, args.names, args.rank_top)
    task = report.load_laundry(args.task) if args.what == "laundry" else None
    out.mkdir(parents=True, exist_ok=True)  # only once the input is known to be good
    with forward_bar(model, args.what, show=not args.quiet):
        result = _analyse(args, model, tokenizer, ids, task, scales, text, out)
    print_json({"what": args.what, **result})
    return 0


def _analyse(args, model, tokenizer, ids, task, scales, text, out: Path) -> dict:
    from ..analysis import report

    if args.what == "heads":
        result = report.heads_report(model, out)
    elif args.what == "lens":
        result = report.lens_report(model, ids, tokenizer.token_nbytes(), out, args.tuned_lens)
    elif args.what == "trajectory":
        result = report.trajectory_report(model, ids, text, out)
    elif args.what == "sinks":
        result = report.sinks_report(model, ids, tokenizer.token_nbytes(), text, out, args.sink_threshold)
    elif args.what == "keys":
        result = report.keys_report(model, tokenizer, ids, out, args.rank_top, args.icn_answers, args.icn_prompts,
                                    prompt=args.prompt if not args.text else None)
    elif args.what == "laundry":
        result = report.laundry_report(model, tokenizer, task, out, scales, args.controls)
    elif args.what == "patterns":
        result = report.patterns_report(model, ids, text, out, args.layer)
    else:
        result = report.cache_report(model, ids, args.names, out)
    return result
