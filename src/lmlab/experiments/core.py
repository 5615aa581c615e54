"""`lmlab experiment core`: the measured figures of the core (docs/core.md).

Trains the `demo` preset (embedded Shakespeare) and the `shakespeare-char` preset
(tinyshakespeare, nanoGPT's shape) within a wall-clock budget each, then writes their validation
loss / bits per byte, throughput and a loss-curve PNG. Runs that exist are resumed, not redone.
"""
from __future__ import annotations

import os
import platform
import statistics
from pathlib import Path

from .. import jsonio

NAME = "core"
HELP = "train the demo and shakespeare-char presets on this machine and write docs/core.md"


def add_arguments(p) -> None:
    p.add_argument("--work", default="runs/core", help="where the runs go")
    p.add_argument("--doc", default="docs/core.md")
    p.add_argument("--minutes", type=float, default=30.0, help="wall-clock budget for shakespeare-char")
    p.add_argument("--sc-steps", type=int, default=5000)
    p.add_argument("--sc-batch", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--report-only", action="store_true", help="rewrite the doc from the existing runs")


def _train(preset: str, out: Path, overrides: list[str]) -> dict:
    from .. import config
    from ..train.loop import train

    saved = out / "config.toml"
    cfg = config.load(str(saved) if saved.is_file() else preset, overrides)
    return train(cfg, out, resume=True)


def _plot(runs: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..train.metrics import read

    fig, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 4))
    for ax, (label, run) in zip(axes, runs.items()):
        rows = read(run)
        ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=0.8, alpha=0.6, label="train loss")
        ev = [r for r in rows if "val_loss" in r]
        ax.plot([r["step"] for r in ev], [r["val_loss"] for r in ev], "o-", label="validation loss")
        ax.set_title(label)
        ax.set_xlabel("step")
        ax.set_ylabel("loss per token (nats)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


def _summary(run: Path) -> dict:
    from ..train.metrics import read

    rows = read(run)
    ev = [r for r in rows if "val_loss" in r]
    return {"steps": rows[-1]["step"], "tokens": rows[-1]["tokens"], "elapsed_min": rows[-1]["elapsed_s"] / 60,
            "tok_per_s_median": statistics.median(r["tok_per_s"] for r in rows),
            "val_loss": ev[-1]["val_loss"] if ev else None, "val_bpb": ev[-1]["val_bpb"] if ev else None,
            "best_val_loss": min(r["val_loss"] for r in ev) if ev else None}


def run(args) -> int:
    import torch

    work = Path(args.work)
    dev = [f"train.device={args.device}"]
    if not args.report_only:
        _train("demo", work / "demo", dev)
        _train("shakespeare-char", work / "shakespeare-char",
               dev + [f"train.max_steps={args.sc_steps}", f"train.batch_size={args.sc_batch}",
                      f"train.max_minutes={args.minutes}"])
    runs = {"demo (embedded Shakespeare, char)": work / "demo",
            "shakespeare-char (tinyshakespeare)": work / "shakespeare-char"}
    doc = Path(args.doc)
    png = doc.parent / "img" / "core-loss.png"
    _plot(runs, png)
    sums = {k: _summary(v) for k, v in runs.items()}
    machine = {"cpu_threads": torch.get_num_threads(), "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
               "platform": platform.platform(), "torch": torch.__version__, "loadavg_at_end": os.getloadavg()[0]}
    (doc.parent / "core-results.json").write_text(jsonio.dumps({"runs": sums, "machine": machine}, indent=1))
    doc.write_text(_report(sums, machine, args, png.relative_to(doc.parent)))
    print(jsonio.dumps(sums, indent=1))
    return 0


def _report(sums: dict, machine: dict, args, png) -> str:
    rows = "\n".join(
        f"| {name} | {s['steps']} | {s['tokens']:,} | {s['elapsed_min']:.1f} | {s['tok_per_s_median']:,.0f} | "
        f"{s['val_loss']:.3f} | {s['val_bpb']:.3f} |" for name, s in sums.items())
    device = machine["cuda"] or f"CPU, {machine['cpu_threads']} threads"
    return f"""# The core, measured

Regenerate: `lmlab experiment core --work {args.work} --sc-steps {args.sc_steps} --sc-batch {args.sc_batch} --minutes {args.minutes:g}`
(runs land in `{args.work}`; existing runs are resumed; `--report-only` rewrites this page).

| run | steps | tokens | minutes | median tokens/s | val loss (nats/token) | val bits/byte |
|---|---:|---:|---:|---:|---:|---:|
{rows}

Device: {device}; torch {machine['torch']}; load average at the end {machine['loadavg_at_end']:.1f}.
Raw numbers: `core-results.json`.

![loss curves]({png})

- **demo**: the `demo` preset (4 layers, width 256, RMSNorm, SwiGLU, RoPE, characters, bf16
  autocast) on the embedded Shakespeare corpus (49 modern-spelling texts, 6.5 M characters), capped
  at 5 minutes of training as the README's first command is. Bits per byte is the figure to
  compare across tokenizers; for a character model on ASCII text it equals bits per character.
- **shakespeare-char**: nanoGPT's shakespeare_char shape (6 layers, 6 heads, width 384, context
  256, dropout 0.2, learned positions) on `../shared/data/tinyshakespeare.txt` (90/10 split as in
  nanoGPT), batch {args.sc_batch} instead of 64 and a {args.minutes:g}-minute wall-clock budget,
  because 5,000 iterations of batch 64 (82 M tokens) are hours on two CPU cores. The reference
  point, nanoGPT's 1.47 validation loss, is reached after those 5,000 iterations; the loss here
  is where the same shape stands after the stated number of steps, not a claim of parity.
- Training speed side by side with a Hugging Face GPT-2 of the same shape (same batches, same
  process, alternating steps): `python benchmarks/train_vs_hf.py`, results and discussion in
  [performance.md](performance.md).
"""
