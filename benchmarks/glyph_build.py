"""Frozen glyph embedding: build time for the paper's 65,536-token BMP vocabulary, font coverage,
and the Unicode tokenizer's compression (characters per token on held-out text).

    python benchmarks/glyph_build.py [--d-model 128,1024] [--skip-mpl-only]

Target: building the 65,536-token matrix takes well under a minute (cache off).
Coverage is reported for the default font chain and for matplotlib's fonts alone (a machine
without Unifont). Each document is split 90/10; tokenizers train on the 90%. Prints one JSON object.
"""
import argparse
import json
import os
import time

from lmlab.data.corpora import read_corpus
from lmlab.embeddings.glyph import build_glyph_matrix, token_texts
from lmlab.embeddings.render import default_font_chain
from lmlab.tokenizers.unicode import train_bmp, train_corpus


def split(docs, frac=0.1):
    cut = [int(len(d.text) * (1 - frac)) for d in docs]
    return "".join(d.text[:c] for d, c in zip(docs, cut)), {d.name: d.text[c:] for d, c in zip(docs, cut)}


def chars_per_token(tok, texts):
    chars = sum(len(t) for t in texts)
    return round(chars / sum(len(tok.encode(t)) for t in texts), 3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--d-model", default="128,1024")
    ap.add_argument("--skip-mpl-only", action="store_true")
    args = ap.parse_args()
    out = {"load_average_1min": os.getloadavg()[0], "cpus": os.cpu_count()}
    en_train, en_held = split(read_corpus("english-prose"))
    ml_train, ml_held = split(read_corpus("multilingual"))
    bmp = train_bmp(en_train)
    texts = token_texts(bmp, bmp.vocab_size)
    out["bmp_build"] = {}
    for d in (int(x) for x in args.d_model.split(",")):
        t, c = time.perf_counter(), time.process_time()
        _, report = build_glyph_matrix(texts, d, use_cache=False)
        out["bmp_build"][d] = {"seconds": round(time.perf_counter() - t, 2),
                               "cpu_seconds": round(time.process_time() - c, 2)}  # all threads together
    out["coverage_default_chain"] = report
    if not args.skip_mpl_only:
        mpl = [p for p in default_font_chain() if "mpl-data" in p]
        _, out["coverage_matplotlib_only"] = build_glyph_matrix(texts, 128, fonts=mpl, use_cache=False)
    out["chars_per_token"] = {
        "english-prose unicode 2048": chars_per_token(train_corpus(en_train, 2048), en_held.values()),
        "english-prose unicode 8192": chars_per_token(train_corpus(en_train, 8192), en_held.values()),
        "english-prose unicode-bmp 65536": chars_per_token(bmp, en_held.values()),
    }
    ml = train_corpus(ml_train, 4096)
    out["chars_per_token_multilingual_4096"] = {name: chars_per_token(ml, [t]) for name, t in ml_held.items()}
    print(json.dumps(out, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
