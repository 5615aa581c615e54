"""`lmlab train -c CONFIG [-o OUT] [--set k=v ...] [--resume]`"""
from __future__ import annotations

from pathlib import Path

from .common import add_config_args, print_json


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model from a config")
    add_config_args(p)
    p.add_argument("-o", "--out", default="runs/latest", help="run directory (default: runs/latest)")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT from its latest checkpoint")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import config
    from ..train import parallel
    from ..train.loop import train

    saved = Path(args.out) / "config.toml"
    if args.resume and saved.is_file():
        cfg = config.load(str(saved), args.overrides)  # the run's own resolved config, plus overrides
    else:
        cfg = config.load(args.config, args.overrides)
    summary = train(cfg, args.out, resume=args.resume)
    if parallel.is_main():  # under torchrun, one summary
        print_json(summary)
    return 0
