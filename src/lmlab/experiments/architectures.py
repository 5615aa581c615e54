"""Architecture variants on equal terms: same data, token budget, seed and training schedule.

Trains a dense baseline and each variant (norms, structured FFNs, MoE, SSM / LMU mixers, a
hybrid pattern, meta-tokens) and reports validation bits per byte, parameters, training
tokens/s and generation tokens/s in docs/experiments/architectures.md with plots.
Variants whose module is not in this checkout are skipped with a note.
"""
from __future__ import annotations

import importlib
import json
import platform
import time
from pathlib import Path

from .. import jsonio
from .. import config as config_mod
from ..errors import LmlabError

NAME = "architectures"
HELP = "dense baseline vs norm / FFN / MoE / SSM / LMU / hybrid / meta-token variants (bits per byte, speed)"

BASE = ["model.n_layers=4", "model.d_model=128", "model.n_heads=4", "model.context=128",
        "tokenizer.kind=char", "data.corpus=tinyshakespeare", "train.batch_size=8", "train.lr=2e-3",
        "train.min_lr=2e-4", "train.warmup_steps=30", "train.eval_batches=8", "train.dtype=float32",
        "train.device=cpu", "train.progress=false", "train.log_every=1", "train.seed=1337"]

# name -> (overrides, what it needs: ("norm"|"ffn"|None, kind))
VARIANTS = {
    "dense": ([], None),
    "rmsnorm": (["model.norm=rmsnorm"], ("norm", "rmsnorm")),
    "crmsnorm": (["model.norm=crmsnorm"], ("norm", "crmsnorm")),
    "swiglu": (["model.ffn=swiglu"], ("ffn", "swiglu")),
    "lowrank": (["model.ffn=lowrank"], ("ffn", "lowrank")),
    "blockdense": (["model.ffn=blockdense"], ("ffn", "blockdense")),
    "blockshuffle": (["model.ffn=blockshuffle"], ("ffn", "blockshuffle")),
    "moe": (["model.ffn=moe"], ("ffn", "moe")),
    "ssm (MF)": (["model.pattern=MF"], None),
    "lmu (LF)": (["model.pattern=LF"], None),
    "hybrid (AMF MF)": (["model.pattern=AMF MF AMF MF"], None),
    "hybrid (ALF LF)": (["model.pattern=ALF LF ALF LF"], None),
    "meta-tokens": (["model.meta_tokens=4", "model.meta_rate=0.05"], None),
}
PROMPT = "ROMEO:\nWhat light"


def add_arguments(p) -> None:
    p.add_argument("--steps", type=int, default=300, help="training steps per variant (default 300)")
    p.add_argument("--variants", default="", help="comma-separated subset of: " + ", ".join(VARIANTS))
    p.add_argument("--out", default="runs/architectures", help="run directories (default runs/architectures)")
    p.add_argument("--docs", default="docs/experiments", help="where architectures.md and its PNGs go")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: robust on a shared CPU)")
    p.add_argument("--gen-tokens", type=int, default=200, help="tokens generated to time generation")
    p.add_argument("--reuse", action="store_true", help="keep results of variants already finished in --out")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override the shared config for every variant (repeatable)")


def _load_plugins() -> None:
    """Optional modules from other issues register norms / FFN kinds when imported."""
    for name in ("structured_ffn", "moe", "norms", "ffn"):
        try:
            importlib.import_module(f"lmlab.model.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"lmlab.model.{name}":
                raise


def missing_requirement(need) -> str | None:
    if need is None:
        return None
    from ..model import ffn, norms

    registry = {"norm": norms.NORMS, "ffn": ffn.FFNS}[need[0]]
    if need[1] not in registry:
        return f"model.{need[0]} = {need[1]!r} is not implemented in this checkout"
    return None


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-").replace("--", "-")


def run_variant(name: str, overrides: list[str], args) -> dict:
    import torch

    from ..infer.generate import sample_ids
    from ..checkpoint import load_model
    from ..train.loop import train

    steps = args.steps
    cfg = config_mod.load(None, BASE + [f"train.max_steps={steps}", f"train.eval_every={max(steps // 3, 1)}",
                                        f"train.ckpt_every={steps}", f"train.threads={args.threads}"]
                          + overrides + list(args.overrides))
    out = Path(args.out) / _slug(name)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    result = train(cfg, out, progress=False, echo=lambda *a: None)
    model, tokenizer, _ = load_model(out)
    torch.manual_seed(0)
    prompt = tokenizer.encode(PROMPT)[: max(1, cfg.model.context // 2)]
    t0 = time.perf_counter()
    n = sum(1 for _ in sample_ids(model, prompt, args.gen_tokens, temperature=0.0))
    gen_s = time.perf_counter() - t0
    sample = tokenizer.decode(list(sample_ids(model, prompt, 120, temperature=0.0)))
    from ..train import metrics

    curve = [(r["step"], r["loss"]) for r in metrics.read(out) if "loss" in r]
    evals = [(r["step"], r["val_bpb"]) for r in metrics.read(out) if "val_bpb" in r]
    return {"name": name, "overrides": overrides, "val_bpb": result.get("val_bpb"), "val_loss": result.get("val_loss"),
            "params": model.num_params(), "train_tok_per_s": result["tok_per_s"], "gen_tok_per_s": n / gen_s,
            "tokens": steps * cfg.train.batch_size * cfg.model.context, "steps": steps, "curve": curve,
            "evals": evals, "sample": sample,
            "setup": {"n_layers": cfg.model.n_layers, "d_model": cfg.model.d_model, "n_heads": cfg.model.n_heads,
                      "context": cfg.model.context, "batch_size": cfg.train.batch_size, "corpus": cfg.data.corpus,
                      "tokenizer": cfg.tokenizer.kind, "eval_windows": cfg.train.eval_batches * cfg.train.batch_size,
                      "prompt_tokens": len(prompt), "device": result.get("device", "cpu"),
                      "dtype": result.get("dtype", "float32"),
                      "machine": torch.cuda.get_device_name() if str(result.get("device", "")).startswith("cuda")
                      else f"{platform.machine()} CPU"}}


def run(args) -> int:
    _load_plugins()
    names = [v.strip() for v in args.variants.split(",") if v.strip()] or list(VARIANTS)
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise LmlabError(f"unknown variant(s) {', '.join(unknown)}; valid: {', '.join(VARIANTS)}")
    if args.steps < 1:
        raise LmlabError("--steps must be at least 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, skipped = [], {}
    for name in names:
        overrides, need = VARIANTS[name]
        why = missing_requirement(need)
        if why:
            skipped[name] = why
            print(f"{name}: skipped ({why})", flush=True)
            continue
        cached = out / f"{_slug(name)}.json"
        if args.reuse and cached.is_file():
            res = json.loads(cached.read_text())
            if res.get("steps") == args.steps:
                results.append(res)
                print(f"{name}: reused {cached}", flush=True)
                continue
        t0 = time.perf_counter()
        res = run_variant(name, overrides, args)
        res["wall_s"] = time.perf_counter() - t0
        cached.write_text(jsonio.dumps(res))
        results.append(res)
        print(f"{name}: val_bpb {res['val_bpb']:.4f}  params {res['params']:,}  train {res['train_tok_per_s']:.0f} tok/s"
              f"  gen {res['gen_tok_per_s']:.1f} tok/s  ({res['wall_s']:.0f} s)", flush=True)
    if not results:
        raise LmlabError("no variant could run: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    from .architectures_report import write_report

    path = write_report(results, skipped, args)
    print(f"report: {path}")
    return 0
