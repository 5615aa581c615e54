"""Encoding speed: lmlab's BPE / SuperBPE encoders against stock HF `tokenizers` on the same file.

    python benchmarks/tokenizer_encode_speed.py [--file /work/shared/data/tinyshakespeare.txt] [--vocab 8192]

Trains both tokenizers on the file, then times (interleaved, median of --repeats) lmlab's
`encode` (HF underneath, in parallel pieces) and a stock `Tokenizer.from_file(...).encode` of the
whole text. Shows that no pure-Python encoder sits on the hot path. Prints one JSON object.
"""
import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from tokenizers import Tokenizer

from lmlab.data.corpora import read_file
from lmlab.tokenizers import bpe, superbpe


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", default="/work/shared/data/tinyshakespeare.txt")
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    text = read_file(Path(args.file))
    mb = len(text.encode()) / 1e6
    out = {"file": args.file, "mb": round(mb, 3), "vocab": args.vocab}
    for name, tok in (("bpe", bpe.train(text, args.vocab)), ("superbpe", superbpe.train(text, args.vocab))):
        with tempfile.TemporaryDirectory() as tmp:
            tok.save(tmp)
            stock = Tokenizer.from_file(str(Path(tmp) / "tokenizer.json"))
        ours, theirs = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ids = tok.encode(text)
            ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ref = stock.encode(text).ids
            theirs.append(time.perf_counter() - t0)
        assert ids == ref
        out[name] = {"lmlab_mb_per_s": mb / statistics.median(ours),
                     "stock_hf_mb_per_s": mb / statistics.median(theirs),
                     "bytes_per_token": len(text.encode()) / len(ids), "same_ids": ids == ref}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
