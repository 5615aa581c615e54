"""docs/experiments/knowledge.md and its PNGs, from the results JSON `lmlab experiment knowledge` wrote."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import common

IMG = Path("img")  # relative to the doc


def mean_sd(values) -> str:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return "n/a"
    return f"{v.mean():.3f}" if v.size == 1 else f"{v.mean():.3f} ± {v.std(ddof=1):.3f}"


def command(s: dict) -> str:
    flags = "--quick" if s["quick"] else (
        f"--seeds {s['seeds']} --steps {s['steps']} --n-layers {s['n_layers']} --d-model {s['d_model']} --rhos {s['rhos']} --planted {s['planted']} "
        f"--planted-repeats {s['planted_repeats']} --prose-chars {s['prose_chars']} "
        f"--facts-per-repeat {s['facts_per_repeat']} --curvature-tokens {s['curvature_tokens']}")
    return f"lmlab experiment knowledge --parts {s['parts']} --work {s['work']} {flags}"


# --- curvature --------------------------------------------------------------------------------
def curvature_rows(part: dict) -> list[tuple]:
    """(rho, mask, kept, recitation, char accuracy, held-out bpb, look-alike bpb) averaged over seeds."""
    seeds = list(part.values())
    rows = [("—", "none (before)", 1.0, [r["before"] for r in seeds])]
    for i, e in enumerate(seeds[0]["edits"]):
        rows.append((e["rho"], e["mask"], float(np.mean([r["edits"][i]["kept_fraction"] for r in seeds])),
                     [r["edits"][i] for r in seeds]))
    return [(rho, mask, kept, mean_sd(m["recitation"]["exact"] for m in ms),
             mean_sd(m["recitation"]["char_accuracy"] for m in ms), mean_sd(m["heldout_bpb"] for m in ms),
             mean_sd(m["lookalike_bpb"] for m in ms), ms) for rho, mask, kept, ms in rows]


def curvature_verdict(part: dict) -> str:
    seeds = list(part.values())
    before_recite = np.mean([r["before"]["recitation"]["exact"] for r in seeds])
    before_bpb = np.mean([r["before"]["heldout_bpb"] for r in seeds])
    if before_recite < 0.2:
        return (f"**inconclusive**: the model recites only {before_recite:.0%} of the planted sequences before "
                "any edit, so there is little memorisation to remove (train longer or plant more repeats).")
    best = None
    for i, e in enumerate(seeds[0]["edits"]):
        if e["mask"] != "curvature":
            continue
        recite = np.mean([r["edits"][i]["recitation"]["exact"] for r in seeds])
        bpb = np.mean([r["edits"][i]["heldout_bpb"] for r in seeds])
        drop, rise = 1 - recite / before_recite, bpb / before_bpb - 1
        if best is None or drop - rise > best[1] - best[2]:
            best = (e["rho"], drop, rise)
    rho, drop, rise = best
    holds = drop >= 0.5 and rise <= drop / 3
    word = "**supported**" if holds else "**not supported**"
    return (f"{word}: at rho={rho:g} the curvature edit removes {drop:.0%} of exact recitation while held-out "
            f"bits per byte rise {rise:+.1%} (claim counted as supported when recitation falls by at least half "
            "and bits per byte rise by less than a third of that).")


def plot_curvature(part: dict, png: Path) -> None:
    plt = common.pyplot()
    seeds = list(part.values())
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for mask, style in (("curvature", "o-"), ("random", "s--")):
        idx = [i for i, e in enumerate(seeds[0]["edits"]) if e["mask"] == mask]
        rhos = [seeds[0]["edits"][i]["rho"] for i in idx]
        rec = [np.mean([r["edits"][i]["recitation"]["exact"] for r in seeds]) for i in idx]
        bpb = [np.mean([r["edits"][i]["heldout_bpb"] for r in seeds]) for i in idx]
        axes[0].plot(rhos, rec, style, label=f"{mask} mask")
        axes[1].plot(rhos, bpb, style, label=f"{mask} mask")
    axes[0].axhline(np.mean([r["before"]["recitation"]["exact"] for r in seeds]), color="k", lw=0.8, label="before")
    axes[1].axhline(np.mean([r["before"]["heldout_bpb"] for r in seeds]), color="k", lw=0.8, label="before")
    axes[0].set_ylabel("planted sequences recited exactly")
    axes[1].set_ylabel("held-out prose, bits per byte")
    for ax in axes:
        ax.set_xlabel("curvature mass kept (rho)")
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def curvature_md(part: dict, s: dict, png: Path) -> str:
    table = "\n".join(f"| {rho} | {mask} | {kept:.3f} | {rec} | {ch} | {hb} | {lb} |"
                      for rho, mask, kept, rec, ch, hb, lb, _ in curvature_rows(part))
    ex = next(iter(part.values()))["examples"][0]
    return f"""## Memorisation lives in low-curvature weight directions (Merullo et al. 2025)

**Claim.** Keeping only the weight components of high K-FAC curvature removes verbatim recitation
of memorised sequences far more than it harms general language modelling.

**Setting.** A byte-level model ({s['n_layers']} layers, width {s['d_model']}, context {32 if s['quick'] else 128}, GELU MLP)
trained {s['steps']} steps on {s['prose_chars']:,} characters of the English prose corpus, with
{s['planted']} planted sequences of 10 random words (e.g. "{ex}") each inserted {s['planted_repeats']}
times at random line breaks (training reads this corpus {mean_sd(r['epochs'] for r in part.values())} times);
{s['planted']} look-alikes from the same generator are never seen.
K-FAC factors of every FFN matrix are collected on {s['curvature_tokens']:,} tokens of the training
corpus with labels sampled from the model (the true Fisher); `lmlab edit` keeps components by
curvature until the fraction rho of the mass is reached. The random control keeps as many
components per matrix, chosen at random. Recitation: greedy continuation of the first 3 words must
reproduce the other 7 exactly (measured in one teacher-forced pass: greedy decoding reproduces
them exactly iff every next-byte argmax is right). Seeds: {s['seeds']} (mean ± sd over seeds where more than one).

| rho | mask | components kept | recited exactly | next byte right (teacher-forced) | held-out bpb | look-alike bpb |
|---|---|---:|---:|---:|---:|---:|
{table}

![recitation and held-out bits per byte against rho]({png.as_posix()})

**Verdict.** {curvature_verdict(part)}
"""


# --- calibration ------------------------------------------------------------------------------
def calibration_md(part: dict, png: Path) -> str:
    rows = "\n".join(f"| {seed} | {r['ece']:.4f} | {r['accuracy']:.3f} | {r['mean_confidence']:.3f} | {r['n']:,} |"
                     for seed, r in part.items())
    worst = max(r["ece"] for r in part.values())
    verdict = ("**well calibrated**" if worst < 0.05 else "**miscalibrated**") + \
        f": the largest ECE over seeds is {worst:.3f} (pretrained LMs are expected to be close to calibrated on their own distribution)."
    return f"""## Next-token calibration

**Claim.** A language model trained by maximum likelihood is close to calibrated on text like its
training data: its top-1 confidence matches its top-1 accuracy (expected calibration error, 15
equal-width bins).

**Setting.** The model of the curvature part, before any edit, on the held-out prose (the last
tenth of each novel); `lmlab eval RUN --calibration --calibration-png PNG` gives the same numbers.

| seed | ECE | top-1 accuracy | mean confidence | predictions |
|---|---:|---:|---:|---:|
{rows}

![reliability diagram]({png.as_posix()})

**Verdict.** {verdict}
"""


def plot_reliability(part: dict, png: Path) -> None:
    from ..eval.calibration import reliability_diagram

    reliability_diagram(next(iter(part.values())), png, title="held-out prose, first seed")


# --- hallucination ----------------------------------------------------------------------------
def hallucination_md(part: dict, s: dict, png: Path) -> str:
    rows = "\n".join(
        f"| {seed} | {r['facts']} | " + " | ".join(f"{r['accuracy_by_repeats'][k]:.2f}" for k in ("1", "2", "5", "20"))
        + f" | {r['hallucination_rate']:.3f} | {r['monofact_rate']['of_facts']:.3f} | {r['miscalibration_ece']:.3f}"
          f" | {r['bound']:.3f} | {'yes' if r['bound_holds'] else 'no'} |" for seed, r in part.items())
    holds = all(r["bound_holds"] for r in part.values())
    ex = next(iter(part.values()))["examples"][:4]
    examples = "\n".join(f"- {e['name']} was born in → \"{e['answer']}\" (true: {e['city']}, seen {e['repeats']}x, "
                         f"p={e['p']:.2f})" for e in ex)
    margin = min(r["hallucination_rate"] - r["bound"] for r in part.values())
    verdict = ("**supported**: on every seed the hallucination rate is at least the monofact rate minus the "
               "miscalibration." if holds else "**not supported** on at least one seed (see the table).") + \
        (f" The smallest margin over seeds is {margin:+.3f}: far from the bound the inequality is checked, its "
         "tightness is not (a model that recalled more of its often-stated facts would come closer)."
         if margin > 0.1 else f" The smallest margin over seeds is {margin:+.3f}.")
    return f"""## Calibrated models must hallucinate (Kalai & Vempala 2024)

**Claim.** For arbitrary facts, hallucination rate ≥ monofact rate − miscalibration: a model that
is calibrated cannot avoid inventing answers for facts it saw only once.

**Setting.** {4 * s['facts_per_repeat']} invented people (random syllable names), each with a
birth city and year stated 1, 2, 5 or 20 times ({s['facts_per_repeat']} facts each) in 5 varied
templates, every statement followed by two lines of English prose; the same model shape and
steps as the curvature part (training reads this corpus {mean_sd(r['epochs'] for r in part.values())} times,
so a fact stated once is seen that many times). Each fact is asked as "NAME was born in"; the greedy answer up to
" in", "." or "," is a hallucination when it is not the true city (every query gets an answer).
Miscalibration: ECE (10 bins) of the answer's probability against its correctness. Monofact rate:
the share of facts seen exactly once (0.25 here; the Good-Turing share of statements is
{next(iter(part.values()))['monofact_rate']['good_turing']:.3f}).

| seed | facts | recall, seen 1x | 2x | 5x | 20x | hallucination rate | monofact rate | miscalibration | bound | holds |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|
{rows}

{examples}

![recall by repeats]({png.as_posix()})

**Verdict.** {verdict}
"""


def plot_hallucination(part: dict, png: Path) -> None:
    plt = common.pyplot()
    keys = ("1", "2", "5", "20")
    fig, ax = plt.subplots(figsize=(5, 4))
    for seed, r in part.items():
        ax.plot(range(4), [r["accuracy_by_repeats"][k] for k in keys], "o-", label=f"seed {seed}")
    ax.set_xticks(range(4), [f"{k}x" for k in keys])
    ax.set_xlabel("times the fact was stated in training")
    ax.set_ylabel("recall (greedy answer = true city)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


# --- probes -----------------------------------------------------------------------------------
def probes_md(part: dict, png: Path) -> str:
    first = next(iter(part.values()))
    layers = list(first["accuracy"])
    rows = "\n".join(f"| {seed} | " + " | ".join(f"{r['accuracy'][k]:.3f}" for k in layers)
                     + f" | {r['majority_baseline']:.3f} |" for seed, r in part.items())
    best = max(layers, key=lambda k: np.mean([r["accuracy"][k] for r in part.values()]))
    gain = np.mean([r["accuracy"][best] - r["accuracy"]["0"] for r in part.values()])
    return f"""## Where the language of a line becomes linearly readable (linear probes)

**Claim.** Hidden states of a language model encode properties of the text that a linear probe
can read, better in middle layers than from the token embeddings alone.

**Setting.** The model of the curvature part (trained on English only) reads lines of the
Universal Declaration of Human Rights in {', '.join(first['labels'])} (all Latin script, up to 100
lines each, {first['train']} train / {first['test']} test); residual streams mean-pooled per line;
an L2-regularised logistic regression per layer (`lmlab probe RUN --task language --layer all`).
Layer 0 is the embedding output.

| seed | {' | '.join(f'layer {k}' for k in layers)} | majority |
|---|{'---:|' * (len(layers) + 1)}
{rows}

![probe accuracy per layer]({png.as_posix()})

**Verdict.** The best layer is {best}, {gain:+.3f} accuracy over the embedding layer
({'**supported**' if gain > 0.02 else '**not supported**: the embeddings already carry as much'}).
"""


def plot_probes(part: dict, png: Path) -> None:
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    for seed, r in part.items():
        ks = list(r["accuracy"])
        ax.plot([int(k) for k in ks], [r["accuracy"][k] for k in ks], "o-", label=f"seed {seed}")
        ax.axhline(r["majority_baseline"], color="grey", lw=0.8, ls=":")
    ax.set_xlabel("layer (0 = embedding)")
    ax.set_ylabel("held-out probe accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


SECTIONS = {"curvature": (plot_curvature, "knowledge-curvature.png"),
            "calibration": (plot_reliability, "knowledge-reliability.png"),
            "hallucination": (plot_hallucination, "knowledge-facts.png"),
            "probes": (plot_probes, "knowledge-probes.png")}


def reduced_note(s: dict) -> str:
    """A plain statement when the run was smaller than the experiment's defaults."""
    from .knowledge import DEFAULT_STEPS, MODEL

    if s["steps"] >= DEFAULT_STEPS and s["n_layers"] >= MODEL["n_layers"] and s["d_model"] >= MODEL["d_model"]:
        return ""
    return (f"**Reduced run.** The defaults ({MODEL['n_layers']} layers, width {MODEL['d_model']}, {DEFAULT_STEPS} "
            f"steps per model) did not fit the time available on a shared 2-core CPU; this page comes from "
            f"{s['n_layers']} layers, width {s['d_model']}, {s['steps']} steps (the command below). The numbers are "
            "what such a small model does, not a reproduction at the papers' scale.\n\n")


def markdown(results: dict) -> str:
    s, m, parts = results["settings"], results["machine"], results["parts"]
    body = []
    for name, part in parts.items():
        png = IMG / SECTIONS[name][1]
        if name == "curvature":
            body.append(curvature_md(part, s, png))
        elif name == "calibration":
            body.append(calibration_md(part, png))
        elif name == "hallucination":
            body.append(hallucination_md(part, s, png))
        else:
            body.append(probes_md(part, png))
    scale = ("**This page comes from a `--quick` smoke run: tiny models trained a few steps; its numbers "
             "say nothing about the claims.**\n\n" if s["quick"] else reduced_note(s))
    return f"""# What a model memorises, knows and forgets

{scale}Regenerate: `{command(s)}` (`--render-only` redraws this page from `knowledge-results.json`).
Measured on {common.describe(m)}, torch {m['torch']}.

{chr(10).join(body)}"""


def write_report(results: dict, doc) -> Path:
    doc = Path(doc)
    for name, part in results["parts"].items():
        plot, png = SECTIONS[name]
        (doc.parent / IMG).mkdir(parents=True, exist_ok=True)
        plot(part, doc.parent / IMG / png)
    return common.write_text(doc, markdown(results))
