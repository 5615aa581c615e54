"""Decoding levers, each on vs off in one process: fused q/k/v (eager and compiled) and inductor's
C++ wrapper for the compiled decoder.

    python benchmarks/decode_levers.py [--threads 1] [--reps 9] [--new 128] [--skip compiled]

Random weights of the shakespeare-char shape, bf16 (packed for oneDNN when eager), batch 1,
temperature 0.8, 8-token prompt. Every pair is built from the same weights; runs alternate
(off, on, off, on, ...) after an untimed run of each (which compiles), so load changes hit both
alike; medians are compared. Prints JSON: ms per token and the speed-up of each lever.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from unittest import mock

from lmlab import runtime

RUNTIME = runtime.configure()

import torch  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--skip", default="", help="comma-separated: eager, compiled")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from lmlab import bench, config
    from lmlab.infer.generate import decode_steps
    from lmlab.model import Transformer
    from lmlab.infer import prepare
    from lmlab.infer.prepare import compiled_for_decoding, for_inference, fuse_projections

    cfg = config.load("shakespeare-char").model
    cfg.vocab_size, cfg.dropout = 322, 0.0
    torch.manual_seed(0)
    base = Transformer(cfg).eval()
    cpu = torch.device("cpu")
    skip = set(filter(None, args.skip.split(",")))

    def eager(fuse):
        if fuse:
            return for_inference(copy.deepcopy(base), "bfloat16", cpu)
        with mock.patch.object(prepare, "fuse_projections", lambda model: None):  # keep q/k/v apart
            return for_inference(copy.deepcopy(base), "bfloat16", cpu)

    def compiled(fuse, cpp_wrapper):
        model = for_inference(copy.deepcopy(base), "bfloat16", cpu, pack=False)
        if fuse:  # what for_inference(compile=True) does; done here so the pair can differ in it alone
            fuse_projections(model)
        settings = {**prepare.inductor_settings(cpu), "cpp_wrapper": cpp_wrapper}
        with mock.patch.object(prepare, "inductor_settings", lambda device: settings):  # read once, here
            return compiled_for_decoding(model, cpu)

    pairs = {}  # lever -> (off, on)
    if "eager" not in skip:
        pairs["fused_qkv_eager"] = (eager(False), eager(True))
    if "compiled" not in skip:
        pairs["fused_qkv_compiled"] = (compiled(False, True), compiled(True, True))
        pairs["cpp_wrapper_compiled"] = (compiled(True, False), pairs["fused_qkv_compiled"][1])
    prompt = torch.randint(0, cfg.vocab_size, (1, 8), generator=torch.Generator().manual_seed(0))

    def ms_per_token(model):
        t = time.perf_counter()
        out = list(decode_steps(model, prompt, args.new, temperature=0.8))
        assert len(out) == args.new
        return (time.perf_counter() - t) / args.new * 1e3

    load_before = bench.loadavg()
    models = {id(m): m for pair in pairs.values() for m in pair}
    warm = {key: ms_per_token(m) for key, m in models.items()}  # compiles; untimed
    times = {key: [] for key in models}
    for _ in range(args.reps):
        for key, m in models.items():
            times[key].append(ms_per_token(m))
    median = {key: statistics.median(v) for key, v in times.items()}
    result = {}
    for lever, (off, on) in pairs.items():
        result[lever] = {"off_ms_per_token": median[id(off)], "on_ms_per_token": median[id(on)],
                         "speedup": median[id(off)] / median[id(on)],
                         "first_run_s_off": warm[id(off)] * args.new / 1e3, "first_run_s_on": warm[id(on)] * args.new / 1e3}
    print(json.dumps({"benchmark": "decode_levers", "threads": args.threads, "reps": args.reps,
                      "new_tokens": args.new, "dtype": "bfloat16", "levers": result,
                      "process_settings": RUNTIME, "loadavg_before": load_before,
                      "loadavg_after": bench.loadavg(), "torch": torch.__version__}, indent=1))


if __name__ == "__main__":
    main()
