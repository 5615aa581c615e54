"""`lmlab export RUN_OR_CKPT --to hf DIR`: a Hugging Face model directory (Llama, GPT-2 or GPT-NeoX shape)."""
from __future__ import annotations

from .common import add_run_args, load_model_arg, output_dir, print_json


def register(sub) -> None:
    p = sub.add_parser("export", help="write a checkpoint as a Hugging Face model directory (Llama, GPT-2 or GPT-NeoX)")
    add_run_args(p, device=False)
    p.add_argument("--to", required=True, choices=["hf"], help="target format")
    p.add_argument("dir", metavar="DIR", type=output_dir, help="output directory (config.json, model.safetensors, tokenizer files)")
    p.add_argument("--no-check", action="store_true",
                   help="skip loading the result with transformers (done when it is installed) to compare logits")
    p.set_defaults(func=run_export)


def run_export(args) -> int:
    from pathlib import Path

    from .. import hf
    from ..errors import LmlabError

    model, tokenizer, cfg = load_model_arg(args.run)
    model = model.cpu().float()
    hf.family(cfg.model)  # fails early, before anything is written
    out = Path(args.dir)
    if (out / "config.json").exists():
        raise LmlabError(f"{out} already holds a config.json; choose another directory")
    report = hf.export(model, tokenizer, out)
    if not args.no_check:
        diff = hf.hf_logit_diff(model, out)
        report["max_abs_logit_diff"] = diff if diff is not None else "not checked (transformers is not installed)"
        if diff is not None and not diff <= 1e-4:
            raise LmlabError(f"export: transformers gives logits {diff:.3g} away from lmlab's; the files are in {out}")
    print_json(report)
    return 0
