"""`lmlab train -c CONFIG [-o OUT] [--set k=v ...] [--resume]`"""
from __future__ import annotations

import sys
from pathlib import Path

from .common import add_config_args, output_dir, print_json


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model from a config")
    add_config_args(p)
    p.add_argument("-o", "--out", default="runs/latest", type=output_dir, help="run directory (default: runs/latest)")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT from its latest checkpoint "
                   "(the run's config; --set may change only the fields config.RESUMABLE lists)")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import checkpoint, config
    from ..errors import LmlabError
    from ..train import parallel
    from ..train.loop import train

    out = Path(args.out)
    if args.resume and not (out / checkpoint.CKPT_DIR / checkpoint.LATEST).is_file():
        raise LmlabError(f"nothing to resume in {out}: it holds no checkpoint ({checkpoint.CKPT_DIR}/"
                         f"{checkpoint.LATEST}); start the run without --resume")
    saved = out / "config.toml"
    if args.resume and not args.config and saved.is_file():
        cfg = config.load(str(saved), args.overrides)  # the run's own resolved config, plus overrides
    elif args.resume and not args.config:  # e.g. a run `lmlab import-hf` made: the checkpoint's config
        state = checkpoint.read_state(checkpoint.resolve(out))
        cfg = config.apply_overrides(config.from_dict(state["config"]), args.overrides)
    else:
        cfg = config.load(args.config, args.overrides)  # on resume, compared with the run's by train()
    # status lines to stderr: stdout is the summary, one JSON document
    summary = train(cfg, args.out, resume=args.resume, echo=lambda *a: print(*a, file=sys.stderr))
    if parallel.is_main():  # under torchrun, one summary
        print_json(summary)
    return 0
