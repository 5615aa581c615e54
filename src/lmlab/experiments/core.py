"""`lmlab experiment core`: the measured figures of the core (docs/core.md).

Trains the `demo` preset (embedded Shakespeare) and the `shakespeare-char` preset
(tinyshakespeare, nanoGPT's shape) within a wall-clock budget each, then writes their validation
loss / bits per byte, throughput and loss curves to core-results.json beside the doc; the doc and
its PNG are drawn from that file (core_report.py). Runs that exist are resumed, not redone.
"""
from __future__ import annotations

import statistics
from pathlib import Path

from . import common
from ..options import COUNT, POSITIVE_FLOAT

NAME = "core"
HELP = "train the demo and shakespeare-char presets on this machine and write docs/core.md"
RUNS = {"demo": "demo (embedded Shakespeare, char)", "shakespeare-char": "shakespeare-char (tinyshakespeare)"}
# --quick: both presets shrunk to seconds, on tinyshakespeare (the embedded corpus would be downloaded)
QUICK = dict(model=dict(n_layers=1, d_model=32, n_heads=2, context=32),
             data=dict(corpus="tinyshakespeare"),
             train=dict(max_steps=4, batch_size=4, eval_every=2, eval_batches=1, ckpt_every=4, max_minutes=0.0,
                        dtype="float32", progress=False))


def add_arguments(p) -> None:
    p.add_argument("--work", default="runs/core", help="where the runs go")
    p.add_argument("--doc", default="docs/core.md")
    p.add_argument("--minutes", type=POSITIVE_FLOAT, default=30.0, help="wall-clock budget for shakespeare-char")
    p.add_argument("--sc-steps", type=COUNT, default=5000)
    p.add_argument("--sc-batch", type=COUNT, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--render-only", "--report-only", dest="render_only", action="store_true",
                   help="rewrite the doc from core-results.json beside it (nothing is trained)")
    p.add_argument("--quick", action="store_true", help="a smoke run: tiny models, a few steps each")


def results_path(doc: Path) -> Path:
    return doc.parent / "core-results.json"


def preset_config(preset: str, out: Path, args):
    """The preset (or the config the run in `out` was started with) with this experiment's changes."""
    from .. import config

    saved = out / "config.toml"
    cfg = config.load(str(saved) if saved.is_file() else preset)
    cfg = common.configured(cfg, train=dict(device=args.device))
    if preset == "shakespeare-char":
        cfg = common.configured(cfg, train=dict(max_steps=args.sc_steps, batch_size=args.sc_batch,
                                                max_minutes=args.minutes))
    return common.configured(cfg, **QUICK) if args.quick else cfg


def summary(run: Path) -> dict:
    from ..train.metrics import read

    rows = read(run)
    ev = [r for r in rows if "val_loss" in r]
    return {"steps": rows[-1]["step"], "tokens": rows[-1]["tokens"], "elapsed_min": rows[-1]["elapsed_s"] / 60,
            "tok_per_s_median": statistics.median(r["tok_per_s"] for r in rows),
            "val_loss": ev[-1]["val_loss"] if ev else None, "val_bpb": ev[-1]["val_bpb"] if ev else None,
            "best_val_loss": min(r["val_loss"] for r in ev) if ev else None}


def settings(args) -> dict:
    """The flags the report's regenerating command names."""
    return {"work": args.work, "sc_steps": args.sc_steps, "sc_batch": args.sc_batch, "minutes": args.minutes,
            "quick": args.quick}


def measure(args) -> dict:
    from ..train.loop import train

    work = Path(args.work)
    for preset in RUNS:
        train(preset_config(preset, work / preset, args), work / preset, resume=True)
    return {"runs": {label: summary(work / preset) for preset, label in RUNS.items()},
            "machine": common.machine(), "settings": settings(args),
            "curves": {label: {"train": common.curve(work / preset, "loss"),
                               "val": common.curve(work / preset, "val_loss")} for preset, label in RUNS.items()}}


def run(args) -> int:
    import json

    from .core_report import claims_of, write_report

    doc = Path(args.doc)
    if args.render_only:
        results = common.read_json(results_path(doc))
        results.setdefault("settings", settings(args))  # a file from before settings were recorded
    else:
        results = measure(args)
    results["claims"] = claims_of(results)  # derived from the numbers, so rewritten with them
    common.write_json(results_path(doc), results)
    write_report(results, doc)
    print(json.dumps(results["runs"], indent=1))
    return 0
