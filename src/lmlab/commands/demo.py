"""`lmlab demo`: train the demo preset on the embedded corpus, evaluate it, print samples.

Running it again continues (or reuses) the same run directory instead of starting over.
"""
from __future__ import annotations

import sys

from .common import NONNEG_INT, output_dir, print_json


def register(sub) -> None:
    p = sub.add_parser("demo", help="train a small model on the embedded corpus, evaluate it, generate samples")
    p.add_argument("-o", "--out", default="runs/demo", type=output_dir)
    p.add_argument("-c", "--config", default="demo")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--eval-tokens", type=NONNEG_INT, default=100_000, help="validation tokens to score (0 = all)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from .. import config
    from ..data.shards import token_splits
    from ..eval.perplexity import evaluate_ids
    from ..infer.generate import generate
    from ..checkpoint import load_model
    from ..train.loop import train

    saved = Path(args.out) / "config.toml"
    cfg = config.load(str(saved) if saved.is_file() else args.config, args.overrides)
    print(f"== training {args.config} -> {args.out} (corpus: {cfg.data.corpus})", flush=True)
    train(cfg, args.out, resume=True)
    model, tokenizer, cfg = load_model(args.out)
    _, val = token_splits(cfg, tokenizer)
    val = val[: args.eval_tokens + 1] if args.eval_tokens else val
    print("== evaluation on the validation split", flush=True)
    print_json({"checkpoint": args.out, **evaluate_ids(model, val, tokenizer.token_nbytes())})
    g = cfg.generate
    for i, prompt in enumerate(g.prompts):
        print(f"== sample {i + 1} (temperature {g.temperature}, top-k {g.top_k})", flush=True)
        sys.stdout.write(prompt)
        generate(model, tokenizer, prompt, max_new_tokens=g.max_new_tokens, temperature=g.temperature,
                 top_k=g.top_k, top_p=g.top_p, repetition_penalty=g.repetition_penalty, seed=g.seed + i,
                 stop=g.stop, stream=lambda s: (sys.stdout.write(s), sys.stdout.flush()))
        sys.stdout.write("\n")
    return 0
