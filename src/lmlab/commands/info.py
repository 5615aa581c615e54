"""`lmlab info RUN_OR_CKPT`: parameters, FLOPs per token, config."""
from __future__ import annotations

from .common import add_run_args, load_model_arg, print_json


def register(sub) -> None:
    p = sub.add_parser("info", help="parameters, FLOPs per token and config of a run or checkpoint")
    add_run_args(p, device=False)  # counts and config only: read on the CPU
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import config
    from ..checkpoint import read_state, resolve

    model, tokenizer, cfg = load_model_arg(args.run, "cpu")
    state = read_state(resolve(args.run))
    print_json({
        "checkpoint": str(resolve(args.run)),
        "step": state["step"],
        "tokens_seen": state.get("tokens_seen"),
        "params": model.num_params(),
        "trainable_params": model.num_params(trainable_only=True),
        "flops_per_token": model.flops_per_token(),
        "tokenizer": {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size},
        "config": config.to_dict(cfg),
    })
    return 0
