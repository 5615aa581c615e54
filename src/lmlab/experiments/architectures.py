"""Architecture variants on equal terms: same data, token budget, seeds and training schedule.

Trains a dense baseline and each variant (SwiGLU, MoE, structured FFNs with and without
self-guided training, the `AMF MF` hybrid, the LMU pattern, meta-tokens) at one width over
several seeds, and dense plus the structured FFNs at further widths (the scaling rows). Each run
records validation bits per byte, parameters, matmul FLOPs per training token, speeds and samples
into OUT/RUN.json (reused by --reuse); OUT/results.json holds every finished run, rewritten after
each, so a stopped grid still renders. The docs results JSON keeps every run's record too (less the
loss curve), so --reuse falls back to it when OUT/RUN.json is gone, and the (variant, width) rows
this run did not train are carried from it, marked as such on the page. A decoding-cost probe
(untrained models, long context) measures per-token cost and state size at an early and a late
position for attention, LMU and the hybrid. architectures_report.py writes
docs/experiments/architectures.md, its plots and claims.
"""
from __future__ import annotations

import time
from pathlib import Path

from ..errors import LmlabError
from ..options import COUNT
from . import common

NAME = "architectures"
HELP = "dense vs SwiGLU / MoE / structured FFNs (+ self-guided) / hybrid / LMU / meta-tokens over seeds and widths"

SELF_GUIDED = 0.5  # the fraction of training with the decaying dense guide
# name -> the config fields it changes from the shared base
VARIANTS = {
    "dense": {},
    "swiglu": {"model": {"ffn": "swiglu"}},
    "moe": {"model": {"ffn": "moe"}},
    "lowrank": {"model": {"ffn": "lowrank"}},
    "lowrank+sgt": {"model": {"ffn": "lowrank", "self_guided": SELF_GUIDED}},
    "blockdense": {"model": {"ffn": "blockdense"}},
    "blockdense+sgt": {"model": {"ffn": "blockdense", "self_guided": SELF_GUIDED}},
    "blockshuffle": {"model": {"ffn": "blockshuffle"}},
    "blockshuffle+sgt": {"model": {"ffn": "blockshuffle", "self_guided": SELF_GUIDED}},
    "hybrid (AMF MF)": {"model": {"pattern": "AMF MF"}},
    "lmu (LF)": {"model": {"pattern": "LF"}},
    "meta-tokens": {"model": {"meta_tokens": 4, "meta_rate": 0.05}},
}
SCALING = ("dense", "lowrank", "blockdense", "blockshuffle")  # also trained at every --scale-widths width
DECODE_COST = ("dense", "lmu (LF)", "hybrid (AMF MF)")  # the decoding-cost probe's patterns
PROMPT = "ROMEO:\nWhat light"
SAMPLE_TOKENS, SAMPLE_TEMPERATURE = 200, 0.8
FIRST_SEED = 1337
DOCS_JSON = "architectures-results.json"
BULKY = ("curve",)  # the training loss every 10 steps: the page never draws it, so the docs JSON leaves it out
# --quick: every variant, two steps of a width-16 model, one extra width, one seed
QUICK_FLAGS = {"steps": 2, "gen_tokens": 5, "seeds": 1, "width": 16, "scale_widths": "32", "cost_context": 64}
QUICK = {"model": {"context": 16}, "train": {"eval_batches": 1}}


def add_arguments(p) -> None:
    p.add_argument("--steps", type=COUNT, default=3000, help="training steps per run (default 3000)")
    p.add_argument("--seeds", type=COUNT, default=3, help=f"seeds per variant, {FIRST_SEED} upwards (default 3)")
    p.add_argument("--width", type=COUNT, default=64, help="d_model of the main grid (default 64)")
    p.add_argument("--scale-widths", default="32,128",
                   help="further d_model values for " + ", ".join(SCALING) + " (comma-separated; '' = none)")
    p.add_argument("--variants", default="", help="comma-separated subset of: " + ", ".join(VARIANTS))
    p.add_argument("--out", default="runs/architectures", help="run directories (default runs/architectures)")
    p.add_argument("--docs", default="docs/experiments", help="where architectures.md and its PNGs go")
    p.add_argument("--threads", type=COUNT, default=1, help="torch threads (default 1: robust on a shared CPU)")
    p.add_argument("--gen-tokens", type=COUNT, default=200, help="tokens generated to time generation")
    p.add_argument("--cost-context", type=COUNT, default=1024,
                   help="context of the decoding-cost probe's untrained models (default 1024)")
    p.add_argument("--reuse", action="store_true", help="keep runs already finished in --out")
    p.add_argument("--reuse-only", action="store_true",
                   help="train nothing: report the runs of the grid already finished in --out, the rest as not run")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override the shared config for every run (repeatable)")
    p.add_argument("--quick", action="store_true", help="a smoke run: every variant, 2 steps of a tiny model")
    p.add_argument("--render-only", action="store_true", help="write the report from OUT/results.json")


def base_config(steps: int, threads: int, width: int, seed: int):
    """What every run shares: a 2-layer char model on tinyshakespeare, float32 on one CPU."""
    from .. import config

    return config.Config(
        model=config.ModelConfig(n_layers=2, d_model=width, n_heads=4, context=64),
        tokenizer=config.TokenizerConfig(kind="char"),
        data=config.DataConfig(corpus="tinyshakespeare"),
        train=config.TrainConfig(max_steps=steps, batch_size=8, lr=3e-3, min_lr=3e-4, warmup_steps=min(100, steps),
                                 eval_every=max(steps // 6, 1), eval_batches=16, ckpt_every=steps, dtype="float32",
                                 device="cpu", progress=False, log_every=10, seed=seed, threads=threads))


def planned_runs(names: list[str], seeds: int, width: int, scale_widths: list[int]) -> list[dict]:
    """Every (variant, width, seed) of the grid, seed by seed, so a stopped grid has whole seeds."""
    runs = []
    for s in range(seeds):
        for w in [width] + scale_widths:
            runs += [{"name": n, "width": w, "seed": FIRST_SEED + s} for n in names if w == width or n in SCALING]
    return runs


def run_key(run: dict) -> str:
    return f"{common.slug(run['name'])}-d{run['width']}-s{run['seed']}"


def run_config(run: dict, args):
    from .. import config

    cfg = common.configured(base_config(args.steps, args.threads, run["width"], run["seed"]), **VARIANTS[run["name"]])
    if args.quick:
        cfg = common.configured(cfg, **QUICK)
    config.apply_overrides(cfg, args.overrides)  # the user's --set, last
    groups = cfg.model.pattern.split()
    if len(groups) > 1 and cfg.model.n_layers % len(groups) == 0:  # a multi-layer pattern repeats to the depth
        cfg.model.pattern = " ".join(groups * (cfg.model.n_layers // len(groups)))
    return cfg


def missing_requirement(changes: dict) -> str | None:
    """Why a variant cannot run here (its norm or FFN kind is not registered), or None."""
    from ..model import ffn, norms

    registries = {"norm": norms.NORMS, "ffn": ffn.FFNS}
    for key, kind in changes.get("model", {}).items():
        if key in registries and kind not in registries[key]:
            return f"model.{key} = {kind!r} is not implemented in this checkout"
    return None


def matmul_flops(model, batch: int, context: int, progress: float) -> float:
    """Matmul FLOPs of one training step (forward + backward) per token, at training progress 0..1."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ..model.training_hooks import set_progress

    set_progress(model, progress)
    model.train()
    ids = torch.randint(0, model.cfg.vocab_size, (batch, context))
    with FlopCounterMode(display=False) as counter:
        logits, _ = model(ids)
        logits.float().logsumexp(-1).mean().backward()
    model.zero_grad(set_to_none=True)
    set_progress(model, 1.0)
    model.eval()
    return counter.get_total_flops() / (batch * context)


def train_flops_per_token(model, cfg) -> float:
    """Matmul FLOPs per training token over the schedule: a self-guided FFN pays its dense guide
    while the guide's weight is above zero (the first `self_guided` fraction of training)."""
    b, t, g = cfg.train.batch_size, cfg.model.context, cfg.model.self_guided
    plain = matmul_flops(model, b, t, 1.0)
    return g * matmul_flops(model, b, t, 0.0) + (1 - g) * plain if g > 0 else plain


def samples(model, tokenizer, cfg, gen_tokens: int) -> dict:
    """Greedy and sampled continuations of PROMPT, their word 3-gram repetition, and generation speed."""
    import torch

    from ..eval.diversity import rep_n
    from ..infer.generate import sample_ids

    prompt = tokenizer.encode(PROMPT)[: max(1, cfg.model.context // 2)]
    torch.manual_seed(0)
    t0 = time.perf_counter()
    n = sum(1 for _ in sample_ids(model, prompt, gen_tokens, temperature=0.0))
    gen_s = time.perf_counter() - t0
    greedy = tokenizer.decode(list(sample_ids(model, prompt, SAMPLE_TOKENS, temperature=0.0)))
    sampled = tokenizer.decode(list(sample_ids(model, prompt, SAMPLE_TOKENS, temperature=SAMPLE_TEMPERATURE, seed=0)))
    return {"gen_tok_per_s": n / gen_s, "prompt_tokens": len(prompt), "sample": greedy, "sample_t08": sampled,
            "rep3_greedy": rep_n(greedy, 3), "rep3_sampled": rep_n(sampled, 3)}


def run_one(run: dict, args) -> dict:
    from ..checkpoint import load_model

    cfg = run_config(run, args)
    out = Path(args.out) / run_key(run)
    t0 = time.perf_counter()
    result = common.train_fresh(cfg, out)
    model, tokenizer, _ = load_model(out)
    embed = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("embed.", "pos_embed.")))
    flops = train_flops_per_token(model, cfg)
    tokens = args.steps * cfg.train.batch_size * cfg.model.context
    return {**run, "key": run_key(run), "overrides": common.as_settings(VARIANTS[run["name"]]),
            "val_bpb": result.get("val_bpb"), "val_loss": result.get("val_loss"), "params": model.num_params(),
            "params_nonembed": model.num_params() - embed, "train_flops_per_token": flops,
            "train_flops": flops * tokens, "train_tok_per_s": result["tok_per_s"], "tokens": tokens,
            "steps": args.steps, "evals": common.curve(out, "val_bpb"), "curve": common.curve(out, "loss"),
            **samples(model, tokenizer, cfg, args.gen_tokens), "wall_s": time.perf_counter() - t0,
            "setup": {"n_layers": cfg.model.n_layers, "n_heads": cfg.model.n_heads, "context": cfg.model.context,
                      "batch_size": cfg.train.batch_size, "corpus": cfg.data.corpus, "tokenizer": cfg.tokenizer.kind,
                      "pattern": cfg.model.pattern, "eval_windows": cfg.train.eval_batches * cfg.train.batch_size,
                      "lr": cfg.train.lr, "device": result.get("device", "cpu"),
                      "dtype": result.get("dtype", "float32")}}


def state_bytes(cache) -> int:
    """Bytes a sequence holds at the cache's position: the KV rows filled so far plus every recurrent state."""
    import torch

    total = 0
    for layer in cache.layers:
        for sub in layer:
            for key, t in sub.items():
                if isinstance(t, torch.Tensor):
                    full = t.numel() * t.element_size()
                    total += full * cache.pos // cache.max_len if key in ("k", "v") else full
    return total


def decode_cost(names: list[str], args) -> list[dict]:
    """Per-token decoding cost at an early and a late position of a long context, untrained weights.

    Cost does not depend on what the weights learned, so a fresh model of each pattern at the grid's
    width and a long context shows how it grows with the position: matmul FLOPs of one step (CPU
    attention over the KV cache is added as 4*d per cached position and layer, which the counter
    misses inside fused attention), the bytes of state the sequence holds, and wall time per token.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ..model.transformer import Transformer

    ctx, steps = args.cost_context, 16
    rows = []
    for name in [n for n in DECODE_COST if n in names]:
        cfg = run_config({"name": name, "width": args.width, "seed": FIRST_SEED}, args)
        cfg.model.context, cfg.model.vocab_size = ctx, 65
        torch.manual_seed(0)
        model = Transformer(cfg.model).eval()
        n_attn = sum(1 for b in model.blocks for k in b.sublayers if k.startswith("attn"))
        ids = torch.randint(0, 65, (1, ctx))
        for pos in (ctx // 16, ctx - steps - 1):
            with torch.no_grad():
                cache = model.new_cache(ctx)
                model(ids[:, :pos], cache=cache)
                with FlopCounterMode(display=False) as counter:
                    model(ids[:, pos:pos + 1], cache=cache)
                t0 = time.perf_counter()
                for i in range(1, steps + 1):
                    model(ids[:, pos + i:pos + i + 1], cache=cache)
                per_token_s = (time.perf_counter() - t0) / steps
            rows.append({"name": name, "pattern": cfg.model.pattern, "context": ctx, "position": pos,
                         "flops_per_token": counter.get_total_flops() + 4 * cfg.model.d_model * pos * n_attn,
                         "state_bytes": state_bytes(cache), "ms_per_token": 1e3 * per_token_s})
    return rows


def settings(args) -> dict:
    """The flags the report's regenerating command names."""
    return {k: getattr(args, k) for k in ("steps", "seeds", "width", "scale_widths", "threads", "gen_tokens",
                                          "cost_context", "variants", "overrides", "out", "docs", "quick", "reuse_only")}


# --- what the previous page kept ---------------------------------------------------------------
def kept(res: dict) -> dict:
    """A run's record as the docs results JSON keeps it."""
    return {k: v for k, v in res.items() if k not in BULKY}


def previous_page(args) -> tuple[dict, str]:
    """The docs results JSON as the last run left it, and where it came from; ({}, "") when there is
    none or it was measured with other steps, --quick or --set (its numbers would not compare)."""
    path = Path(args.docs) / DOCS_JSON
    if not path.is_file():
        return {}, ""
    prev = common.read_json(path)
    s = prev.get("settings", {})
    if (s.get("steps"), bool(s.get("quick")), s.get("overrides", [])) != (args.steps, bool(args.quick), args.overrides):
        print(f"{path}: measured with other settings; nothing is carried or reused from it", flush=True)
        return {}, ""
    return prev, source(path)


def source(path: Path) -> str:
    """'commit abc1234' when git holds the file unmodified (the commit that wrote those numbers), else its path."""
    import subprocess

    try:
        sha = subprocess.run(["git", "log", "-1", "--format=%h", "--", path.name], cwd=path.parent,
                             capture_output=True, text=True, timeout=30).stdout.strip()
        clean = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", path.name], cwd=path.parent,
                               capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        sha, clean = "", False
    return f"commit {sha}" if sha and clean else str(path)


def carried(prev: dict, label: str, results: list[dict]) -> dict:
    """The previous page's (variant, width) groups that no run here trained, each labelled with where it
    was measured (its own label if it was already carried), and the per-run records it kept of them."""
    trained = {(r["name"], r["width"]) for r in results}
    return {"groups": [dict(gr, carried=gr.get("carried") or label) for gr in prev.get("groups", [])
                       if (gr["name"], gr["width"]) not in trained],
            "runs": [r for r in prev.get("runs", []) if (r["name"], r["width"]) not in trained]}


def measure(args) -> dict:
    names = common.names(args.variants, VARIANTS, "--variants", "variant") or list(VARIANTS)
    scale_widths = [w for w in common.numbers(args.scale_widths, int, "--scale-widths") if w != args.width]
    if any(w % 16 for w in [args.width] + scale_widths):  # every width must split into the attention heads and the M mixer's heads
        raise LmlabError("--width and --scale-widths must be multiples of 16")
    skipped = {n: why for n in names if (why := missing_requirement(VARIANTS[n]))}
    names = [n for n in names if n not in skipped]
    if not names:
        raise LmlabError("no variant could run: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    for name, why in skipped.items():
        print(f"{name}: skipped ({why})", flush=True)
    out = Path(args.out)
    plan = planned_runs(names, args.seeds, args.width, scale_widths)
    prev, label = previous_page(args)  # read before this run's report overwrites it
    kept_runs = {r["key"]: r for r in prev.get("runs", [])} if args.reuse or args.reuse_only else {}
    if args.reuse_only and not any((out / f"{run_key(r)}.json").is_file() or run_key(r) in kept_runs for r in plan):
        raise LmlabError(f"{out}: none of the grid's {len(plan)} runs has finished there (--reuse-only trains none)")
    measured = {"settings": settings(args), "machine": common.machine(), "planned": plan, "results": [],
                "skipped": skipped, "decode_cost": decode_cost(names, args), "carried": carried(prev, label, [])}
    for i, run in enumerate(plan, 1):
        cached = out / f"{run_key(run)}.json"
        res = common.read_json(cached) if (args.reuse or args.reuse_only) and cached.is_file() \
            else kept_runs.get(run_key(run))  # the run directory lost: the page's own record of the run
        if res is not None and res.get("steps") != args.steps:
            res = None
        if res is None and args.reuse_only:
            continue
        if res is None:
            res = run_one(run, args)
            common.write_json(cached, res)
        measured["results"].append(res)
        measured["carried"] = carried(prev, label, measured["results"])
        common.write_json(out / "results.json", measured)  # a stopped grid still renders
        print(f"[{i}/{len(plan)}] {res['key']}: val_bpb {res['val_bpb']:.4f}  params {res['params']:,}  "
              f"train {res['train_tok_per_s']:.0f} tok/s  rep3 {res['rep3_greedy']:.2f}  ({res['wall_s']:.0f} s)",
              flush=True)
    if not measured["results"]:
        raise LmlabError(f"{out}: none of the grid's {len(plan)} runs has {args.steps} steps (--reuse-only trains none)")
    return measured


def run(args) -> int:
    from .architectures_report import write_report

    path = Path(args.out) / "results.json"
    if args.render_only:
        measured = common.read_json(path)
    else:
        common.use_quick(args, QUICK_FLAGS)
        measured = measure(args)
    print(f"report: {write_report(measured)}")
    return 0
