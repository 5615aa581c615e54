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
            "alone. " + _settings(res) + "\n" + verdict + "\n")


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
    unigram = a.get("unigram_ppl")
    beyond = {n: rows[n]["by_length"][last]["pseudo_ppl"] for n in names}
    verdict = (f"**Verdict** (one seed, small scale): at window {last} the SSM's masked-token accuracy is "
               f"{acc_gap:+.3f} from attention's, pseudo-perplexity "
               + ", ".join(f"{beyond[n]:.2f} for {n}" for n in names)
               + (f" against {unigram:.2f} for residue frequencies alone (a context-free model)" if unigram else "")
               + f"; from length {c_first} to {c_last} ({int(c_last) // int(c_first)}x) the forward cost grows "
               + ", ".join(f"{growth[n]:.1f}x for {n}" for n in names) + ".")
    return ("## Protein masked LM: bidirectional SSM vs bidirectional attention\n\nClaim (Caduceus-style): a "
            "bidirectional SSM matches bidirectional attention on masked residue prediction at equal parameters, "
            "and its cost grows linearly with length where attention's grows quadratically.\n\n"
            "Corpus: `data.corpus=proteins` (2,100 real proteins, the predicted proteome shipped as pyhmmer's test "
            "data, fetched from the package index); tokenizer `amino`. Both trained on windows of "
            f"{res['settings']['lengths'][-1]} residues, then scored on non-overlapping validation windows of each "
            f"length. {params}.\n\n" + "\n".join(lines) + "\n\nForward cost (no grad, batch 4, median of 3, on this shared 2-core CPU while other jobs ran: rough ratios, not a benchmark):\n\n"
            + "\n".join(cost) + f"\n\n![protein MLM vs length]({png.name})\n\n" + _settings(res) + "\n\n" + verdict + "\n")


def denoise_section(res: dict, docs: Path) -> str:
    plt = _plt()
    models = res["models"]
    kinds = list(res["test_noises"])
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / (len(models) + 1)
    noisy = [models[next(iter(models))]["by_test_noise"][k]["noisy_wer"] for k in kinds]
    ax.bar([i for i in range(len(kinds))], noisy, width, label="noisy input", color="0.7")
    for j, (name, m) in enumerate(models.items(), 1):
        ax.bar([i + j * width for i in range(len(kinds))], [m["by_test_noise"][k]["corrected_wer"] for k in kinds],
               width, label=f"corrected, trained on {name}")
    ax.set_xticks([i + width * len(models) / 2 for i in range(len(kinds))], kinds)
    ax.set_ylabel("WER")
    ax.set_title("denoising LM: WER of the input and of the greedy correction, per test noise")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    png = docs / "objectives_denoise.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)
    head = "| trained on (train.noise) | " + " | ".join(f"{k}: noisy -> corrected" for k in kinds) + " |"
    lines = [head, "|---|" + "---:|" * len(kinds)]
    for name, m in models.items():
        lines.append(f"| {name} (`{m['train_noise']}`) | " + " | ".join(
            f"{m['by_test_noise'][k]['noisy_wer']:.3f} -> {m['by_test_noise'][k]['corrected_wer']:.3f}" for k in kinds) + " |")
    mixed = models.get("mixed", {}).get("by_test_noise", {})
    beam = mixed.get("mixed, beam")
    beam_line = (f"\nBeam search (beam {beam['beam']}) on the mixed test noise: WER {beam['corrected_wer']:.3f} "
                 f"(greedy {mixed['mixed']['corrected_wer']:.3f}, input {beam['noisy_wer']:.3f}). Examples (clean / noisy / "
                 "corrected):\n\n" + "\n".join(f"- `{c}` / `{n}` / `{f}`" for c, n, f in beam["examples"]) + "\n") if beam else ""
    # the claim: the mixture model is the best (or tied) on the mixed test noise and on average over kinds
    mean = {name: sum(m["by_test_noise"][k]["corrected_wer"] for k in kinds) / len(kinds) for name, m in models.items()}
    best_mean = min(mean, key=mean.get)
    helps = {name: m["by_test_noise"]["mixed"]["corrected_wer"] for name, m in models.items()}
    improves = {k: mixed[k]["corrected_wer"] < mixed[k]["noisy_wer"] for k in kinds} if mixed else {}
    verdict = (f"**Verdict** (one seed): lowest mean corrected WER over the five test noises: **{best_mean}** "
               f"({', '.join(f'{n} {v:.3f}' for n, v in mean.items())}); on the mixed test noise: "
               f"{', '.join(f'{n} {v:.3f}' for n, v in helps.items())}. The mixture model lowers the WER below the "
               f"input's for: {', '.join(k for k, v in improves.items() if v) or 'no test noise'}.")
    st = res["settings"]
    return ("## Denoising LM\n\nClaims: a denoising LM (`noisy [SEP] clean`, loss on the clean part) corrects "
            "noisy text; training on a mixture of noise kinds generalises better than training on one kind at the "
            "same rate.\n\n"
            f"Held-out text: {st['sentences']} chunks of {st['words_per_sentence']} consecutive words, evenly spaced over "
            "the validation split (the last 10% of the corpus); test noise seeded per chunk, rates per word as listed "
            f"(`{', '.join(f'{k}: {v}' for k, v in res['test_noises'].items())}`); similar-sounding substitutions "
            "come from the CMU dictionary among the training text's words. Corrections are greedy unless stated. "
            "WER: word-level edit distance over reference words, whole corpus.\n\n" + "\n".join(lines) + "\n"
            + beam_line + f"\n![denoising WER]({png.name})\n\n" + _settings(res) + "\n\n" + verdict + "\n")


def fusion_section(res: dict, docs: Path) -> str:
    plt = _plt()
    st = res["settings"]
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, lm in res["lms"].items():
        bonus = lm["best_on_dev"].split(",")[1]
        ws = st["weights"]
        ax.plot(ws, [lm["grid"][f"{w},{bonus}"]["test"] for w in ws], "o-", label=f"{name} (B={bonus})")
    ax.axhline(res["first_pass_wer"]["test"], color="0.5", ls="--", label="first pass")
    ax.axhline(res["oracle_wer"]["test"], color="0.5", ls=":", label="oracle (best in list)")
    ax.set_xlabel("LM weight W")
    ax.set_ylabel("test WER")
    ax.set_title("n-best rescoring")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png = docs / "objectives_fusion.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)
    lines = ["| LM | parameters | W, B chosen on dev | dev WER | test WER | test WER at W = 0.1, B = 1 |",
             "|---|---:|---|---:|---:|---:|"]
    for name, lm in res["lms"].items():
        g = lm["grid"]
        fixed = g.get("0.1,1.0", {}).get("test")
        lines.append(f"| {name} | {lm['params'] or '-'} | {lm['best_on_dev']} | {g[lm['best_on_dev']]['dev']:.3f} | "
                     f"{lm['test_wer_at_best']:.3f} | {_fmt(fixed)} |")
    best = min(res["lms"], key=lambda n: res["lms"][n]["test_wer_at_best"])
    first = res["first_pass_wer"]["test"]
    verdict = (f"**Verdict** (one seed, synthetic n-best lists): rescoring with {best} brings the test WER from "
               f"{first:.3f} (first pass) to {res['lms'][best]['test_wer_at_best']:.3f} (oracle "
               f"{res['oracle_wer']['test']:.3f}); " + ", ".join(
                   f"{n} {lm['test_wer_at_best']:.3f}" for n, lm in res["lms"].items()) + ".")
    ex = res["example"]
    example = "\n".join(f"  - score {h['score']:.2f}: `{h['text']}`" for h in ex["hypotheses"][:4])
    return ("## LM fusion: n-best rescoring\n\nClaim: adding a language model's log-probability to first-pass "
            "scores (total = score + W log p_lm + B words) picks better hypotheses, more so for a better LM; a "
            "character n-gram is the baseline.\n\n"
            f"N-best lists: {st['lists']} held-out chunks (even ones dev, odd ones test), {st['hypotheses_per_list']} "
            "hypotheses each, made with the noise module (mixed noise, rates scaled per hypothesis by a draw in "
            "[0, 1.5]); first-pass score = -(word errors) + N(0, 1.5), so the lists are synthetic: the first pass is "
            "informative but noisy, as a recogniser's. W and B are chosen on dev over W in "
            f"{st['weights']} and B in {st['bonuses']}; the test WER is reported at that choice. Example list "
            f"(reference `{ex['reference']}`):\n\n{example}\n\n" + "\n".join(lines) +
            f"\n\nFirst pass: test WER {first:.3f}; oracle: {res['oracle_wer']['test']:.3f}.\n\n"
            f"![rescoring WER vs LM weight]({png.name})\n\n" + _settings(res) + "\n\n" + verdict + "\n")


SECTIONS = {"mlm": mlm_section, "protein": protein_section, "denoise": denoise_section, "fusion": fusion_section}


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
