"""Architecture variants on equal terms: same data, token budget, seed and training schedule.

Trains a dense baseline and each variant (norms, structured FFNs, MoE, SSM / LMU mixers, a
hybrid pattern, meta-tokens) and measures validation bits per byte, parameters, training
tokens/s and generation tokens/s into OUT/results.json (one OUT/VARIANT.json per variant too,
for --reuse); architectures_report.py writes docs/experiments/architectures.md and its plots.
Variants whose module is not in this checkout are skipped with a note.
"""
from __future__ import annotations

import time
from pathlib import Path

from ..errors import LmlabError
from . import common
from ..options import COUNT

NAME = "architectures"
HELP = "dense baseline vs norm / FFN / MoE / SSM / LMU / hybrid / meta-token variants (bits per byte, speed)"

# name -> the config fields it changes from the shared base
VARIANTS = {
    "dense": {},
    "rmsnorm": {"model": {"norm": "rmsnorm"}},
    "crmsnorm": {"model": {"norm": "crmsnorm"}},
    "swiglu": {"model": {"ffn": "swiglu"}},
    "lowrank": {"model": {"ffn": "lowrank"}},
    "blockdense": {"model": {"ffn": "blockdense"}},
    "blockshuffle": {"model": {"ffn": "blockshuffle"}},
    "moe": {"model": {"ffn": "moe"}},
    "ssm (MF)": {"model": {"pattern": "MF"}},
    "lmu (LF)": {"model": {"pattern": "LF"}},
    "hybrid (AMF MF)": {"model": {"pattern": "AMF MF AMF MF"}},
    "hybrid (ALF LF)": {"model": {"pattern": "ALF LF ALF LF"}},
    "meta-tokens": {"model": {"meta_tokens": 4, "meta_rate": 0.05}},
}
PROMPT = "ROMEO:\nWhat light"
# --quick: every variant, two steps of a width-16 model
QUICK_STEPS, QUICK_GEN_TOKENS = 2, 5
QUICK = {"model": {"d_model": 16, "context": 16}, "train": {"eval_batches": 1}}


def add_arguments(p) -> None:
    p.add_argument("--steps", type=COUNT, default=300, help="training steps per variant (default 300)")
    p.add_argument("--variants", default="", help="comma-separated subset of: " + ", ".join(VARIANTS))
    p.add_argument("--out", default="runs/architectures", help="run directories (default runs/architectures)")
    p.add_argument("--docs", default="docs/experiments", help="where architectures.md and its PNGs go")
    p.add_argument("--threads", type=COUNT, default=1, help="torch threads (default 1: robust on a shared CPU)")
    p.add_argument("--gen-tokens", type=COUNT, default=200, help="tokens generated to time generation")
    p.add_argument("--reuse", action="store_true", help="keep results of variants already finished in --out")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override the shared config for every variant (repeatable)")
    p.add_argument("--quick", action="store_true",
                   help=f"a smoke run: every variant, {QUICK_STEPS} steps of a tiny model")
    p.add_argument("--render-only", action="store_true", help="write the report from OUT/results.json")


def base_config(steps: int, threads: int):
    """What every variant shares: a 4-layer char model on tinyshakespeare, float32 on one CPU."""
    from .. import config

    return config.Config(
        model=config.ModelConfig(n_layers=4, d_model=128, n_heads=4, context=128),
        tokenizer=config.TokenizerConfig(kind="char"),
        data=config.DataConfig(corpus="tinyshakespeare"),
        train=config.TrainConfig(max_steps=steps, batch_size=8, lr=2e-3, min_lr=2e-4, warmup_steps=30,
                                 eval_every=max(steps // 3, 1), eval_batches=8, ckpt_every=steps, dtype="float32",
                                 device="cpu", progress=False, log_every=1, seed=1337, threads=threads))


def missing_requirement(changes: dict) -> str | None:
    """Why a variant cannot run here (its norm or FFN kind is not registered), or None."""
    from ..model import ffn, norms

    registries = {"norm": norms.NORMS, "ffn": ffn.FFNS}
    for key, kind in changes.get("model", {}).items():
        if key in registries and kind not in registries[key]:
            return f"model.{key} = {kind!r} is not implemented in this checkout"
    return None


def run_variant(name: str, changes: dict, args) -> dict:
    import torch

    from .. import config
    from ..checkpoint import load_model
    from ..infer.generate import sample_ids

    steps = args.steps
    cfg = common.configured(base_config(steps, args.threads), **changes)
    if args.quick:
        cfg = common.configured(cfg, **QUICK)
    config.apply_overrides(cfg, args.overrides)  # the user's --set, last
    out = Path(args.out) / common.slug(name)
    result = common.train_fresh(cfg, out)
    model, tokenizer, _ = load_model(out)
    torch.manual_seed(0)
    prompt = tokenizer.encode(PROMPT)[: max(1, cfg.model.context // 2)]
    t0 = time.perf_counter()
    n = sum(1 for _ in sample_ids(model, prompt, args.gen_tokens, temperature=0.0))
    gen_s = time.perf_counter() - t0
    sample = tokenizer.decode(list(sample_ids(model, prompt, 120, temperature=0.0)))
    machine = common.machine()
    device = str(result.get("device", "cpu"))
    return {"name": name, "overrides": common.as_settings(changes), "val_bpb": result.get("val_bpb"),
            "val_loss": result.get("val_loss"), "params": model.num_params(),
            "train_tok_per_s": result["tok_per_s"], "gen_tok_per_s": n / gen_s,
            "tokens": steps * cfg.train.batch_size * cfg.model.context, "steps": steps,
            "curve": common.curve(out, "loss"), "evals": common.curve(out, "val_bpb"), "sample": sample,
            "setup": {"n_layers": cfg.model.n_layers, "d_model": cfg.model.d_model, "n_heads": cfg.model.n_heads,
                      "context": cfg.model.context, "batch_size": cfg.train.batch_size, "corpus": cfg.data.corpus,
                      "tokenizer": cfg.tokenizer.kind, "eval_windows": cfg.train.eval_batches * cfg.train.batch_size,
                      "prompt_tokens": len(prompt), "device": result.get("device", "cpu"),
                      "dtype": result.get("dtype", "float32"),
                      "machine": machine["cuda"] if device.startswith("cuda") else f"{machine['arch']} CPU"}}


def settings(args) -> dict:
    """The flags the report's regenerating command names."""
    return {k: getattr(args, k) for k in ("steps", "threads", "gen_tokens", "variants", "overrides", "out", "docs",
                                          "quick")}


def measure(args) -> dict:
    names = common.names(args.variants, VARIANTS, "--variants", "variant") or list(VARIANTS)
    if args.steps < 1:
        raise LmlabError("--steps must be at least 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, skipped = [], {}
    for name in names:
        why = missing_requirement(VARIANTS[name])
        if why:
            skipped[name] = why
            print(f"{name}: skipped ({why})", flush=True)
            continue
        cached = out / f"{common.slug(name)}.json"
        if args.reuse and cached.is_file():
            res = common.read_json(cached)
            if res.get("steps") == args.steps:
                results.append(res)
                print(f"{name}: reused {cached}", flush=True)
                continue
        t0 = time.perf_counter()
        res = run_variant(name, VARIANTS[name], args)
        res["wall_s"] = time.perf_counter() - t0
        common.write_json(cached, res)
        results.append(res)
        print(f"{name}: val_bpb {res['val_bpb']:.4f}  params {res['params']:,}  train {res['train_tok_per_s']:.0f} tok/s"
              f"  gen {res['gen_tok_per_s']:.1f} tok/s  ({res['wall_s']:.0f} s)", flush=True)
    if not results:
        raise LmlabError("no variant could run: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    return {"settings": settings(args), "machine": common.machine(), "results": results, "skipped": skipped}


def run(args) -> int:
    from .architectures_report import write_report

    path = Path(args.out) / "results.json"
    if args.render_only:
        measured = common.read_json(path)
    else:
        common.use_quick(args, {"steps": QUICK_STEPS, "gen_tokens": QUICK_GEN_TOKENS})
        measured = measure(args)
        common.write_json(path, measured)
    print(f"report: {write_report(measured)}")
    return 0
