"""report.md and curves.png for `lmlab experiment frozen-glyph`, from its results.json.

The tables of docs/experiments/frozen-glyph.md are these, rendered from
docs/experiments/frozen-glyph-results.json (tests/test_experiment_reports.py checks it).
"""
from __future__ import annotations

from pathlib import Path

from . import common

# seed-paired differences of validation bits/byte shown per corpus: (row, minus row)
COMPARISONS = (("glyph", "trainable"), ("binary", "glyph"), ("gaussian", "glyph"))
SAMPLE_CHARS = 150


def plot_curves(results: dict, path: Path) -> None:
    keys = [k for k in results if results[k]["runs"]]
    if not keys:
        return
    plt = common.pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for emb, r in results[key]["runs"].items():
            steps, bpb = zip(*r["curve"])
            ax.plot(steps, bpb, marker="o", markersize=3, label=f"{emb} ({r['val_bpb']:.3f})")
        ax.set_title(f"{key}: validation bits per byte")
        ax.set_xlabel("step")
        ax.set_ylabel("bits/byte")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(results: dict) -> str:
    """The headline table: one row per corpus and embedding, mean (± sd) over seeds."""
    lines = ["| corpus | embedding | seeds | val bits/byte | MC acc | MC acc_norm | tokens/s | trained params | frozen | minutes |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key, res in results.items():
        for emb, r in res["runs"].items():
            n = len(r["seeds"])
            pm = (lambda m, sd, f: f"{m:{f}} ± {sd:{f}}") if n > 1 else (lambda m, sd, f: f"{m:{f}}")
            mc = r["mc"]
            lines.append(f"| {key} | {emb} | {n} | {pm(r['val_bpb'], r['val_bpb_sd'], '.4f')} | "
                         f"{pm(mc['acc'], mc['acc_sd'], '.3f')} | {pm(mc['acc_norm'], mc['acc_norm_sd'], '.3f')} | "
                         f"{r['tok_per_s']:.0f} | {r['params']:,} | {r['frozen']:,} | {r['minutes']:.1f} |")
    lines.append("")
    lines.append("mean ± sample sd over the row's seeds (when more than one); minutes summed over seeds.")
    for key, res in results.items():
        lines.append(f"{key}: {res['mc_items']} items, {res['mc_chance']:.2f} chance; vocabulary {res['vocab_size']}; "
                     f"validation {res['val_tokens']} tokens")
    return "\n".join(lines) + "\n"


def seed_differences(results: dict) -> str:
    """Validation bits/byte of one embedding minus another's, seed by seed ('' if no pair ran)."""
    rows, seeds = [], []
    for key, res in results.items():
        runs = res["runs"]
        for a, b in COMPARISONS:
            if a in runs and b in runs:
                by_seed = {r["seed"]: r["val_bpb"] for r in runs[b]["seeds"]}
                pairs = [(r["seed"], r["val_bpb"] - by_seed[r["seed"]]) for r in runs[a]["seeds"] if r["seed"] in by_seed]
                seeds += [s for s, _ in pairs if s not in seeds]
                rows.append((key, f"{a} − {b}", dict(pairs)))
    if not rows:
        return ""
    lines = ["Differences per seed (seed-paired, validation bits/byte):", "",
             "| corpus | comparison | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "|---|---|" + "---|" * len(seeds)]
    for key, label, diffs in rows:
        cells = [f"{diffs[s]:+.4f}" if s in diffs else "-" for s in seeds]
        lines.append(f"| {key} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _one_line(text: str) -> str:
    return text.replace("\n", "⏎")


def samples(results: dict) -> str:
    """Each model's sample from its first seed, one table per corpus."""
    keys = [k for k in results if results[k]["runs"]]
    if not keys:
        return ""
    first = next(iter(results[keys[0]]["runs"].values()))["seeds"][0]
    lines = [f"A sample from each model (seed {first['seed']}, temperature 0.8, prompt from the held-out English "
             "text):", ""]
    for key in keys:
        runs = results[key]["runs"]
        prompt = next(iter(runs.values()))["seeds"][0]["sample"]["prompt"]
        lines += [f"{key} models, prompt `{_one_line(prompt)}`:", "",
                  f"| embedding | continuation (first {SAMPLE_CHARS} characters, ⏎ = newline) |", "|---|---|"]
        lines += [f"| {emb} | {_one_line(r['seeds'][0]['sample']['text'][:SAMPLE_CHARS])} |" for emb, r in runs.items()]
        lines.append("")
    return "\n".join(lines)


def report(results: dict) -> str:
    return "\n".join(part for part in (markdown(results), seed_differences(results), samples(results)) if part)


def write_report(results: dict, out: Path) -> None:
    """OUT/curves.png and OUT/report.md."""
    plot_curves(results, out / "curves.png")
    common.write_text(out / "report.md", report(results))
