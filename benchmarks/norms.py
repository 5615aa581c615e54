"""Pre-LN vs Pre-RMSNorm vs Pre-CRMSNorm speed (Jiang et al. 2023 claim 1-10% faster, same function).

    python benchmarks/norms.py [--d-model 256] [--layers 4] [--batch 8] [--context 128] [--threads 1]

Prints JSON, every time a median over interleaved repetitions in the same run, and every ratio
relative to layernorm:
- norm_op: the normalisation alone on [batch*context, d] (forward+backward), with and without gain;
- model_train: a full training step (forward+backward) of the same Transformer with each norm;
- model_infer: a no-grad forward of the same models;
- converted: a trained-shape Pre-LN model against its exact `lmlab convert` Pre-RMSNorm / Pre-CRMSNorm
  versions (parameter-free norms), forward only, with the largest logit difference.
"""
from __future__ import annotations

import argparse
import json

import torch

from lmlab.config import ModelConfig
from lmlab.model import Transformer
from lmlab.model.convert import convert_norm
from lmlab.model.norms import make_norm

from _timing import interleaved_medians, machine

NORMS = ["layernorm", "rmsnorm", "crmsnorm"]


def ratios(times: dict, base: str = "layernorm") -> dict:
    return {k: {"ms": round(v * 1e3, 3), "speedup_vs_layernorm": round(times[base] / v, 3)} for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev, d, N = args.device, args.d_model, args.batch * args.context
    out = {"benchmark": "norms", "machine": machine(dev), "shape": vars(args)}

    # the norm alone (crmsnorm reads d-1 stored coordinates)
    fns = {}
    for kind in NORMS:
        for affine in (True, False):
            norm = make_norm(kind, d, 1e-5, False, affine).to(dev)
            x = torch.randn(N, d - 1 if kind == "crmsnorm" else d, device=dev, requires_grad=True)

            def run(norm=norm, x=x):
                x.grad = None
                norm(x).sum().backward()
            fns[kind if affine else kind + "-no-gain"] = run
    out["norm_op"] = ratios(interleaved_medians(fns, args.reps * 3, device=dev))

    def cfg(norm, **kw):
        return ModelConfig(n_layers=args.layers, d_model=d, n_heads=max(1, d // 64), context=args.context,
                           vocab_size=args.vocab, norm=norm, **kw)

    models = {n: Transformer(cfg(n)).to(dev) for n in NORMS}
    ids = torch.randint(0, args.vocab, (args.batch, args.context), device=dev)

    def step(m):
        def run():
            m.zero_grad(set_to_none=True)
            m(ids, ids)[1].backward()
        return run

    def infer(m):
        def run():
            with torch.no_grad():
                m(ids)
        return run

    for m in models.values():
        m.train()
    out["model_train"] = ratios(interleaved_medians({k: step(m) for k, m in models.items()}, args.reps, device=dev))
    for m in models.values():
        m.eval()
    out["model_infer"] = ratios(interleaved_medians({k: infer(m) for k, m in models.items()}, args.reps, device=dev))

    # a Pre-LN model with non-trivial gains and its exact conversions
    ln = Transformer(cfg("layernorm", tie_embeddings=False)).eval()
    with torch.no_grad():
        for name, p in ln.named_parameters():
            if "norm" in name:
                p.copy_(0.5 + torch.rand_like(p))
    conv = {"layernorm": ln.to(dev), **{t: convert_norm(ln.cpu(), t).to(dev) for t in ("rmsnorm", "crmsnorm")}}
    ln.to(dev)
    with torch.no_grad():
        ref = ln(ids)[0]
        diffs = {t: (conv[t](ids)[0] - ref).abs().max().item() for t in ("rmsnorm", "crmsnorm")}
    out["converted"] = ratios(interleaved_medians({k: infer(m) for k, m in conv.items()}, args.reps, device=dev))
    out["converted_max_abs_logit_diff"] = diffs
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
