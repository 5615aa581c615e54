"""docs/parallel.md's predicted-vs-measured table, from saved `lmlab plan --measure --json` outputs.

    python benchmarks/plan_measure_table.py benchmarks/results/plan_measure_demo_calibrated_run1.json \\
        benchmarks/results/plan_measure_demo_calibrated_run2.json

Prints markdown: one row per measured layout with every run's figures side by side, then one
line per layout with the predicted/measured ratio of each run, calibrated (the profiled rate) and
at the one-thread matmul peak.
"""
from __future__ import annotations

import json
import sys


def _mb(state: dict, part: str) -> float:
    return sum(state.get(part, {}).values()) / 1e6


def table(runs: list[dict]) -> str:
    measured = [{r["layout"]: r for r in run["plans"] if "measured" in r} for run in runs]
    layouts = [name for name in measured[0] if all(name in m for m in measured)]

    def each(fmt, get):
        return ", ".join(fmt.format(get(m[name])) for m in measured)

    lines = ["| layout | train.parallel | tokens/step | predicted tok/s, calibrated | predicted tok/s, matmul peak "
             "| measured tok/s | predicted / measured, calibrated | predicted / measured, matmul peak | planner MB/device | rank-0 state MB "
             "| peak RSS MB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in layouts:
        first = measured[0][name]
        kind = f"`{first['lmlab_parallel']}`" + (" + `offload=optimizer`" if first["offload"] else "")
        state = first["measured"]["rank0_memory_bytes"]
        lines.append(" | ".join([
            f"| {name}", kind, f"{first['tokens_per_step']}",
            each("{:.0f}", lambda r: r["tokens_per_s"]),
            each("{:.0f}", lambda r: r["tokens_per_s_at_matmul_peak"]),
            each("{:.0f}", lambda r: r["measured"]["tokens_per_s"]),
            each("{:.2f}", lambda r: r["tokens_per_s"] / r["measured"]["tokens_per_s"]),
            each("{:.2f}", lambda r: r["tokens_per_s_at_matmul_peak"] / r["measured"]["tokens_per_s"]),
            f"{1e3 * first['memory_gb']['total']:.0f}",
            f"{_mb(state, 'weights'):.1f} + {_mb(state, 'optimizer'):.1f}",
            each("{:.0f}", lambda r: 1e3 * r["measured"]["peak_rss_gb"]) + " |"]))
    lines.append("")
    for i, run in enumerate(runs, 1):
        prof = run["profile"]
        lines.append(f"Run {i}: profiled {prof['tflops'] * 1e3:.1f} GFLOP/s ({prof['tokens_per_s']:.0f} tok/s over "
                     f"{prof['steps']} steps, one process), one-thread matmul peak "
                     f"{run['matmul_peak_tflops'] * 1e3:.1f} GFLOP/s "
                     f"({run['matmul_peak_tflops'] / prof['tflops']:.1f}x the profiled rate).")
        rows = [r for r in run["plans"] if "measured" in r]
        share = [1 - r["time_s"]["compute"] / r["time_s"]["step_s"] for r in rows]
        lines.append(f"Run {i}: predicted communication and offload {100 * min(share):.2f}-{100 * max(share):.2f}% "
                     "of each predicted step; step seconds measured vs predicted: " + ", ".join(
                         f"{r['layout']} {r['tokens_per_step'] / r['measured']['tokens_per_s']:.2f} vs "
                         f"{r['time_s']['step_s']:.2f}" for r in rows) + ".")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table([json.load(open(path)) for path in sys.argv[1:]]))
