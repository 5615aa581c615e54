"""How far the fast sampling precisions (generate.dtype bfloat16, int8, w8a8) move a trained model's
next-token distributions from fp32's.

    python benchmarks/sampling_fidelity.py RUN [--text FILE] [--windows 16]

Windows of the model's context length are cut from the last 10% of the text (default: the shared
tinyshakespeare corpus). Prints JSON: per dtype, KL(fp32 || dtype) per position (mean, max), the
mean loss of both, and how often the most likely next token is the same.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from lmlab.checkpoint import load_model
from lmlab.infer.prepare import for_inference

DEFAULT_TEXT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare.txt"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--text", default=str(DEFAULT_TEXT))
    ap.add_argument("--windows", type=int, default=16)
    args = ap.parse_args()
    model, tok, _ = load_model(args.run)
    text = Path(args.text).read_text(encoding="utf-8")
    ids = tok.encode(text[int(len(text) * 0.9):])
    T = model.cfg.context
    starts = torch.linspace(0, len(ids) - T - 1, args.windows).long().tolist()
    batch = torch.tensor([ids[s:s + T + 1] for s in starts])
    x, y = batch[:, :-1], batch[:, 1:]
    with torch.no_grad():
        ref = model(x)[0].float().log_softmax(-1)
        out = {"run": args.run, "text": args.text, "tokens": x.numel(),
               "fp32_loss": float(-ref.gather(-1, y[..., None]).mean())}
        for name in ("bfloat16", "int8", "w8a8"):
            m = for_inference(load_model(args.run)[0], name, torch.device("cpu"))
            got = m(x)[0].float().log_softmax(-1)
            kl = (ref.exp() * (ref - got)).sum(-1)
            out[name] = {"kl_mean": float(kl.mean()), "kl_max": float(kl.max()),
                         "loss": float(-got.gather(-1, y[..., None]).mean()),
                         "top1_agreement": float((got.argmax(-1) == ref.argmax(-1)).float().mean())}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
