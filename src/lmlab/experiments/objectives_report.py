"""docs/experiments/objectives.md and the claims of objectives-results.json, from what
experiments/objectives.py measured (each part once per seed, under results[part]["runs"][seed]).

Tables show the mean over seeds and, after ±, half the range (max - min) / 2. Verdict rule (every
claim): one model is better than another when it is better in every seed by more than nothing,
i.e. the per-seed values do not overlap (all of one side's seeds beat all of the other's); the
claim holds when the better side is the one the paper predicts, does not hold at this scale when
it is the other side, and is mixed when the seeds overlap or the measures disagree.
"""
from __future__ import annotations

from pathlib import Path

from .claims import claim, verdict_by_rule

REPORT = "docs/experiments/objectives.md"
PROTEIN = "Long-context Protein Language Model"
DLM = "Denoising LM: Pushing the Limits of Error Correction Models for Speech Recognition"
WHISPER = "Whisper-LM: Improving ASR Models with Language Models for Low-Resource Languages"
THESIS = "Making the Most of your Model: Methods for Finetuning and Applying Pretrained Transformers"


def runs(res: dict) -> list[dict]:
    """The part's per-seed results, in seed order."""
    return list(res["runs"].values())


def values(res: dict, get) -> list[float]:
    return [get(r) for r in runs(res)]


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def pm(xs: list[float], digits: int = 3) -> str:
    """'mean ±half-range' over seeds (just the value for one seed)."""
    if len(xs) == 1:
        return f"{xs[0]:.{digits}f}"
    return f"{mean(xs):.{digits}f} ±{(max(xs) - min(xs)) / 2:.{digits}f}"


def below(a: list[float], b: list[float]) -> bool:
    """Every seed's `a` lies below every seed's `b`: the no-overlap rule."""
    return max(a) < min(b)


def _seeds(res: dict) -> str:
    n = len(res["runs"])
    return f"{n} seed{'s' if n > 1 else ''} ({', '.join(res['runs'])})"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fmt(x, digits=3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _settings(res: dict) -> str:
    s = runs(res)[0]["settings"]
    base = [b for b in s["base"] if not b.startswith("train.seed=")]
    return (f"Settings: `{' '.join('--set ' + b for b in base)}`, {s['steps']} steps, train.seed = each of {_seeds(res)}; "
            f"command: `{res['command']}` ({res['wall_s'] / 60:.1f} min here"
            + (", **--quick: numbers are a smoke test, not results**" if res.get("quick") else "") + ").")


def mlm_section(res: dict, docs: Path) -> str:
    rows = runs(res)[0]["variants"]
    v = lambda name, key: values(res, lambda r: r["variants"][name][key])  # noqa: E731
    lines = ["| model | parameters | masked-token accuracy | masked loss (nats) | pseudo-perplexity | pseudo bits/char |"
             " train tokens/s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['params']:,} | {pm(v(name, 'masked_acc'))} | {pm(v(name, 'masked_loss'))} | "
                     f"{pm(v(name, 'pseudo_ppl'), 2)} | {pm(v(name, 'pseudo_bpb'))} | {mean(v(name, 'train_tok_per_s')):,.0f} |")
    verdict = ""
    if "attention, causal" in rows and "attention, bidirectional" in rows:
        causal, bi = "attention, causal", "attention, bidirectional"
        better = below(v(causal, "masked_acc"), v(bi, "masked_acc")) and below(v(bi, "pseudo_ppl"), v(causal, "pseudo_ppl"))
        verdict = (f"\n**Verdict** ({_seeds(res)}): bidirectional attention {'beats' if better else 'does not beat'} causal "
                   f"attention on the same masked objective in every seed: accuracy {pm(v(bi, 'masked_acc'))} vs "
                   f"{pm(v(causal, 'masked_acc'))}, pseudo-perplexity {pm(v(bi, 'pseudo_ppl'), 2)} vs "
                   f"{pm(v(causal, 'pseudo_ppl'), 2)}.")
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
    first = runs(res)[0]
    rows, st = first["variants"], first["settings"]
    names = list(rows)
    lengths = list(rows[names[0]]["by_length"])
    cost_lengths = list(rows[names[0]]["cost"])
    at = lambda n, L, key: values(res, lambda r: r["variants"][n]["by_length"][L][key])  # noqa: E731
    cost = lambda n, L, kind="cost": values(res, lambda r: r["variants"][n][kind][L])  # noqa: E731
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for n in names:
        Ls = [int(L) for L in lengths]
        axes[0].plot(Ls, [mean(at(n, L, "masked_acc")) for L in lengths], "o-", label=n)
        axes[1].plot(Ls, [mean(at(n, L, "pseudo_ppl")) for L in lengths], "o-", label=n)
        axes[2].plot([int(L) for L in cost_lengths], [1000 * mean(cost(n, L)) for L in cost_lengths], "o-",
                     label=f"{n}, forward")
        axes[2].plot([int(L) for L in cost_lengths], [1000 * mean(cost(n, L, "train_cost")) for L in cost_lengths],
                     "s--", label=f"{n}, forward + backward")
    for ax, title in zip(axes, ("masked-token accuracy", "pseudo-perplexity", "ms per pass (batch 4)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("window length (residues)")
        ax.axvline(int(st["base"][3].split("=")[1]), color="0.6", ls=":") if ax is not axes[2] else None
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[2].set_yscale("log")
    fig.tight_layout()
    png = docs / "objectives_protein.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)
    head = "| window | " + " | ".join(f"{n}: accuracy | {n}: pseudo-ppl" for n in names) + " |"
    lines = [head, "|---:|" + "---:|" * (2 * len(names))]
    for L in lengths:
        lines.append(f"| {L} | " + " | ".join(f"{pm(at(n, L, 'masked_acc'))} | {pm(at(n, L, 'pseudo_ppl'), 2)}"
                                             for n in names) + " |")
    table = ["| length | " + " | ".join(f"{n}: forward ms | {n}: forward + backward ms" for n in names) + " |",
             "|---:|" + "---:|" * (2 * len(names))]
    for L in cost_lengths:
        table.append(f"| {L} | " + " | ".join(f"{1000 * mean(cost(n, L)):.1f} | {1000 * mean(cost(n, L, 'train_cost')):.1f}"
                                              for n in names) + " |")
    params = ", ".join(f"{n}: {rows[n]['params']:,} parameters ({' '.join(rows[n]['overrides'])})" for n in names)
    unigram = values(res, lambda r: r["variants"][names[0]]["unigram_ppl"])
    trained = protein_train_length(res)
    return ("## Protein masked LM: bidirectional SSM vs bidirectional attention\n\nClaim (LC-PLM, BiMamba-S): a "
            "bidirectional SSM protein LM trained with masked LM matches or beats a Transformer of the same size, "
            "extrapolates better to proteins longer than it was trained on, and its cost grows linearly with "
            "length where attention's grows quadratically.\n\n"
            "Corpus: `data.corpus=proteins` (2,100 real proteins, the predicted proteome shipped as pyhmmer's test "
            f"data, fetched from the package index); tokenizer `amino`. Both trained on windows of {trained} "
            "residues, then scored on non-overlapping validation windows of each length (longer ones test length "
            f"extrapolation; dotted line: the training length). {params}. Residue frequencies alone (a "
            f"context-free model) score a perplexity of {pm(unigram, 2)}.\n\n" + "\n".join(lines) +
            "\n\nCost per pass (batch 4 of random residues, median of 3; forward without grad, and forward + "
            "backward as a training step's work), mean over seeds, on a shared 2-core CPU while other jobs ran: "
            "rough ratios, not a benchmark:\n\n" + "\n".join(table) +
            f"\n\n![protein MLM vs length]({png.name})\n\n" + _settings(res) + "\n\n" + "\n\n".join(
                f"**Verdict: {c['verdict']}** ({c['claim']}) {c['number']}; {c['why']}." for c in protein_claims(res)) + "\n")


def protein_train_length(res: dict) -> int:
    base = runs(res)[0]["settings"]["base"]
    return int(next(b for b in base if b.startswith("model.context=")).split("=")[1])


def protein_claims(res: dict) -> list[dict]:
    rows = runs(res)[0]["variants"]
    attn, ssm = "attention, bidirectional", "SSM, bidirectional"
    if attn not in rows or ssm not in rows:
        return []
    trained = protein_train_length(res)
    lengths = list(rows[attn]["by_length"])
    at = lambda n, L: values(res, lambda r: r["variants"][n]["by_length"][L]["pseudo_ppl"])  # noqa: E731
    inside = [L for L in lengths if int(L) <= trained]
    beyond = [L for L in lengths if int(L) > trained]
    side = lambda Ls: ([L for L in Ls if below(at(ssm, L), at(attn, L))],  # noqa: E731
                       [L for L in Ls if below(at(attn, L), at(ssm, L))])
    base = {"paper": PROTEIN, "report": REPORT, "command": res["command"],
            "setting": f"{rows[attn]['params']:,} / {rows[ssm]['params']:,}-parameter bidirectional attention / SSM, "
                       f"{runs(res)[0]['settings']['steps']} steps on windows of {trained} residues (pyhmmer's "
                       f"bundled proteome), {_seeds(res)}"}
    rule = "better at a length = lower pseudo-perplexity in every seed"
    out = []
    for what, Ls, sentence in (
            ("up to the training length", inside, "A bidirectional SSM (BiMamba-S) masked protein LM predicts "
             "masked residues at least as well as bidirectional attention with the same parameters."),
            ("beyond the training length", beyond, "The bidirectional SSM extrapolates better than attention to "
             "proteins longer than its training windows.")):
        if not Ls:
            continue
        won, lost = side(Ls)
        number = "pseudo-perplexity SSM vs attention: " + ", ".join(
            f"L={L} {pm(at(ssm, L), 2)} vs {pm(at(attn, L), 2)}" for L in Ls)
        out.append({**base, "claim": sentence, "number": number, "verdict": verdict_by_rule(
            len(won) == len(Ls), len(lost) == len(Ls)),
            "why": f"{what}: {rule}; SSM better at {', '.join(won) or 'no length'}, attention better at "
                   f"{', '.join(lost) or 'no length'}"})
    c_lengths = list(rows[attn]["cost"])
    lo, hi = c_lengths[0], c_lengths[-1]
    growth = {n: {kind: values(res, lambda r, n=n, kind=kind: r["variants"][n][kind][hi] / r["variants"][n][kind][lo])
                  for kind in ("cost", "train_cost")} for n in (attn, ssm)}
    slower = all(below(growth[ssm][k], growth[attn][k]) for k in ("cost", "train_cost"))
    faster = all(below(growth[attn][k], growth[ssm][k]) for k in ("cost", "train_cost"))
    out.append({**base, "claim": "The bidirectional SSM's training and inference cost grows more slowly with "
                                 "length than attention's (linear against quadratic).",
                "number": f"from L={lo} to {hi} ({int(hi) // int(lo)}x): forward cost x{pm(growth[ssm]['cost'], 1)} "
                          f"SSM vs x{pm(growth[attn]['cost'], 1)} attention; forward + backward "
                          f"x{pm(growth[ssm]['train_cost'], 1)} vs x{pm(growth[attn]['train_cost'], 1)}",
                "verdict": verdict_by_rule(slower, faster),
                "why": "holds if the SSM's growth is smaller in every seed for both forward and forward + backward; "
                       "CPU wall times on a shared machine"})
    return out


def denoise_section(res: dict, docs: Path) -> str:
    plt = _plt()
    first = runs(res)[0]
    models, kinds, st = first["models"], list(first["test_noises"]), first["settings"]
    wer = lambda name, kind, key="corrected_wer": values(res, lambda r: r["models"][name]["by_test_noise"][kind][key])  # noqa: E731
    some = next(iter(models))
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / (len(models) + 1)
    ax.bar(list(range(len(kinds))), [mean(wer(some, k, "noisy_wer")) for k in kinds], width, label="noisy input",
           color="0.7")
    for j, name in enumerate(models, 1):
        ax.bar([i + j * width for i in range(len(kinds))], [mean(wer(name, k)) for k in kinds], width,
               label=f"corrected, trained on {name}")
    ax.set_xticks([i + width * len(models) / 2 for i in range(len(kinds))], kinds)
    ax.set_ylabel("WER (mean over seeds)")
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
            f"{pm(wer(name, k, 'noisy_wer'))} -> {pm(wer(name, k))}" for k in kinds) + " |")
    beam_line = ""
    if "mixed" in models and "mixed, beam" in models["mixed"]["by_test_noise"]:
        beam = models["mixed"]["by_test_noise"]["mixed, beam"]
        beam_line = (f"\nBeam search (beam {beam['beam']}) on the mixed test noise: WER {pm(wer('mixed', 'mixed, beam'))} "
                     f"(greedy {pm(wer('mixed', 'mixed'))}, input {pm(wer('mixed', 'mixed', 'noisy_wer'))}). Examples "
                     "of the first seed (clean / noisy / corrected):\n\n"
                     + "\n".join(f"- `{c}` / `{n}` / `{f}`" for c, n, f in beam["examples"]) + "\n")
    return ("## Denoising LM\n\nClaims: a denoising LM (`noisy [SEP] clean`, loss on the clean part) corrects "
            "noisy text; training on a mixture of noise kinds generalises better than training on one kind at the "
            "same rate.\n\n"
            f"Held-out text: {st['sentences']} chunks of {st['words_per_sentence']} consecutive words, evenly spaced over "
            "the validation split (the last 10% of the corpus); test noise seeded per chunk and seed, rates per word as "
            f"listed (`{', '.join(f'{k}: {v}' for k, v in first['test_noises'].items())}`); similar-sounding "
            "substitutions come from the CMU dictionary among the training text's words. Corrections are greedy unless "
            "stated. WER: word-level edit distance over reference words, whole corpus.\n\n" + "\n".join(lines) + "\n"
            + beam_line + f"\n![denoising WER]({png.name})\n\n" + _settings(res) + "\n\n" + "\n\n".join(
                f"**Verdict: {c['verdict']}** ({c['claim']}) {c['number']}; {c['why']}." for c in denoise_claims(res)) + "\n")


def denoise_claims(res: dict) -> list[dict]:
    first = runs(res)[0]
    models, kinds = first["models"], list(first["test_noises"])
    if "mixed" not in models or len(models) < 2:
        return []
    single = next(n for n in models if n != "mixed")
    wer = lambda name, kind, key="corrected_wer": values(res, lambda r: r["models"][name]["by_test_noise"][kind][key])  # noqa: E731
    avg = lambda name: values(res, lambda r: mean([r["models"][name]["by_test_noise"][k]["corrected_wer"]  # noqa: E731
                                                    for k in kinds]))
    base = {"paper": DLM, "report": REPORT, "command": res["command"],
            "setting": f"{models['mixed']['params']:,}-parameter causal char Transformer, `noisy [SEP] clean`, "
                       f"{first['settings']['steps']} steps on English prose, {_seeds(res)}; synthetic text noise "
                       "instead of TTS + ASR hypotheses"}
    won = [k for k in kinds if below(wer("mixed", k), wer(single, k))]
    lost = [k for k in kinds if below(wer(single, k), wer("mixed", k))]
    mix = {**base, "claim": "Combining several noise-augmentation strategies in training makes a better error "
                            "corrector than one strategy at the same noise rate.",
           "number": f"mean corrected WER over the {len(kinds)} test noises: mixed {pm(avg('mixed'))}, {single} "
                     f"{pm(avg(single))}",
           "verdict": verdict_by_rule(below(avg("mixed"), avg(single)), below(avg(single), avg("mixed"))),
           "why": f"decided on the mean over test noises, lower in every seed; per test noise the mixture is lower in "
                  f"every seed on {', '.join(won) or 'none'}, higher on {', '.join(lost) or 'none'}"}
    key = "mixed, beam" if "mixed, beam" in models["mixed"]["by_test_noise"] else "mixed"
    fixed, noisy = wer("mixed", key), wer("mixed", "mixed", "noisy_wer")
    corrects = {**base, "claim": "A denoising LM trained on synthetic noisy-to-clean pairs lowers the word error rate "
                                 "of noisy hypotheses.",
                "number": f"mixed test noise: input WER {pm(noisy)} -> corrected {pm(fixed)} ({key.replace('mixed, ', '')})",
                "verdict": verdict_by_rule(below(fixed, noisy), below(noisy, fixed)),
                "why": "holds if the corrected WER is below the input's in every seed; a model this small rewrites "
                       "correct words too" if not below(fixed, noisy) else "corrected below the input in every seed"}
    return [corrects, mix]


def fusion_section(res: dict, docs: Path) -> str:
    plt = _plt()
    first = runs(res)[0]
    st, lms = first["settings"], first["lms"]
    test = lambda name: values(res, lambda r: r["lms"][name]["test_wer_at_best"])  # noqa: E731
    first_pass = values(res, lambda r: r["first_pass_wer"]["test"])
    oracle = values(res, lambda r: r["oracle_wer"]["test"])
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, lm in lms.items():
        bonus = lm["best_on_dev"].split(",")[1]
        ws = st["weights"]
        ax.plot(ws, [mean(values(res, lambda r, w=w: r["lms"][name]["grid"][f"{w},{bonus}"]["test"])) for w in ws],
                "o-", label=f"{name} (B={bonus})")
    ax.axhline(mean(first_pass), color="0.5", ls="--", label="first pass")
    ax.axhline(mean(oracle), color="0.5", ls=":", label="oracle (best in list)")
    ax.set_xlabel("LM weight W")
    ax.set_ylabel("test WER (mean over seeds)")
    ax.set_title("n-best rescoring")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    png = docs / "objectives_fusion.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)
    lines = ["| LM | parameters | training text (chars) | W, B chosen on dev (per seed) | dev WER | test WER | "
             "test WER gain over the first pass |", "|---|---:|---:|---|---:|---:|---:|"]
    for name, lm in lms.items():
        chosen = " / ".join(r["lms"][name]["best_on_dev"] for r in runs(res))
        dev = values(res, lambda r: r["lms"][name]["grid"][r["lms"][name]["best_on_dev"]]["dev"])
        gain = [f - t for f, t in zip(first_pass, test(name))]
        lines.append(f"| {name} | {lm['params'] or '-'} | {lm.get('text_chars', 0):,} | {chosen} | {pm(dev)} | "
                     f"{pm(test(name))} | {pm(gain)} |")
    ex = first["example"]
    example = "\n".join(f"  - score {h['score']:.2f}: `{h['text']}`" for h in ex["hypotheses"][:4])
    return ("## LM fusion: n-best rescoring\n\nClaim (Whisper-LM): adding a language model's log-probability to "
            "first-pass scores (total = score + W log p_lm + B words) picks better hypotheses; statistical LMs help "
            "most, neural ones moderately, and the help is largest in low-resource conditions.\n\n"
            f"N-best lists: {st['lists']} held-out chunks per seed (even ones dev, odd ones test), "
            f"{st['hypotheses_per_list']} hypotheses each, made with the noise module (mixed noise, rates scaled per "
            "hypothesis by a draw in [0, 1.5]); first-pass score = -(word errors) + N(0, 1.5), so the lists are "
            "synthetic: the first pass is informative but noisy, as a recogniser's. W and B are chosen on dev over W in "
            f"{st['weights']} and B in {st['bonuses']}; the test WER is reported at that choice. Low resource: the "
            f"LMs marked with a share of the text were trained on the first {', '.join(f'{f:.0%}' for f in st['text_fractions'])} "
            "of the training text only (same steps). Example list (first seed, reference "
            f"`{ex['reference']}`):\n\n{example}\n\n" + "\n".join(lines) +
            f"\n\nFirst pass: test WER {pm(first_pass)}; oracle: {pm(oracle)}.\n\n"
            f"![rescoring WER vs LM weight]({png.name})\n\n" + _settings(res) + "\n\n" + "\n\n".join(
                f"**Verdict: {c['verdict']}** ({c['claim']}) {c['number']}; {c['why']}." for c in fusion_claims(res)) + "\n")


def fusion_claims(res: dict) -> list[dict]:
    first = runs(res)[0]
    lms, fractions = first["lms"], first["settings"].get("text_fractions", [])
    first_pass = values(res, lambda r: r["first_pass_wer"]["test"])
    gain = lambda name: [f - r["lms"][name]["test_wer_at_best"] for f, r in zip(first_pass, runs(res))]  # noqa: E731
    full = [n for n in lms if "of the text" not in n]
    neural, ngram = [n for n in full if n.startswith("LM ")][-1], "char 5-gram"
    base = {"paper": WHISPER, "report": REPORT, "command": res["command"],
            "setting": f"n-best rescoring of synthetic noisy lists ({first['settings']['lists']} chunks of held-out "
                       f"English prose per seed), causal char LMs of {', '.join(str(lms[n]['params']) for n in full if lms[n]['params'])} "
                       f"parameters ({first['settings']['steps']} steps) and a char 5-gram, {_seeds(res)}; no speech recogniser"}
    helped = [n for n in full if min(gain(n)) > 0]
    hurt = [n for n in full if max(gain(n)) < 0]
    out = [{**base, "claim": "Combining a recogniser's hypotheses with a language model (n-best rescoring) lowers "
                             "the word error rate, for statistical and neural LMs.",
            "number": f"test WER first pass {pm(first_pass)} -> " + ", ".join(
                f"{n} {pm(values(res, lambda r, n=n: r['lms'][n]['test_wer_at_best']))}" for n in full),
            "verdict": verdict_by_rule(len(helped) == len(full), len(hurt) == len(full)),
            "why": "holds if every LM lowers the test WER in every seed; lower in every seed with "
                   f"{', '.join(helped) or 'none'}, higher with {', '.join(hurt) or 'none'}"}]
    ng, nn = gain(ngram), gain(neural)
    out.append({**base, "claim": "A statistical n-gram LM improves the recogniser more than a (small) neural LM does.",
                "number": f"test WER gain over the first pass: {ngram} {pm(ng)}, {neural} {pm(nn)}",
                "verdict": verdict_by_rule(below(nn, ng), below(ng, nn)),
                "why": "holds if the n-gram's gain is larger in every seed"})
    if fractions:
        rows, won, lost = [], [], []
        for kind in (neural, ngram):
            small = f"{kind}, {min(fractions):.0%} of the text"
            rows.append(f"{kind}: gain {pm(gain(small))} with {min(fractions):.0%} of the text, {pm(gain(kind))} with all")
            (won if below(gain(kind), gain(small)) else lost if below(gain(small), gain(kind)) else []).append(kind)
        out.append({**base, "claim": "LMs help most in low-resource conditions; here the resource varied is the LM's "
                                     "training text (the recogniser is fixed).",
                    "number": "; ".join(rows),
                    "verdict": verdict_by_rule(len(won) == 2, len(lost) == 2),
                    "why": "holds if the gain with the least text is larger than with all of it in every seed, for both "
                           f"LM kinds (larger for {', '.join(won) or 'neither'}, smaller for {', '.join(lost) or 'neither'}); "
                           "the paper's low resource is little speech for the recogniser, which synthetic lists cannot vary"})
    return out


THESIS_CLAIM = claim(
    THESIS, "Masked LMs can initialise both the encoder and the decoder of a non-autoregressive sequence-to-sequence "
            "Transformer, opening generation to models trained only for understanding.",
    "masked LMs are trained here (train.objective = mlm), but lmlab has no encoder-decoder or non-autoregressive model",
    "no number", "not measurable here",
    "lmlab models are decoder stacks (causal or bidirectional); there is no sequence-to-sequence model to initialise, "
    "nor a way to start a run from another run's weights", REPORT, "lmlab experiment objectives --parts mlm")


def claims(results: dict) -> list[dict]:
    """Every paper claim this experiment decides, from the measured numbers by the module's rule."""
    out = []
    for part, decide in (("protein", protein_claims), ("denoise", denoise_claims), ("fusion", fusion_claims)):
        if "runs" in results.get(part, {}):
            out += [claim(**c) for c in decide(results[part])]
    return out + [THESIS_CLAIM]


SECTIONS = {"mlm": mlm_section, "protein": protein_section, "denoise": denoise_section, "fusion": fusion_section}


def write_report(results: dict, docs: Path) -> Path:
    docs = Path(docs)
    parts = [SECTIONS[p](results[p], docs) for p in SECTIONS if "runs" in results.get(p, {})]
    machine = results.get("machine", {})
    done = [p for p in SECTIONS if "runs" in results.get(p, {})]
    minutes = sum(results[p]["wall_s"] for p in done) / 60
    text = ("# Objectives beyond left-to-right\n\nRegenerate every part: `lmlab experiment objectives` (all parts, "
            "seeds 1337 and 1338; or `--parts mlm,protein,denoise,fusion`; finished runs in `--out` are reused). "
            f"The parts below took {minutes:.1f} minutes in all here. Raw numbers: `objectives-results.json`; "
            "verdicts are decided there by the rule in `objectives_report.py`: a model is better than another when "
            "it is better in every seed (the seeds' values do not overlap); tables give the mean over seeds ± half "
            "the range. How to use the pieces: [../objectives.md](../objectives.md).\n\n"
            f"Machine: {machine.get('platform', '?')}, torch {machine.get('torch', '?')}, "
            f"{machine.get('threads', '?')} thread(s).\n\n" + claims_table(results.get("claims", [])) + "\n"
            + "\n".join(parts))
    path = docs / "objectives.md"
    path.write_text(text)
    return path


def claims_table(claims_: list[dict]) -> str:
    if not claims_:
        return ""
    lines = ["## Verdicts\n", "| paper | claim | verdict | measured |", "|---|---|---|---|"]
    for c in claims_:
        lines.append(f"| {c['paper'].split(':')[0]} | {c['claim']} | **{c['verdict']}** | {c['number']} |")
    return "\n".join(lines) + "\n"
