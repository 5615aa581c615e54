"""`lmlab convert RUN_OR_CKPT --norm {rmsnorm,crmsnorm} -o OUT`: an equivalent Pre-RMSNorm model."""
from __future__ import annotations

from .common import NONNEG_FLOAT, add_run_args, load_model_arg, output_dir, print_json


def register(sub) -> None:
    p = sub.add_parser("convert", help="turn a Pre-LN model into an equivalent Pre-RMSNorm / Pre-CRMSNorm one")
    add_run_args(p, device=False)  # converted and checked in fp32 on the CPU
    p.add_argument("--norm", required=True, choices=["rmsnorm", "crmsnorm"], help="target normalisation")
    p.add_argument("-o", "--out", required=True, type=output_dir, help="new run directory for the converted checkpoint")
    p.add_argument("--tolerance", type=NONNEG_FLOAT, default=1e-4,
                   help="refuse the result if fp32 logits differ by more than this (default 1e-4)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from .. import checkpoint

    with checkpoint.run_lock(args.out):  # OUT is a run directory being written
        return _convert(args, Path(args.out))


def _convert(args, out) -> int:
    import dataclasses

    import torch

    from .. import checkpoint
    from .. import config as config_mod
    from ..errors import LmlabError
    from ..model.convert import ConversionError, convert_norm, max_logit_diff

    if (out / checkpoint.CKPT_DIR).exists():
        raise LmlabError(f"{out} already holds checkpoints; choose another -o")
    model, tokenizer, cfg = load_model_arg(args.run, "cpu")
    model = model.float()
    try:
        new = convert_norm(model, args.norm)
    except ConversionError as e:
        raise LmlabError(f"convert: {e}") from None
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, cfg.model.vocab_size, (2, cfg.model.context), generator=gen)
    diff = max_logit_diff(model, new, idx)
    if not diff <= args.tolerance:
        raise LmlabError(f"convert: logits changed by {diff:.3g} (> {args.tolerance}); a mixer reads its normed "
                         "input other than through linear layers")
    new_cfg = dataclasses.replace(cfg, model=new.cfg)
    state = checkpoint.read_state(checkpoint.resolve(args.run))
    config_mod.save(new_cfg, out / "config.toml")
    ckpt = checkpoint.save(out, state["step"], new, None, tokenizer, new_cfg,
                           {"tokens_seen": state.get("tokens_seen", 0), "converted_from": str(checkpoint.resolve(args.run)),
                            "converted_to": args.norm})
    print_json({"checkpoint": str(ckpt), "norm": args.norm, "max_abs_logit_diff": diff,
                "params_before": model.num_params(), "params_after": new.num_params()})
    return 0
