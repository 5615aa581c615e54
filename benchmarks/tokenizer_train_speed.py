"""SuperBPE stage-2 training time against HF `tokenizers` BPE training time, same corpus and vocab.

    python benchmarks/tokenizer_train_speed.py [--corpus shakespeare] [--vocab 32768] [--transition 16384] [--repeats 1]

Target: stage 2 (chunking, stage-1 segmentation by HF, our incremental trainer, building
the tokenizer) takes at most 5x the time HF needs to train plain BPE to the full vocabulary.
Runs are interleaved so that load on a shared machine hits both; medians are reported.
Prints one JSON object.
"""
import argparse
import json
import os
import platform
import statistics
import time

from lmlab.data.corpora import read_corpus
from lmlab.tokenizers import bpe, superbpe


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="shakespeare")
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--transition", type=int, default=16384)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    text = "".join(d.text for d in read_corpus(args.corpus))
    hf, s1, s2 = [], [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        bpe.train_hf_bpe(text, args.vocab)
        hf.append(time.perf_counter() - t0)
        tok = superbpe.train(text, args.vocab, args.transition)
        s1.append(tok.train_seconds["stage1"])
        s2.append(tok.train_seconds["stage2"])
    out = {
        "corpus": args.corpus, "mb": round(len(text.encode()) / 1e6, 2), "vocab": args.vocab,
        "transition": args.transition, "vocab_reached": tok.vocab_size,
        "hf_bpe_s": statistics.median(hf), "stage1_s": statistics.median(s1), "stage2_s": statistics.median(s2),
        "stage2_vs_hf_bpe": statistics.median(s2) / statistics.median(hf), "target": "<= 5",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }
    out["meets_target"] = out["stage2_vs_hf_bpe"] <= 5
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
