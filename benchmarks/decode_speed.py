"""Decoding speed at long context: vanilla attention vs LM-Infinite, same model, same run.

    python benchmarks/decode_speed.py [RUN] [--multipliers 1,2,4,8,32] [--new 64] [--repeats 5]

Without RUN, a randomly initialised model (context 128, 4 layers, d 128) is timed: speed does not
depend on the weights. Prints one JSON object; `speedup` = LM-Infinite tok/s / vanilla tok/s (medians of interleaved runs).
"""
import argparse
import json
import statistics

import torch

from lmlab.config import ModelConfig
from lmlab.eval.long import decode_speed
from lmlab.model import Transformer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run", nargs="?")
    ap.add_argument("--multipliers", default="1,2,4,8,32")
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n-global", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.run:
        from lmlab.train.checkpoint import load_model
        model = load_model(args.run)[0]
    else:
        torch.manual_seed(0)
        model = Transformer(ModelConfig(n_layers=4, d_model=128, n_heads=4, context=128, vocab_size=256)).eval()
    rows = []
    for m in (int(x) for x in args.multipliers.split(",")):
        L = m * model.cfg.context
        v, i = [], []
        for _ in range(args.repeats):  # interleaved, so load changes on a shared machine hit both
            v.append(decode_speed(model, L, args.new, "vanilla", repeats=1)["tok_per_s"])
            i.append(decode_speed(model, L, args.new, "lminfinite", args.n_global, repeats=1)["tok_per_s"])
        v, i = statistics.median(v), statistics.median(i)
        rows.append({"multiplier": m, "prompt_len": L, "vanilla_tok_per_s": v, "lminfinite_tok_per_s": i,
                     "speedup": i / v})
    print(json.dumps({"benchmark": "decode_speed", "context": model.cfg.context, "threads": args.threads,
                      "n_global": args.n_global, "n_local": model.cfg.context, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
