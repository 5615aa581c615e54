"""docs/experiments/objectives.md from the measured results of experiments/objectives.py."""
from __future__ import annotations

from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fmt(x, digits=3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _settings(res: dict) -> str:
    s = res["settings"]
    return (f"Settings: `{' '.join('--set ' + b for b in s['base'])}`, {s['steps']} steps, train.seed={s['seed']}; "
            f"command: `{res['command']}` ({res['wall_s'] / 60:.1f} min here"
            + (", **--quick: numbers are a smoke test, not results**" if res.get("quick") else "") + ").")


def mlm_section(res: dict, docs: Path) -> str:
    rows = res["variants"]
    lines = ["| model | parameters | masked-token accuracy | masked loss (nats) | pseudo-perplexity | pseudo bits/char |"
             " train tokens/s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['params']:,} | {_fmt(r['masked_acc'])} | {_fmt(r['masked_loss'])} | "
                     f"{_fmt(r['pseudo_ppl'], 2)} | {_fmt(r['pseudo_bpb'])} | {r['train_tok_per_s']:,.0f} |")
    causal = rows.get("attention, causal")
    bi = rows.get("attention, bidirectional")
    verdict = ""
    if causal and bi:
        better = bi["masked_acc"] > causal["masked_acc"] and bi["pseudo_ppl"] < causal["pseudo_ppl"]
        verdict = (f"\n**Verdict** (one seed): bidirectional attention {'beats' if better else 'does not beat'} causal "
                   f"attention on the same masked objective: accuracy {bi['masked_acc']:.3f} vs {causal['masked_acc']:.3f}, "
                   f"pseudo-perplexity {bi['pseudo_ppl']:.2f} vs {causal['pseudo_ppl']:.2f}.")
    ev = rows[next(iter(rows))]
    return ("## Masked LM on English characters\n\nClaim: a masked LM needs to see both sides; the same masked "
            "objective trained with a causal mask (left context only) predicts the hidden characters worse. "
            "Bidirectional SSM (BiMamba-style: a reverse scan summed with the forward one) and LMU (a second "
            "Legendre memory over the reversed input) are the recurrent alternatives.\n\n" + "\n".join(lines) +
            f"\n\nMasked tokens: {ev['masked_tokens']:,} hidden characters (15% of each validation window, all replaced "
            f"by [MASK]); pseudo-perplexity over the first {ev['pseudo_tokens']:,} validation characters, each masked "
            "alone. " + _settings(res) + verdict + "\n")


def protein_section(res: dict, docs: Path) -> str:
    plt = _plt()
    rows = res["variants"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name, r in rows.items():
        Ls = [int(L) for L in r["by_length"]]
        axes[0].plot(Ls, [v["masked_acc"] for v in r["by_length"].values()], "o-", label=name)
        axes[1].plot(Ls, [v["pseudo_ppl"] for v in r["by_length"].values()], "o-", label=name)
        axes[2].plot([int(L) for L in r["cost"]], [1000 * v for v in r["cost"].values()], "o-", label=name)
    for ax, title in zip(axes, ("masked-token accuracy", "pseudo-perplexity", "forward ms (batch 4)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("window length (residues)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[2].set_yscale("log")
    fig.tight_layout()
    png = docs / "objectives_protein.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)
    names = list(rows)
    lengths = list(rows[names[0]]["by_length"])
    head = "| window | " + " | ".join(f"{n}: accuracy | {n}: pseudo-ppl" for n in names) + " |"
    lines = [head, "|---:|" + "---:|" * (2 * len(names))]
    for L in lengths:
        lines.append(f"| {L} | " + " | ".join(f"{_fmt(rows[n]['by_length'][L]['masked_acc'])} | "
                                             f"{_fmt(rows[n]['by_length'][L]['pseudo_ppl'], 2)}" for n in names) + " |")
    cost_lengths = list(rows[names[0]]["cost"])
    cost = ["| length | " + " | ".join(f"{n} (ms)" for n in names) + " | ratio |", "|---:|" + "---:|" * (len(names) + 1)]
    for L in cost_lengths:
        v = [rows[n]["cost"][L] for n in names]
        cost.append(f"| {L} | " + " | ".join(f"{1000 * x:.1f}" for x in v) + f" | {v[1] / v[0]:.2f} |")
    params = ", ".join(f"{n}: {rows[n]['params']:,} parameters ({' '.join(rows[n]['overrides'])})" for n in names)
    a, m = rows[names[0]], rows[names[1]]
    last = lengths[-1]
    acc_gap = m["by_length"][last]["masked_acc"] - a["by_length"][last]["masked_acc"]
    c_first, c_last = cost_lengths[0], cost_lengths[-1]
    growth = {n: rows[n]["cost"][c_last] / rows[n]["cost"][c_first] for n in names}
    verdict = (f"**Verdict** (one seed, small scale): at window {last} the SSM's masked-token accuracy is "
               f"{acc_gap:+.3f} from attention's; from length {c_first} to {c_last} the forward cost grows "
               + ", ".join(f"{growth[n]:.1f}x for {n}" for n in names) + ".")
    return ("## Protein masked LM: bidirectional SSM vs bidirectional attention\n\nClaim (Caduceus-style): a "
            "bidirectional SSM matches bidirectional attention on masked residue prediction at equal parameters, "
            "and its cost grows linearly with length where attention's grows quadratically.\n\n"
            "Corpus: `data.corpus=proteins` (2,100 real proteins, the predicted proteome shipped as pyhmmer's test "
            "data, fetched from the package index); tokenizer `amino`. Both trained on windows of "
            f"{res['settings']['lengths'][-1]} residues, then scored on non-overlapping validation windows of each "
            f"length. {params}.\n\n" + "\n".join(lines) + "\n\nForward cost (no grad, batch 4, median of 3, this CPU):\n\n"
            + "\n".join(cost) + f"\n\n![protein MLM vs length]({png.name})\n\n" + _settings(res) + "\n\n" + verdict + "\n")


SECTIONS = {"mlm": mlm_section, "protein": protein_section}


def write_report(results: dict, docs: Path) -> Path:
    docs = Path(docs)
    parts = [SECTIONS[p](results[p], docs) for p in SECTIONS if p in results]
    machine = results.get("machine", {})
    text = ("# Objectives beyond left-to-right\n\nRegenerate every part: `lmlab experiment objectives` "
            "(or `--parts mlm,protein,denoise,fusion`; finished runs in `--out` are reused). Raw numbers: "
            "`objectives-results.json`. How to use the pieces: [../objectives.md](../objectives.md).\n\n"
            f"Machine: {machine.get('platform', '?')}, torch {machine.get('torch', '?')}, "
            f"{machine.get('threads', '?')} thread(s).\n\n" + "\n".join(parts))
    path = docs / "objectives.md"
    path.write_text(text)
    return path
