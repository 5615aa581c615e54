"""Decoding speed at long context: vanilla KV-cache attention vs LM-Infinite, same model, same run.

    python benchmarks/decode_speed.py [RUN] [--multipliers 1,2,4,8,16,32] [--batches 1,16]
        [--layers 6 --d-model 384 --heads 6] [--new 32] [--repeats 5] [--threads 1]

Without RUN, a randomly initialised model (context 128; default 6 layers, d_model 384, ~10.7M
parameters, fp32) is timed: speed does not depend on the weights. Per (batch, multiplier) each
method's cache is prefilled once (not timed) and copied for every run; runs of the two methods
alternate. Prints one JSON object; `speedup` = LM-Infinite tok/s / vanilla tok/s (medians).
"""
import argparse
import json
import os

import torch

from lmlab.config import ModelConfig
from lmlab.eval.long import decode_speed_table
from lmlab.model import Transformer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run", nargs="?")
    ap.add_argument("--multipliers", default="1,2,4,8,16,32")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--d-model", type=int, default=384)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n-global", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.run:
        from lmlab.checkpoint import load_model
        model = load_model(args.run)[0].eval()
    else:
        torch.manual_seed(0)
        model = Transformer(ModelConfig(n_layers=args.layers, d_model=args.d_model, n_heads=args.heads, context=128,
                                        vocab_size=256)).eval()
    rows = decode_speed_table(model, [int(m) for m in args.multipliers.split(",")],
                              [int(b) for b in args.batches.split(",")], args.new, args.repeats, args.n_global)
    print(json.dumps({"benchmark": "decode_speed", "params": model.num_params(), "context": model.cfg.context,
                      "threads": args.threads, "load_avg_1min": os.getloadavg()[0], "n_global": args.n_global,
                      "n_local": model.cfg.context, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
