"""Batch-1 decoding with int8 activations too (`--dtype w8a8`, lmlab's int8 kernel) against int8
weights only (`--dtype int8`), in one process.
    python benchmarks/decode_w8a8.py [--shape demo|100m|shakespeare-char] [--threads 1] [--reps 7] [--new 64]

Random weights of a shape as in decode_rowsum.py, quantised both ways, eager and compiled (int8
compiled takes its own best path: the row-sum layers past a quarter of the last-level cache,
`_weight_int8pack_mm` below; w8a8 calls lmlab::w8a8_rows). Each model decodes --new given tokens
after an 8-token prompt once untimed (compiling), then the models alternate for --reps rounds;
medians. What the activations' rounding costs: the logits of each against the fp32 model's on the
same tokens (max_logit_diff_vs_fp32; random weights, so a check of size, not of quality).
Prints JSON.
"""
from __future__ import annotations

import copy
import functools
import json
import statistics
import time

from lmlab import runtime

RUNTIME = runtime.configure()

import torch  # noqa: E402

from decode_rowsum import alternate, decode_given, random_model, shape_args  # noqa: E402


def main():
    ap = shape_args(reps=7)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from lmlab import bench, kernels
    from lmlab.infer import prepare

    base = random_model(args.shape)
    cfg = base.cfg
    cpu = torch.device("cpu")
    t0 = time.perf_counter()
    if not kernels.load():
        raise SystemExit(f"the w8a8 kernel could not be built: {kernels.error()}")
    build_s = time.perf_counter() - t0

    def build(compiled: bool, dtype: str):
        return prepare.for_inference(copy.deepcopy(base), dtype, cpu, compile=compiled)

    models = {(c, d): build(c, d) for c in (False, True) for d in ("int8", "w8a8")}
    reference = copy.deepcopy(base).float().eval()

    load_before = bench.loadavg()
    first, times, logits = alternate({key: functools.partial(decode_given, model, cfg.vocab_size, args.new)
                                      for key, model in models.items()}, args.reps)
    _, fp32_logits = decode_given(reference, cfg.vocab_size, args.new)
    weights_bytes = bench.decode_bytes_per_token(models[False, "w8a8"], 0)["weights"]
    rows = []
    for c in (False, True):
        i8, w8 = (statistics.median(times[c, d]) for d in ("int8", "w8a8"))
        rows.append({"decoder": "compiled" if c else "eager", "int8_ms_per_token": i8, "w8a8_ms_per_token": w8,
                     "speedup": i8 / w8, "w8a8_weights_gb_per_s": weights_bytes / w8 / 1e6,
                     "spread_int8": (max(times[c, "int8"]) - min(times[c, "int8"])) / i8,
                     "spread_w8a8": (max(times[c, "w8a8"]) - min(times[c, "w8a8"])) / w8,
                     "max_logit_diff_vs_fp32_int8": (logits[c, "int8"] - fp32_logits).abs().max().item(),
                     "max_logit_diff_vs_fp32_w8a8": (logits[c, "w8a8"] - fp32_logits).abs().max().item(),
                     "max_abs_logit_fp32": fp32_logits.abs().max().item(),
                     "first_run_s_int8": first[c, "int8"], "first_run_s_w8a8": first[c, "w8a8"]})
    print(json.dumps({"benchmark": "decode_w8a8", "shape": args.shape,
                      "params": sum(p.numel() for p in base.parameters()), "weights_bytes_per_token": weights_bytes,
                      "threads": args.threads, "reps": args.reps, "new_tokens": args.new,
                      "cpu": bench.cpu_info(), "kernel_isa": kernels.isa(), "kernel_load_s": build_s,
                      "rows": rows, "process_settings": RUNTIME,
                      "loadavg_before": load_before, "loadavg_after": bench.loadavg(),
                      "torch": torch.__version__}, indent=1))


if __name__ == "__main__":
    main()
