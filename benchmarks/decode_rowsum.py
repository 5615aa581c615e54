"""The compiled CPU decoder with and without RowSumLinear (model/rowsum_linear.py), in one process.

    python benchmarks/decode_rowsum.py [--shape demo|100m|shakespeare-char] [--threads 1] [--reps 5] [--new 64]
        [--dtypes float32,bfloat16,int8] [--batches 1,16] [--chunks N | --unrealized]

Random weights of the demo shape, of the 100M shape (the demo's architecture at 14 x 768, 12
heads) or of the shakespeare-char config (GPT-2 family, 6 x 384), q/k/v fused into one layer as the
compiled decoder has them. For each dtype one model compiled with the row-sum layers (today's
default on a CPU: fp32 and bf16 always, int8 past a quarter of the last-level cache) and one compiled as before (plain layers, freezing at every
batch size; with --chunks or --unrealized, row-sum layers with that change instead). Decoding of --new
given tokens (the same for every model) after an 8-token prompt at each batch size; every model runs once untimed (it compiles),
then the models alternate for --reps rounds; medians. Also the largest logit difference of each
pair over the same steps, and the weight bandwidth achieved (bytes one batch-1 step reads /
time per token). Prints JSON.
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import statistics
import time

from lmlab import runtime

RUNTIME = runtime.configure()

import torch  # noqa: E402

# shape: (config, overrides); shakespeare-char is the GPT-2-family config (6 x 384)
SHAPES = {"demo": ("demo", []), "100m": ("demo", ["model.n_layers=14", "model.d_model=768", "model.n_heads=12"]),
          "shakespeare-char": ("shakespeare-char", [])}


def random_model(shape: str):
    """A model of SHAPES[shape] with random weights (seed 0) and a 65-symbol vocabulary."""
    from lmlab import config
    from lmlab.model import Transformer

    name, overrides = SHAPES[shape]
    cfg = config.load(name, ["model.dropout=0", *overrides]).model
    cfg.vocab_size = 65
    torch.manual_seed(0)
    return Transformer(cfg).eval()


def shape_args(reps: int) -> argparse.ArgumentParser:
    """The options every decode benchmark here takes: --shape, --threads, --reps, --new."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=sorted(SHAPES), default="100m")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=reps)
    ap.add_argument("--new", type=int, default=64)
    return ap


@torch.no_grad()
def decode_given(model, vocab_size: int, new: int, batch: int = 1):
    """ms per token of `new` one-token steps after an 8-token prompt, and the logits of every step.
    The tokens are fixed (seed 0), not argmax: every model compared sees the same inputs."""
    ids = torch.randint(0, vocab_size, (batch, 8 + new), generator=torch.Generator().manual_seed(0))
    cache = model.new_cache()
    model(ids[:, :8], cache=cache)
    steps, t = [], time.perf_counter()
    for i in range(8, 8 + new):
        steps.append(model(ids[:, i:i + 1], cache=cache)[0])
    return (time.perf_counter() - t) / new * 1e3, torch.cat(steps, 1).float()


def alternate(runs: dict, reps: int):
    """runs: key -> a call returning (ms per token, logits). Each runs once untimed (it compiles),
    then all alternate for `reps` rounds; returns first-run seconds, ms-per-token lists and logits by key."""
    first, times, logits = {}, {}, {}
    for key, run in runs.items():
        t0 = time.perf_counter()
        _, logits[key] = run()
        first[key], times[key] = time.perf_counter() - t0, []
    for _ in range(reps):
        for key, run in runs.items():
            times[key].append(run()[0])
    return first, times, logits


def main():
    ap = shape_args(reps=5)
    ap.add_argument("--dtypes", default="float32,bfloat16,int8")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--chunks", type=int, default=0,
                    help="compare row-sum layers with RowSumLinear.chunks = N (each row's sum in N parts) instead of plain layers")
    ap.add_argument("--unrealized", action="store_true",
                    help="compare row-sum layers whose input row is not realized (RowSumLinear.realize_row = False: "
                         "inductor recomputes the row's producers inside each matrix's loop) instead of plain layers")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    # every model and batch size here is another graph of the same forward: past dynamo's default
    # limit of 8 the rest would silently run eager
    torch._dynamo.config.recompile_limit = torch._dynamo.config.accumulated_recompile_limit = 256
    from lmlab import bench
    from lmlab.infer.prepare import compiled_for_decoding, for_inference, fuse_projections

    base = random_model(args.shape)
    cfg = base.cfg
    cpu = torch.device("cpu")
    batches = [int(b) for b in args.batches.split(",")]

    def build(dtype, rowsum):
        """rowsum False: the baseline (plain layers; with --chunks the row-sum in N parts; with
        --unrealized the row-sum over an unrealized row)."""
        from lmlab.model.rowsum_linear import RowSumLinear

        model = for_inference(copy.deepcopy(base), dtype, cpu, pack=False)
        fuse_projections(model)  # as for_inference(compile=True) does: one q/k/v layer per attention
        compiled = compiled_for_decoding(model, cpu, rowsum=rowsum or bool(args.chunks) or args.unrealized)
        for m in model.modules():  # instance attributes, read when the model first compiles
            if isinstance(m, RowSumLinear) and not rowsum:
                m.chunks = args.chunks or 1
                m.realize_row = not args.unrealized
        return compiled

    models = {(d, r): build(d, r) for d in args.dtypes.split(",") for r in (False, True)}

    load_before = bench.loadavg()
    first, times, logits = alternate({(key, b): functools.partial(decode_given, model, cfg.vocab_size, args.new, b)
                                      for key, model in models.items() for b in batches}, args.reps)
    rows = []
    for dtype in args.dtypes.split(","):
        per_token = bench.decode_bytes_per_token(models[dtype, True], 8 + args.new / 2)["weights"]
        for b in batches:
            off, on = (statistics.median(times[(dtype, r), b]) for r in (False, True))
            rows.append({"dtype": dtype, "batch": b, "off_ms_per_token": off, "on_ms_per_token": on,
                         "speedup": off / on, "tokens_per_s_off": b * 1e3 / off, "tokens_per_s_on": b * 1e3 / on,
                         "spread_on": (max(times[(dtype, True), b]) - min(times[(dtype, True), b])) / on,
                         "spread_off": (max(times[(dtype, False), b]) - min(times[(dtype, False), b])) / off,
                         "weight_gbps_off": per_token / off / 1e6 if b == 1 else None,
                         "weight_gbps_on": per_token / on / 1e6 if b == 1 else None,
                         "max_logit_diff": (logits[(dtype, True), b] - logits[(dtype, False), b]).abs().max().item(),
                         "first_run_s_off": first[(dtype, False), b], "first_run_s_on": first[(dtype, True), b]})
    print(json.dumps({"benchmark": "decode_rowsum", "shape": args.shape,
                      "baseline": (f"row-sum in {args.chunks} parts" if args.chunks else
                                   "row-sum over an unrealized row" if args.unrealized else "plain layers"), "params": sum(p.numel() for p in base.parameters()),
                      "threads": args.threads, "reps": args.reps, "new_tokens": args.new, "rows": rows,
                      "process_settings": RUNTIME, "loadavg_before": load_before,
                      "loadavg_after": bench.loadavg(), "torch": torch.__version__}, indent=1))


if __name__ == "__main__":
    main()
