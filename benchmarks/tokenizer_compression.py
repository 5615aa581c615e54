"""Tokens SuperBPE saves over BPE on held-out English prose, per vocabulary size and transition t.

    python benchmarks/tokenizer_compression.py [--corpus english-prose] [--extra shakespeare]
        [--vocabs 8192,16384,32768] [--transitions 0.25,0.5,0.75,0.9]

Every document is split into its first 85% (training) and last 15% (held out); `--extra` adds a
whole corpus to the training text (1 MB of prose cannot fill a 32k BPE vocabulary).
Target: >= 15% fewer tokens than BPE at vocab 32768. Prints one JSON object.
"""
import argparse
import json

from lmlab.data.corpora import read_corpus
from lmlab.experiments.superbpe import parse_list, split_corpus, sweep


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="english-prose")
    ap.add_argument("--extra", default="", help="corpus added whole to the training text")
    ap.add_argument("--vocabs", default="8192,16384,32768")
    ap.add_argument("--transitions", default="0.25,0.5,0.75,0.9")
    args = ap.parse_args()
    train_text, held = split_corpus(args.corpus, 0.15)
    if args.extra:
        train_text += "".join(d.text for d in read_corpus(args.extra))
    rows = sweep(train_text, held, parse_list(args.vocabs, int, "--vocabs"),
                 parse_list(args.transitions, float, "--transitions"), log=lambda *a: None)
    best = {}
    for r in rows:
        current = best.get(r["vocab"], {"token_reduction": -1})["token_reduction"]
        if r["kind"] == "superbpe" and r["token_reduction"] > current:
            best[r["vocab"]] = r
    out = {
        "train": args.corpus + (f" + {args.extra}" if args.extra else ""),
        "train_mb": round(len(train_text.encode()) / 1e6, 2), "held_out_mb": round(len(held.encode()) / 1e6, 3),
        "bpe": {r["vocab"]: {"bytes_per_token": r["bytes_per_token"], "vocab_reached": r["vocab_reached"]}
                for r in rows if r["kind"] == "bpe"},
        "superbpe": [{k: r[k] for k in ("vocab", "transition", "vocab_reached", "bytes_per_token", "token_reduction")}
                     for r in rows if r["kind"] == "superbpe"],
        "best_reduction": {v: {"t": r["transition"], "token_reduction": r["token_reduction"]} for v, r in best.items()},
        "target": ">= 15% fewer tokens at 32768",
    }
    if 32768 in best:
        out["meets_target"] = best[32768]["token_reduction"] >= 0.15
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
