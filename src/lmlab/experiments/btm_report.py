"""docs/experiments/btm.md and its posterior picture, drawn from btm-results.json alone; the claims."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import common
from .btm import DOMAINS, RANDOM, UNSEEN, command

PAPER = "Branch-Train-Merge: Embarrassingly Parallel Training of Expert Language Models"
PNG = "img/btm-posteriors.png"
ROWS = [("seed", lambda t: t["single"]["seed"]), ("dense (compute-matched)", lambda t: t["single"]["dense"])]
for _set in ("domain", "random"):
    ROWS += [(f"{_set} experts: ensemble, uniform prior", lambda t, s=_set: t["sets"][s]["ensemble_uniform"]),
             (f"{_set} experts: ensemble, dev prior", lambda t, s=_set: t["sets"][s]["ensemble_dev"]),
             (f"{_set} experts: average, dev-posterior weights", lambda t, s=_set: t["sets"][s]["average_dev"]),
             (f"{_set} experts: average, uniform", lambda t, s=_set: t["sets"][s]["average_uniform"])]


def in_domain_mean(scores: dict, pick) -> float:
    return float(np.mean([pick(scores[d]) for d in DOMAINS]))


def _verdict(better_in: bool, better_out: bool) -> str:
    if better_in and better_out:
        return "holds"
    return "mixed" if better_in or better_out else "does not hold at this scale"


def claims(results: dict, report: str) -> list[dict]:
    """One entry per paper claim measured, numbers and verdicts from the scores by the stated rules."""
    sc, s = results["scores"], results["settings"]
    setting = (f"{results['params']:,}-parameter byte LMs ({s['layers']} layers, width {s['width']}), seed "
               f"{s['seed_steps']} steps, experts {s['expert_steps']} steps each, dense {4 * s['expert_steps']}; "
               f"one seed; {', '.join(DOMAINS)} + unseen Jekyll and Hyde")
    dense = lambda t: t["single"]["dense"]  # noqa: E731
    ens = lambda t: t["sets"]["domain"]["ensemble_dev"]  # noqa: E731
    rand = lambda t: t["sets"]["random"]["ensemble_dev"]  # noqa: E731
    avg = lambda t: t["sets"]["domain"]["average_dev"]  # noqa: E731
    base = {"paper": PAPER, "setting": setting, "report": report, "command": command(s)}

    def versus(pick, other, name, other_name):
        i, o = in_domain_mean(sc, pick), in_domain_mean(sc, other)
        ui, uo = pick(sc[UNSEEN]), other(sc[UNSEEN])
        return (f"{name} {i:.4f} vs {other_name} {o:.4f} bpb (mean of 4 domains); unseen text {ui:.4f} vs {uo:.4f}",
                _verdict(i < o, ui < uo))

    n1, v1 = versus(ens, dense, "BTM ensemble", "dense")
    n2, v2 = versus(ens, rand, "domain-expert ensemble", "random-split ensemble")
    n3, v3 = versus(avg, dense, "posterior-weighted average", "dense")
    rule = "holds if lower on both the domains' mean and the unseen text, mixed if on one, else does not hold"
    return [
        {**base, "claim": "An ensemble of domain experts (BTM) beats a dense LM trained with the same compute, "
                          "in and out of domain.", "number": n1, "verdict": v1, "why": rule},
        {**base, "claim": "Experts need domain specialisation: an ensemble of experts trained on random data splits "
                          "does worse than one of domain experts.", "number": n2, "verdict": v2, "why": rule},
        {**base, "claim": "Averaging the experts' parameters (weighted by the domain posterior) collapses them into "
                          "one LM that beats the compute-matched dense LM.", "number": n3, "verdict": v3, "why": rule},
    ]


def bpb_table(sc: dict) -> str:
    texts = [*DOMAINS, UNSEEN]
    lines = ["| model | " + " | ".join(texts) + " | mean of 4 domains |", "|---" * (len(texts) + 2) + "|"]
    best = {t: min(pick(sc[t]) for _, pick in ROWS) for t in texts}
    for label, pick in ROWS:
        cells = [f"**{pick(sc[t]):.4f}**" if pick(sc[t]) == best[t] else f"{pick(sc[t]):.4f}" for t in texts]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {in_domain_mean(sc, pick):.4f} |")
    return "\n".join(lines)


def expert_table(sc: dict, group: str, members) -> str:
    texts = [*DOMAINS, UNSEEN]
    lines = ["| expert alone | " + " | ".join(texts) + " |", "|---" * (len(texts) + 1) + "|"]
    for m in members:
        lines.append(f"| {m} | " + " | ".join(f"{sc[t]['sets'][group]['experts'][m]:.4f}" for t in texts) + " |")
    return "\n".join(lines)


def choice_table(sc: dict, group: str, members) -> str:
    """How many held-out windows of each text pick each expert (the posterior's argmax), and the dev prior."""
    lines = ["| text | windows | " + " | ".join(members) + " | dev prior |", "|---" * (len(members) + 3) + "|"]
    for t in (*DOMAINS, UNSEEN):
        st = sc[t]["sets"][group]
        post = np.asarray(st["document_posteriors"])
        counts = np.bincount(post.argmax(axis=1), minlength=len(members)) if len(post) else np.zeros(len(members))
        prior = " / ".join(f"{st['dev_prior'][m]:.2f}" for m in members)
        lines.append(f"| {t} | {len(post)} | " + " | ".join(str(int(c)) for c in counts) + f" | {prior} |")
    return "\n".join(lines)


def draw_posteriors(sc: dict, path: Path) -> None:
    plt = common.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 6), sharey=True)
    for ax, (group, members) in zip(axes, (("domain", DOMAINS), ("random", RANDOM))):
        rows, ticks, labels = [], [], []
        for t in (*DOMAINS, UNSEEN):
            post = sc[t]["sets"][group]["document_posteriors"]
            ticks.append(len(rows) + len(post) / 2 - 0.5), labels.append(t)
            rows += post
        ax.imshow(np.asarray(rows), aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks(range(len(members)), members, rotation=30)
        ax.set_title(f"{group} experts")
        ax.set_yticks(ticks, labels)
    axes[0].set_ylabel("held-out windows, grouped by text")
    fig.suptitle("P(expert | window) after each held-out window (uniform prior)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_report(results: dict, doc: Path) -> Path:
    doc = Path(doc)
    sc, s, d, m = results["scores"], results["settings"], results["data"], results["machine"]
    draw_posteriors(sc, doc.parent / PNG)
    sizes = ", ".join(f"{t} {z['train_bytes'] / 1000:,.0f} kB train / {z['test_bytes'] / 1000:,.0f} kB test"
                      for t, z in d["sizes"].items())
    code = d["code"]
    verdicts = "\n".join(f"- **{c['verdict']}**: {c['claim']} ({c['number']})" for c in results["claims"])
    tps = results["training"]["tok_per_s"]
    quick = "**A --quick smoke run: models of a few steps; the numbers say nothing about the claims.**\n\n" \
        if s["quick"] else ""
    text = f"""# Branch-Train-Merge on four distinct domains (Li et al. 2022, small)

{quick}**Question.** With the same training compute, does an ensemble (or a parameter average) of experts
branched from one seed and trained each on one domain model the domains, and unseen text, better
than one dense LM trained on everything; and does it need real domains, or do experts trained on
random splits of the same text do as well (the paper's control)?

**Setup** (`{command(s)}`; every number below is written from `btm-results.json`):
- Domains: Shakespeare (tinyshakespeare), English prose (Frankenstein and Tom Sawyer), the
  multilingual corpus ({len(d['languages'])} languages: {', '.join(d['languages'])}) and code (the Python
  standard library's top-level modules from `{code['stdlib']}`, {code['files']} files in name order,
  `{code['first']}` to `{code['last']}`). Each document: the last 8% is scored, the 2% before it is dev
  (priors and merge weights), the rest is trained on. Jekyll and Hyde is never trained on (the unseen
  text). Sizes: {sizes}.
- Models: byte tokenizer, {s['layers']} layers, width {s['width']}, {s['heads']} heads, context {s['context']}
  ({results['params']:,} parameters), fp32, batch {s['batch']} x {s['context']}, lr {s['lr']:g} to a tenth (cosine).
- Seed: {s['seed_steps']} steps on all four training texts. Domain experts: branched from the seed, {s['expert_steps']}
  steps each on their domain. Random-split experts (the control): {s['expert_steps']} steps each on a random
  quarter of the same mixed text (2,000-character blocks, shuffled). Dense, compute-matched: the seed
  trained {4 * s['expert_steps']} steps (the experts' 4 x {s['expert_steps']}) on all four texts.
- Scoring: bits per byte on each text's scored part (windows of the context, as `lmlab eval`); the
  ensemble is `p(x_t|x_<t) = sum_j p_j(x_t|x_<t) P(j|x_<t)` with the posterior restarted at each
  window, from a uniform prior or the prior of {s['dev_sequences']} dev windows of that text; the average is the
  experts' parameters weighted by that dev prior (or uniformly).
- Machine: {common.describe(m)}, torch {m['torch']}, load {m['load_avg_1min']:.1f}; started {results['started']};
  training {results['minutes']['train']:.1f} min (experts {min(v for v in tps.values() if v):,.0f}-{max(v for v in tps.values() if v):,.0f} tokens/s), scoring {results['minutes']['score']:.1f} min.

**Bits per byte** (lower is better; bold: best in the column):

{bpb_table(sc)}

Each expert alone:

{expert_table(sc, "domain", DOMAINS)}

{expert_table(sc, "random", RANDOM)}

**The posterior picture**: which expert each held-out window picks (argmax of the posterior after the
window, from a uniform prior), per text, and the dev prior of that text.

Domain experts:

{choice_table(sc, "domain", DOMAINS)}

Random-split experts:

{choice_table(sc, "random", RANDOM)}

![posteriors]({PNG})

**Verdicts** (rule: a claim holds if BTM's figure is lower both on the four domains' mean and on
the unseen text, mixed if on one, else does not hold at this scale):

{verdicts}

One seed and one small size: where a crossover lies, and whether the paper's gains (many more, more
distinct domains, far larger models) appear at larger scale, this run cannot say.
"""
    return common.write_text(doc, text)
