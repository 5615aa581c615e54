"""`lmlab experiment norms`: Pre-LN vs Pre-RMSNorm vs Pre-CRMSNorm (Jiang et al. 2023), measured.

Two claims of the paper:
- equivalence: a Pre-LN Transformer becomes a Pre-RMSNorm or a Pre-CRMSNorm one computing the same
  function; measured as the largest logit difference (and argmax agreement) between a Pre-LN model
  with non-trivial gains and its conversions by `lmlab.model.convert.convert_norm`;
- speed: the RMSNorm variants train and infer faster; measured as the time of a training step and
  of a no-grad forward of the same shape with each norm, all in one process with the calls
  interleaved (one of each per round), plus a second layernorm model (an A/A control: how large a
  difference the machine's noise alone makes), and the converted models' forward against the original.

Results go to norms-results.json beside the doc, with its `claims`; the doc is drawn from it alone.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

from . import common
from ..errors import LmlabError
from ..options import COUNT

NAME = "norms"
HELP = "Pre-LN vs Pre-RMSNorm vs Pre-CRMSNorm: exact conversion and training / inference speed"
NORMS = ("layernorm", "rmsnorm", "crmsnorm")
CONTROL = "layernorm (again)"   # a second, identical layernorm model: the A/A control
HEAD_WIDTH = 64                 # n_heads = d_model / 64
QUICK_FLAGS = dict(d_model=64, layers=1, batch=2, context=16, reps=2)


def add_arguments(p) -> None:
    p.add_argument("--doc", default="docs/experiments/norms.md")
    p.add_argument("--d-model", type=COUNT, default=256, help=f"model width, a multiple of {HEAD_WIDTH} (default 256)")
    p.add_argument("--layers", type=COUNT, default=4)
    p.add_argument("--batch", type=COUNT, default=8)
    p.add_argument("--context", type=COUNT, default=128)
    p.add_argument("--vocab", type=COUNT, default=256)
    p.add_argument("--reps", type=COUNT, default=7, help="timed rounds per measure (after one untimed round)")
    p.add_argument("--threads", type=COUNT, default=1, help="torch threads (default 1)")
    p.add_argument("--render-only", dest="render_only", action="store_true",
                   help="rewrite the doc from the results JSON beside it (nothing is measured)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: " + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in QUICK_FLAGS.items()))


def results_path(doc: Path) -> Path:
    return doc.with_name(doc.stem + "-results.json")


def interleaved(fns: dict, reps: int) -> dict:
    """Seconds of every timed call of each fn; one call of each per round (load drift hits all alike)."""
    times = {k: [] for k in fns}
    for r in range(reps + 1):  # round 0 untimed: allocations, kernel selection
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            if r:
                times[k].append(time.perf_counter() - t)
    return times


def summary(times: dict) -> dict:
    """Median and fastest ms per fn, and layernorm's time over each one's, by either (above 1 = faster)."""
    med = {k: statistics.median(v) for k, v in times.items()}
    return {k: {"ms_median": med[k] * 1e3, "ms_min": min(v) * 1e3, "speedup_vs_layernorm": med["layernorm"] / med[k],
                "speedup_fastest": min(times["layernorm"]) / min(v)} for k, v in times.items()}


def measure(args) -> dict:
    import torch

    from ..config import ModelConfig
    from ..model import Transformer
    from ..model.convert import convert_norm

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    def shape(norm, **kw):
        return ModelConfig(n_layers=args.layers, d_model=args.d_model, n_heads=args.d_model // HEAD_WIDTH,
                           context=args.context, vocab_size=args.vocab, norm=norm, **kw)

    ids = torch.randint(0, args.vocab, (args.batch, args.context))
    models = {n: Transformer(shape(n)) for n in NORMS}
    models[CONTROL] = Transformer(shape("layernorm"))

    def step(m):
        def run():
            m.zero_grad(set_to_none=True)
            m(ids, ids)[1].backward()
        return run

    def forward(m):
        def run():
            with torch.no_grad():
                m(ids)
        return run

    t0 = time.perf_counter()
    for m in models.values():
        m.train()
    train = summary(interleaved({k: step(m) for k, m in models.items()}, args.reps))
    for m in models.values():
        m.eval()
    infer = summary(interleaved({k: forward(m) for k, m in models.items()}, args.reps))

    # Pre-LN with gains away from 1 (a fresh model's are all 1: folding them would be a no-op)
    ln = Transformer(shape("layernorm", tie_embeddings=False)).eval()
    with torch.no_grad():
        for name, p in ln.named_parameters():
            if "norm" in name:
                p.copy_(0.5 + torch.rand_like(p))
    converted = {"layernorm": ln, **{t: convert_norm(ln, t).eval() for t in NORMS[1:]}}
    with torch.no_grad():
        ref = ln(ids)[0]
        equivalence = {}
        for t in NORMS[1:]:
            out = converted[t](ids)[0]
            equivalence[t] = {"max_abs_logit_diff": (out - ref).abs().max().item(),
                              "max_abs_logit": ref.abs().max().item(),
                              "argmax_agree": (out.argmax(-1) == ref.argmax(-1)).float().mean().item(),
                              "params": converted[t].num_params()}
    conv_speed = summary(interleaved({k: forward(m) for k, m in converted.items()}, args.reps))
    return {"settings": {k: getattr(args, k) for k in ("d_model", "layers", "batch", "context", "vocab", "reps",
                                                        "threads", "quick")},
            "machine": common.machine(), "params": {k: m.num_params() for k, m in models.items()},
            "params_converted_from": ln.num_params(), "tokens": args.batch * args.context,
            "train_step": train, "forward": infer, "converted_forward": conv_speed, "equivalence": equivalence,
            "wall_s": time.perf_counter() - t0}


def run(args) -> int:
    from .norms_report import claims_of, write_report

    common.use_quick(args, QUICK_FLAGS)
    if args.d_model % HEAD_WIDTH:
        raise LmlabError(f"--d-model must be a multiple of {HEAD_WIDTH} (heads of width {HEAD_WIDTH}), not {args.d_model}")
    doc = Path(args.doc)

    def measured(a):
        res = measure(a)
        res["claims"] = claims_of(res)
        return res

    return common.measure_or_reread(args, doc, results_path(doc), measured, write_report)
