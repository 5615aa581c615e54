"""Structured FFN speed vs a dense GELU MLP (d -> 4d -> d), forward + backward, at ~63% and ~32% of
the FFN parameters (Wei et al. 2024 claim ~1.4x and ~2.5x at width >= 1536, on GPUs).

    python benchmarks/structured_ffn.py [--widths 384,768,1024,1536,2048] [--tokens 512] [--threads 1]

Prints JSON: per width and variant the parameter fraction, the median fwd+bwd time and its speed-up
over the dense MLP measured in the same run, and single-token decoding time factored vs pre-merged.
"""
from __future__ import annotations

import argparse
import copy
import json

import torch

from lmlab.config import ModelConfig
from lmlab.model.ffn import MLP
from lmlab.model.structured_ffn import StructuredMLP, premerge

from _timing import interleaved_medians, machine

# (name, kind, config fields): ~63% and ~32% of the dense FFN's parameters
VARIANTS = [
    ("lowrank-63", "lowrank", dict(ffn_rank=0.5)),
    ("blockdense-63", "blockdense", dict(ffn_blocks=2, ffn_rank=2 / 3)),
    ("blockshuffle-63", "blockshuffle", dict(ffn_blocks=2)),
    ("lowrank-32", "lowrank", dict(ffn_rank=0.25)),
    ("blockdense-32", "blockdense", dict(ffn_blocks=2, ffn_rank=1 / 3)),
    ("blockshuffle-32", "blockshuffle", dict(ffn_blocks=4)),
]


def n_params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--widths", default="384,768,1024,1536,2048")
    ap.add_argument("--tokens", type=int, default=512, help="tokens per forward (batch x sequence)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--decode-calls", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared CPU)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = args.device
    results = []
    for d in (int(w) for w in args.widths.split(",")):
        cfg = ModelConfig(d_model=d, n_layers=12)
        mods = {"dense": MLP(cfg)}
        for name, kind, kw in VARIANTS:
            mods[name] = StructuredMLP(ModelConfig(d_model=d, n_layers=12, **kw), kind)
        dt = getattr(torch, args.dtype)
        mods = {k: m.to(dev, dt) for k, m in mods.items()}
        x = torch.randn(args.tokens, d, device=dev, dtype=dt, requires_grad=True)

        def fwd_bwd(m):
            def run():
                m.zero_grad(set_to_none=True)
                m(x).sum().backward()
            return run

        train = interleaved_medians({k: fwd_bwd(m) for k, m in mods.items()}, args.reps, device=dev)
        one = torch.randn(1, 1, d, device=dev, dtype=dt)

        def decode(m):
            def run():
                with torch.no_grad():
                    for _ in range(args.decode_calls):
                        m(one)
            return run

        for m in mods.values():
            m.eval()
        merged = {k + "+merged": copy.deepcopy(m) for k, m in mods.items() if k != "dense"}
        for m in merged.values():
            premerge(m)
        dec = interleaved_medians({k: decode(m) for k, m in {**mods, **merged}.items()}, args.reps, device=dev)
        dense_p = n_params(mods["dense"])
        for k, m in mods.items():
            row = {"width": d, "variant": k, "params_frac": round(n_params(m) / dense_p, 4),
                   "fwd_bwd_ms": round(train[k] * 1e3, 3), "speedup_vs_dense": round(train["dense"] / train[k], 3),
                   "decode_us_per_token": round(dec[k] / args.decode_calls * 1e6, 2)}
            if k != "dense":
                row["decode_merged_us_per_token"] = round(dec[k + "+merged"] / args.decode_calls * 1e6, 2)
            results.append(row)
    print(json.dumps({"benchmark": "structured_ffn", "machine": machine(dev), "dtype": args.dtype, "tokens": args.tokens,
                      "reps": args.reps, "results": results}, indent=1))


if __name__ == "__main__":
    main()
