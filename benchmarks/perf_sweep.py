"""Training tokens/s and peak memory as context grows and as the model grows; PNG plots for docs/.

    python benchmarks/perf_sweep.py [--threads 1] [--steps 3] [--out benchmarks/results/perf_sweep.json]
                                    [--plots docs/performance]

Each point is one `lmlab bench train` process (so its peak RSS is its own) on the shakespeare-char
preset (tinyshakespeare, char tokenizer, train.dtype=auto), with dropout 0 so attention takes the
fused SDPA path at every length. Few steps per point (a shared 2-core CPU): the first is a warm-up,
the rest are timed (median). Context sweep: the 10.8M-parameter shape, batch 1. Size sweep:
context 256, batch 4. The load average is recorded with every point.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTEXTS = [256, 512, 1024, 2048, 4096]
# (n_layers, d_model, n_heads): about 0.6M, 2M, 11M, 26M, 99M parameters with a char vocabulary
SIZES = [(2, 128, 4), (4, 192, 4), (6, 384, 6), (8, 512, 8), (14, 768, 12)]


def bench_point(overrides: list[str], steps: int, threads: int) -> dict:
    cmd = [sys.executable, "-m", "lmlab.cli", "bench", "train", "-c", "shakespeare-char", "--steps", str(steps),
           "--warmup", "1", "--threads", str(threads), "--set", "model.dropout=0.0"]
    for o in overrides:
        cmd += ["--set", o]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if res.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout)


def plot(rows, key_x, label_x, path, logx=False):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r[key_x] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    a.plot(xs, [r["tokens_per_s"] for r in rows], "o-")
    a.set_xlabel(label_x), a.set_ylabel("training tokens/s")
    a.set_yscale("log")
    b.plot(xs, [r["peak_rss_mb"] for r in rows], "o-", color="C1")
    b.set_xlabel(label_x), b.set_ylabel("peak RSS (MiB)")
    for ax in (a, b):
        ax.set_xscale("log", base=2 if not logx else 10)
        ax.grid(alpha=0.3)
    loads = [r["loadavg_before"][0] for r in rows if r.get("loadavg_before")]
    load = f", load {min(loads):.1f}-{max(loads):.1f}" if loads else ""
    fig.suptitle(f"lmlab bench train, {rows[0]['dtype']}, {rows[0]['threads']} thread(s){load}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "perf_sweep.json"))
    ap.add_argument("--plots", default=str(ROOT / "docs" / "performance"))
    ap.add_argument("--replot", action="store_true", help="only redraw the PNGs from --out")
    args = ap.parse_args()
    if args.replot:
        result = json.loads(Path(args.out).read_text())
        plot(result["context_sweep"], "context", "context (tokens, batch 1)", Path(args.plots) / "context_sweep.png")
        plot(result["size_sweep"], "params", "parameters (context 256, batch 4)", Path(args.plots) / "size_sweep.png",
             logx=True)
        return
    keep = ("tokens_per_s", "step_ms", "mfu", "peak_gflops", "dtype", "params", "peak_rss_mb", "rss_bytes_per_param",
            "tokens_per_step", "threads", "loadavg_before", "loadavg_after")
    context_rows, size_rows = [], []
    for T in CONTEXTS:
        r = bench_point([f"model.context={T}", "train.batch_size=1"], args.steps, args.threads)
        context_rows.append({"context": T, **{k: r[k] for k in keep}})
        print(json.dumps(context_rows[-1]), file=sys.stderr)
    for L, d, h in SIZES:
        r = bench_point([f"model.n_layers={L}", f"model.d_model={d}", f"model.n_heads={h}", "train.batch_size=4"],
                        args.steps, args.threads)
        size_rows.append({"n_layers": L, "d_model": d, "n_heads": h, **{k: r[k] for k in keep}})
        print(json.dumps(size_rows[-1]), file=sys.stderr)
    result = {"benchmark": "perf_sweep", "steps_per_point": args.steps, "timed_steps": args.steps - 1,
              "context_sweep": context_rows, "size_sweep": size_rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    plot(context_rows, "context", "context (tokens, batch 1)", Path(args.plots) / "context_sweep.png")
    plot(size_rows, "params", "parameters (context 256, batch 4)", Path(args.plots) / "size_sweep.png", logx=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
