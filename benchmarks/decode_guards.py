"""The compiled CPU decoder with and without dynamo's guards on the model's modules, in one process.

    python benchmarks/decode_guards.py [--shape demo|100m|shakespeare-char] [--threads 1] [--reps 7] [--new 64]
        [--dtypes float32,bfloat16,int8]

Before each compiled call dynamo checks its guards; by default (prepare.compiled_step) the
compiled decoder drops those on the model's own modules (their attributes, hooks and parameters)
and keeps those on the call's inputs and shapes. The baseline keeps them all
(prepare.decoding_model_guards = True). Random weights of a shape as in decode_rowsum.py, batch 1,
the same given tokens after an 8-token prompt for both; each model runs once untimed (it compiles),
then the pair alternates for --reps rounds; medians. The logits of the two must be identical (the
same graph, only its guards differ): max_logit_diff. Prints JSON.
"""
from __future__ import annotations

import copy
import functools
import json
import statistics

from lmlab import runtime

RUNTIME = runtime.configure()

import torch  # noqa: E402

from decode_rowsum import alternate, decode_given, random_model, shape_args  # noqa: E402


def main():
    ap = shape_args(reps=7)
    ap.add_argument("--dtypes", default="float32,bfloat16,int8")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from lmlab import bench
    from lmlab.infer import prepare

    base = random_model(args.shape)
    cfg = base.cfg
    cpu = torch.device("cpu")

    def build(dtype, model_guards):
        prepare.decoding_model_guards = model_guards  # read when compiled_for_decoding builds its steps
        try:
            return prepare.for_inference(copy.deepcopy(base), dtype, cpu, compile=True)
        finally:
            prepare.decoding_model_guards = False

    dtypes = args.dtypes.split(",")
    models = {(d, g): build(d, g) for d in dtypes for g in (True, False)}

    load_before = bench.loadavg()
    first, times, logits = alternate({key: functools.partial(decode_given, model, cfg.vocab_size, args.new)
                                      for key, model in models.items()}, args.reps)
    rows = []
    for d in dtypes:
        off, on = (statistics.median(times[d, g]) for g in (True, False))
        rows.append({"dtype": d, "all_guards_ms_per_token": off, "no_model_guards_ms_per_token": on,
                     "speedup": off / on, "saved_ms_per_token": off - on,
                     "spread_all_guards": (max(times[d, True]) - min(times[d, True])) / off,
                     "spread_no_model_guards": (max(times[d, False]) - min(times[d, False])) / on,
                     "max_logit_diff": (logits[d, True] - logits[d, False]).abs().max().item(),
                     "first_run_s_all_guards": first[d, True], "first_run_s_no_model_guards": first[d, False]})
    print(json.dumps({"benchmark": "decode_guards", "shape": args.shape,
                      "params": sum(p.numel() for p in base.parameters()), "threads": args.threads,
                      "reps": args.reps, "new_tokens": args.new, "rows": rows, "process_settings": RUNTIME,
                      "loadavg_before": load_before, "loadavg_after": bench.loadavg(),
                      "torch": torch.__version__}, indent=1))


if __name__ == "__main__":
    main()
