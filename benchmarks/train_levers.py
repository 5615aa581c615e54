"""What each speed lever gives lmlab's training step on this CPU, measured side by side.

    python benchmarks/train_levers.py [--batch 4] [--steps 4] [--threads 1] [--curve-steps 200]

1. Step time of the shakespeare-char shape (10.8M params, context 256) under variants that differ in
   one lever each from the default (bf16 autocast + fp32 master weights, fused AdamW, dropout 0.2 and
   exact GELU as in the preset, lmlab's CPU dropout masks): fp32; foreach AdamW; dropout 0; torch's
   dropout with SDPA's math path; tanh GELU. All variants start from the same weights and see the
   same batches; one step of each per round, rotated. Ratios are against the default.
2. Process settings: the same step, 1 thread vs 2 threads with libgomp's default wait policy, with
   OMP_WAIT_POLICY=PASSIVE, and with LMLAB_MALLOC=system, each in its own process (both are read at
   start-up), rounds interleaved.
3. Loss curve: bf16 vs fp32 over --curve-steps steps of a small model (4x128, context 128), next to
   the fp32 seed-to-seed difference as the noise yardstick.
4. torch.compile of the model vs eager (default settings otherwise), with the compile time.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time

import torch

STEP_SNIPPET = r"""
import sys, time, json
from lmlab import runtime
runtime.configure()
import torch
torch.set_num_threads(int(sys.argv[1]))
sys.path.insert(0, sys.argv[3])
from train_levers import setup, make_step
model, opt, batches, dtype = setup(int(sys.argv[2]), 0.2, "auto", True)
step = make_step(model, opt, batches, dtype)
step()
times = []
for _ in range(int(sys.argv[4])):
    t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
print(json.dumps(times))
"""


def setup(batch: int, dropout: float, dtype_name: str, fused: bool, shape=None, seed=0, steps=8):
    from lmlab import config
    from lmlab.data import loader
    from lmlab.device import pick_dtype
    from lmlab.train.loop import prepare
    from lmlab.train.optim import param_groups

    overrides = [f"model.dropout={dropout}"] + (shape or [])
    cfg = config.load("shakespeare-char", overrides)
    torch.manual_seed(seed)
    _, train_ids, _, model = prepare(cfg, None)
    tc = cfg.train
    opt = torch.optim.AdamW(param_groups(model, tc.weight_decay), lr=tc.lr, betas=(tc.beta1, tc.beta2),
                            **({"fused": True} if fused else {"foreach": True}))
    batches = [loader.random_batch(train_ids, batch, cfg.model.context, 0, i) for i in range(steps)]
    return model.train(), opt, batches, pick_dtype(dtype_name, torch.device("cpu"))


def with_torch_dropout(step):
    """`step` run with torch's Bernoulli dropout and SDPA's own attention dropout instead of lmlab's
    CPU masks: the model's implementation functions are swapped for the call only, so the other
    variants measured in the same process keep lmlab's."""
    import torch.nn.functional as F
    from lmlab.model import attention, dropout

    def swapped():
        saved = attention.attend, dropout.dropout
        attention.attend, dropout.dropout = attention.sdpa, lambda x, p, training=True: F.dropout(x, p, training)
        try:
            step()
        finally:
            attention.attend, dropout.dropout = saved

    return swapped


def make_step(model, opt, batches, dtype, losses=None):
    from lmlab.device import autocast

    i = [0]

    def step():
        x, y = batches[i[0] % len(batches)]
        i[0] += 1
        with autocast(torch.device("cpu"), dtype):
            _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if losses is not None:
            losses.append(loss.item())

    return step


def loadavg():
    from lmlab.bench import loadavg as la

    return la()


def levers(batch: int, steps: int) -> dict:
    base_model, _, batches, _ = setup(batch, 0.2, "auto", True, steps=steps + 1)
    variants = {"default (bf16 autocast, fused AdamW, dropout 0.2, lmlab CPU dropout, exact GELU)":
                ("auto", True, 0.2, False, []),
                "fp32": ("float32", True, 0.2, False, []), "foreach AdamW": ("auto", False, 0.2, False, []),
                "dropout 0": ("auto", True, 0.0, False, []),
                "torch dropout + SDPA math path": ("auto", True, 0.2, True, []),
                "tanh GELU": ("auto", True, 0.2, False, ["model.activation=gelu_tanh"])}
    fns = {}
    for name, (dt, fused, drop, torch_drop, shape) in variants.items():
        model, opt, _, dtype = setup(batch, drop, dt, fused, shape=shape, steps=1)
        model.load_state_dict(copy.deepcopy(base_model.state_dict()))  # same start for every variant
        fns[name] = make_step(model, opt, batches, dtype)
        if torch_drop:
            fns[name] = with_torch_dropout(fns[name])
    times = {k: [] for k in fns}
    names = list(fns)
    for r in range(steps + 1):
        for k in names[r % len(names):] + names[:r % len(names)]:  # rotate: no variant always goes first
            t = time.perf_counter()
            fns[k]()
            if r:
                times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    default = next(iter(med))
    return {k: {"step_ms": v * 1e3, "tokens_per_s": batch * 256 / v, "speed_vs_default": med[default] / v}
            for k, v in med.items()}


def threads(batch: int, steps: int, rounds: int = 2) -> dict:
    here = os.path.dirname(os.path.abspath(__file__))
    settings = {"1 thread": ("1", {}), "2 threads, default wait policy": ("2", {}),
                "2 threads, OMP_WAIT_POLICY=PASSIVE": ("2", {"OMP_WAIT_POLICY": "PASSIVE"}),
                "2 threads, LMLAB_MALLOC=system (glibc returns freed memory)": ("2", {"LMLAB_MALLOC": "system"})}
    times = {k: [] for k in settings}
    for _ in range(rounds):
        for k, (n, extra) in settings.items():
            env = {k2: v for k2, v in os.environ.items() if k2 not in ("OMP_WAIT_POLICY", "LMLAB_MALLOC")}
            env.update({"OMP_NUM_THREADS": n, **extra})
            out = subprocess.run([sys.executable, "-c", STEP_SNIPPET, n, str(batch), here, str(steps)], env=env,
                                 capture_output=True, text=True, timeout=1200)
            if out.returncode:
                raise SystemExit(out.stderr[-2000:])
            times[k] += json.loads(out.stdout)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {k: {"step_ms": v * 1e3, "speed_vs_1_thread": med["1 thread"] / v} for k, v in med.items()}


def compiled(batch: int, steps: int) -> dict:
    """torch.compile(model) vs eager, same weights and batches, interleaved; compile time reported."""
    base, opt_a, batches, dtype = setup(batch, 0.2, "auto", True, steps=steps + 1)
    other, opt_b, _, _ = setup(batch, 0.2, "auto", True, steps=1)
    other.load_state_dict(copy.deepcopy(base.state_dict()))
    eager = make_step(base, opt_a, batches, dtype)
    comp = make_step(torch.compile(other), opt_b, batches, dtype)
    t = time.perf_counter()
    comp()  # compiles
    compile_s = time.perf_counter() - t
    times = {"eager": [], "compiled": []}
    for r in range(steps + 1):
        for k, fn in (("eager", eager), ("compiled", comp))[::1 if r % 2 else -1]:
            t = time.perf_counter()
            fn()
            if r:
                times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"first_step_with_compile_s": compile_s, "eager_step_ms": med["eager"] * 1e3,
            "compiled_step_ms": med["compiled"] * 1e3, "compiled_speed_vs_eager": med["eager"] / med["compiled"]}


def curve(n_steps: int) -> dict:
    shape = ["model.n_layers=4", "model.d_model=128", "model.n_heads=4", "model.context=128"]
    runs = {}
    for name, dt, seed in (("bf16", "auto", 0), ("fp32", "float32", 0), ("fp32 seed 1", "float32", 1)):
        model, opt, batches, dtype = setup(8, 0.0, dt, True, shape=shape, seed=seed, steps=n_steps)
        losses = []
        step = make_step(model, opt, batches, dtype, losses)
        for _ in range(n_steps):
            step()
        runs[name] = losses

    def smooth(v, w=10):
        return [statistics.mean(v[i:i + w]) for i in range(0, len(v) - w + 1)]

    def max_diff(a, b):
        return max(abs(x - y) for x, y in zip(smooth(runs[a]), smooth(runs[b])))

    return {"steps": n_steps, "shape": "4 layers, d 128, context 128, batch 8, dropout 0, constant lr 1e-3",
            "final10_mean": {k: statistics.mean(v[-10:]) for k, v in runs.items()},
            "max_diff_10step_mean_bf16_vs_fp32": max_diff("bf16", "fp32"),
            "max_diff_10step_mean_fp32_seed0_vs_seed1": max_diff("fp32", "fp32 seed 1"),
            "dtype_used_for_bf16_run": "bfloat16" if setup(1, 0.0, "auto", True, shape=shape, steps=1)[3] == torch.bfloat16
            else "float32 (no bf16 on this CPU)"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--curve-steps", type=int, default=200)
    ap.add_argument("--thread-batch", type=int, default=1, help="batch for the thread comparison")
    ap.add_argument("--thread-steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for levers, compile and curve")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: levers,threads,compile,curve")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    skip = set(args.skip.split(","))
    out = {"benchmark": "train_levers", "batch": args.batch, "context": 256, "timed_steps": args.steps,
           "torch": torch.__version__, "loadavg_before": loadavg()}
    if "levers" not in skip:
        out["levers"] = levers(args.batch, args.steps)
        out["levers_threads"] = args.threads
    if "threads" not in skip:
        out["threads"] = threads(args.thread_batch, args.thread_steps)
        out["threads_shape"] = f"batch {args.thread_batch}, {args.thread_steps} timed steps per process, 2 rounds"
    if "compile" not in skip:
        out["compile"] = compiled(args.batch, args.steps)
    if "curve" not in skip:
        out["loss_curve"] = curve(args.curve_steps)
    out["loadavg_after"] = loadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
