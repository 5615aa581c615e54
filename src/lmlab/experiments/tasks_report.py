"""docs/experiments/tasks.md, its PNG and the claims list, from tasks-results.json alone.

Every figure on the page is computed here from the per-seed rows the measurement wrote: means
over seeds with their spread (max - min), and the verdicts by the rules stated on the page. The
results hold one section per part (meta, archs, passkey), each with the command, settings and
timing of the run that measured it; the page names them section by section.
"""
from __future__ import annotations

import statistics
from pathlib import Path

from . import common
from .claims import passkey_verdict

REPORT = "docs/experiments/tasks.md"
PNG = "tasks_accuracy.png"
NOISE_FLOOR = 0.05   # a difference must beat this and the seeds' spread to count
LEARNED = 0.2        # a model "learned" a task when its accuracy reaches this (chance is near 0 or 0.1)
TASK_TITLES = {"mqar": "associative recall (MQAR)", "listops": "ListOps", "selective_copy": "selective copying"}
LENGTH_UNITS = {"mqar": "context symbols", "listops": "tokens (bin start)", "selective_copy": "sequence symbols"}


def mean_spread(values: list[float]) -> tuple[float, float]:
    """(mean, max - min) over seeds."""
    return statistics.fmean(values), max(values) - min(values)


def fmt(values: list[float]) -> str:
    m, s = mean_spread(values)
    return f"{m:.2f}" if len(values) == 1 else f"{m:.2f} ± {s / 2:.2f}"


# --- gathering the rows -----------------------------------------------------------------------
def series(rows: list[dict], task: str, label: str, scoring: str = "plain") -> dict:
    """{'accuracy': [per seed], 'by_length': {length: [per seed]}, 'params': int} of one variant."""
    mine = [r for r in rows if r["task"] == task and r["label"] == label and scoring in r]
    if not mine:
        return {}
    lengths = sorted({int(n) for r in mine for n in r[scoring]["by_length"]})
    return {"accuracy": [r[scoring]["accuracy"] for r in mine], "params": mine[0]["params"],
            "seeds": [r["seed"] for r in mine], "d_ff": mine[0]["d_ff"], "pattern": mine[0]["pattern"],
            "by_length": {n: [r[scoring]["by_length"][str(n)] for r in mine if str(n) in r[scoring]["by_length"]]
                          for n in lengths}}


def variants(rows: list[dict], task: str) -> list[tuple[str, str]]:
    """(label, scoring) of every variant measured on `task`, in measurement order."""
    out = []
    for r in rows:
        if r["task"] != task:
            continue
        for scoring in ("plain", "meta_prompt"):
            key = (r["label"], scoring)
            if scoring in r and key not in out:
                out.append(key)
    return out


def name(label: str, scoring: str) -> str:
    if "meta" not in label:
        return label
    return label + (" (meta-tokens in the prompt)" if scoring == "meta_prompt" else " (plain prompt)")


def split_lengths(sec: dict, task: str) -> tuple[list[int], list[int]]:
    """(training lengths, lengths beyond them) of a task in a section (meta or archs)."""
    beyond = sec["tasks"][task]["beyond"]
    every = sorted({n for r in sec["rows"] if r["task"] == task for n in map(int, r["plain"]["by_length"])})
    return [n for n in every if n not in beyond], [n for n in every if n in beyond]


def pooled(s: dict, lengths: list[int]) -> list[float]:
    """Per seed, the mean accuracy over `lengths` (equal weight per length)."""
    n_seeds = len(s["accuracy"])
    return [statistics.fmean(s["by_length"][n][i] for n in lengths) for i in range(n_seeds)]


# --- verdicts ---------------------------------------------------------------------------------
def compare(a: list[float], b: list[float]) -> tuple[float, float]:
    """(mean(a) - mean(b), the noise it must beat: the larger seed spread, at least NOISE_FLOOR)."""
    return statistics.fmean(a) - statistics.fmean(b), max(NOISE_FLOOR, mean_spread(a)[1], mean_spread(b)[1])


def learned_at(sec: dict, task: str) -> float:
    """The accuracy a model must reach to have learned `task`: LEARNED, or for a choice task the
    majority class plus NOISE_FLOOR (always answering the commonest digit is no learning)."""
    majority = sec["budget"][task].get("majority")
    return LEARNED if majority is None else max(LEARNED, majority + NOISE_FLOOR)


def claim(paper, text, setting, number, verdict, why, cmd) -> dict:
    return {"paper": paper, "claim": text, "setting": setting, "number": number, "verdict": verdict, "why": why,
            "report": REPORT, "command": cmd}


def meta_claim(sec: dict, cmd: str, setting: str) -> dict | None:
    rows = sec["rows"]
    base, meta = series(rows, "mqar", "attention (AF)"), series(rows, "mqar", "attention + meta-tokens", "meta_prompt")
    if not base or not meta:
        return None
    within, beyond = split_lengths(sec, "mqar")
    d_in, n_in = compare(pooled(meta, within), pooled(base, within))
    d_out, n_out = compare(pooled(meta, beyond), pooled(base, beyond))
    number = (f"MQAR exact match, meta-tokens minus none: {d_in:+.2f} within the training lengths "
              f"({fmt(pooled(meta, within))} vs {fmt(pooled(base, within))}), {d_out:+.2f} beyond them up to 2x "
              f"({fmt(pooled(meta, beyond))} vs {fmt(pooled(base, beyond))})")
    if max(statistics.fmean(pooled(s, within)) for s in (base, meta)) < LEARNED:
        verdict, why = "not measurable here", f"neither model reaches {LEARNED} within the training lengths at this budget"
    elif d_out > n_out and d_in > -n_in:
        verdict, why = "holds", f"the gain beyond the training length beats the noise ({n_out:.2f})"
    elif d_out <= n_out and d_in <= n_in:
        verdict, why = "does not hold at this scale", f"no gain beats the noise ({max(n_in, n_out):.2f})"
    else:
        verdict, why = "mixed", "a gain on one side of the training length only"
    return claim("Language Modeling with Learned Meta-Tokens",
                 "Meta-tokens improve recall and let the model generalise to 2x its training length.",
                 setting, number, verdict, why, cmd)


def arch_claim(sec: dict, label: str, paper: str, text: str, tolerance: float, cmd: str, setting: str) -> dict | None:
    """`label` against attention on every task: holds if within `tolerance` + noise on all learned ones."""
    rows, diffs, parts = sec["rows"], [], []
    for task in sec["tasks"]:
        a, b = series(rows, task, label), series(rows, task, "attention (AF)")
        if not a or not b:
            return None
        d, noise = compare(a["accuracy"], b["accuracy"])
        learned = max(statistics.fmean(a["accuracy"]), statistics.fmean(b["accuracy"])) >= learned_at(sec, task)
        parts.append(f"{TASK_TITLES[task]} {fmt(a['accuracy'])} vs {fmt(b['accuracy'])}")
        if learned:
            diffs.append(d >= -(tolerance + noise))
    number = f"{label} vs attention: " + "; ".join(parts)
    if not diffs:
        verdict, why = "not measurable here", "neither model learns any task at this budget (see the rules)"
    elif all(diffs):
        verdict, why = "holds", f"within {tolerance:.2f} + seed noise of attention on every task learned"
    elif not any(diffs):
        verdict, why = "does not hold at this scale", f"below attention by more than {tolerance:.2f} + noise on every task learned"
    else:
        verdict, why = "mixed", "close to attention on some tasks, behind on others"
    return claim(paper, text, setting, number, verdict, why, cmd)


def listops_claim(sec: dict, cmd: str, setting: str) -> dict | None:
    rows = sec["rows"]
    accs = {label: series(rows, "listops", label)["accuracy"] for label, _ in variants(rows, "listops")}
    if len(accs) < 2:
        return None
    means = {k: statistics.fmean(v) for k, v in accs.items()}
    majority = sec["budget"]["listops"].get("majority")
    number = "ListOps accuracy: " + ", ".join(f"{k} {fmt(v)}" for k, v in accs.items()) + \
             (f" (majority class {majority:.2f}, chance 0.10)" if majority is not None else "")
    spread = max(means.values()) - min(means.values())
    if max(means.values()) < learned_at(sec, "listops"):
        verdict, why = "not measurable here", "no family beats the majority class: under-training cannot be told from hardness"
    elif max(means.values()) < 0.6:
        verdict, why = "holds", f"every family stays below 0.6 (spread between them {spread:.2f})"
    else:
        verdict, why = "does not hold at this scale", "one family solves the short ListOps used here"
    return claim("Long Range Arena: A Benchmark for Efficient Transformers",
                 "ListOps is hard for every architecture family: accuracy stays far from perfect.",
                 setting + "; ListOps of 5-40 tokens, depth <= 3 (LRA: 500-2000 tokens, depth 10)",
                 number, verdict, why, cmd)


def passkey_table(pk: dict) -> dict:
    """(method, depth, multiplier) -> per-seed accuracies."""
    out: dict = {}
    for r in pk["rows"]:
        out.setdefault((r["method"], r["depth"], r["multiplier"]), []).append(r["accuracy"])
    return out


def passkey_claim(pk: dict) -> dict:
    t = passkey_table(pk)
    mults = sorted({m for _, _, m in t})
    beyond = [m for m in mults if m > 1]
    at1 = [v for (meth, _, m), vals in t.items() if meth == "vanilla" and m == 1 for v in vals]

    def over(method, depth):
        n = len(t[(method, depth, beyond[0])])
        return [statistics.fmean(t[(method, depth, m)][i] for m in beyond) for i in range(n)]

    gains, parts = [], []
    for depth in sorted({d for _, d, _ in t}):
        d, noise = compare(over("lminfinite", depth), over("vanilla", depth))
        gains.append(d > noise)
        parts.append(f"depth {depth}: LM-Infinite {fmt(over('lminfinite', depth))} vs vanilla "
                     f"{fmt(over('vanilla', depth))}")
    number = f"passkey exact match at {', '.join(f'{m}x' for m in beyond)} the context (1x vanilla " \
             f"{statistics.fmean(at1):.2f}): " + "; ".join(parts)
    setting = (f"2-layer attention, d_model {pk['model']['d_model']}, {pk['params']:,} params, context {pk['context']} "
               f"chars, {pk['model']['steps']} steps, seeds {','.join(map(str, pk['seeds']))}, "
               f"{pk['settings']['passkey_examples']} prompts per cell")
    verdict, why = passkey_verdict(statistics.fmean(at1), gains)
    return claim("LM-Infinite: Simple On-the-Fly Length Generalization for Large Language Models",
                 "A Lambda-shaped mask with a distance cap keeps passkey retrieval working beyond the training length.",
                 setting, number, verdict, why, pk["command"])


def task_setting(sec: dict) -> str:
    m = sec["model"]
    return (f"2 layers, d_model {m['d_model']}, char tokens, {m['steps']} steps x batch {m['batch_size']}, "
            f"seeds {','.join(map(str, sec['seeds']))}, {sec['sizes']['n_train']} training examples per task")


def claims(res: dict) -> list[dict]:
    """The verdicts, each from its own section (its command is the one that measured it)."""
    out = []
    if "meta" in res:
        sec = res["meta"]
        meta = sec["model"]["meta"]
        out.append(meta_claim(sec, sec["command"], task_setting(sec)
                              + f", meta-tokens {meta['meta_tokens']} at rate {meta['meta_rate']}"))
    if "archs" in res:
        sec = res["archs"]
        setting = task_setting(sec) + ", equal parameters (FFN width solved)"
        out.append(arch_claim(sec, "ssm hybrid (AMF MF)",
                              "Hunyuan-TurboS: Advancing Large Language Models through Mamba-Transformer Synergy and "
                              "Adaptive Chain-of-Thought",
                              "A Mamba-attention hybrid keeps attention's quality at the same size.",
                              0.0, sec["command"], setting))
        out.append(arch_claim(sec, "lmu (LF)",
                              "LMUFormer: Low Complexity Yet Powerful Spiking Model With Legendre Memory Units",
                              "An attention-free Legendre-memory model comes close to a Transformer's accuracy.",
                              0.05, sec["command"], setting))
        out.append(listops_claim(sec, sec["command"], task_setting(sec)))
    if "passkey" in res:
        out.append(passkey_claim(res["passkey"]))
    return [c for c in out if c]


# --- the page ---------------------------------------------------------------------------------
PART_TITLES = {"meta": "meta-tokens on MQAR", "archs": "architectures on ListOps, MQAR, selective copying",
               "passkey": "LM-Infinite on passkey"}

# What was tried by hand to make recall learnable at this budget (one seed each, `lmlab task make` +
# training as in this experiment; not re-run by the command). Kept here so the page says it.
RECALL_PROBES = [
    "single-query recall (`--set queries=1`, otherwise the MQAR settings above), 2-layer d64 attention, batch 64: "
    "lr 3e-3 for 1000 steps reached 0.27 (chance 0.25), for 4000 steps 0.22; lr 1e-2 for 2500 steps 0.23, its "
    "answer loss falling from 1.03 to 0.73 with the accuracy still at chance",
    "the same without spaces between symbols (`delimiter \"\"`), 1000 steps: 0.27",
    "two pairs over 8 symbols (`--set vocab=8 --set pairs=2 --set queries=1 --set lengths=8,10,12`), batch 64, "
    "lr 3e-3, 3000 steps: 0.45 (chance 0.5)",
]


# Tried by hand with `lmlab experiment tasks --passkey-steps 3000` (seeds 1, 2; the other parts'
# numbers of that run were identical to the default run's): longer training did not help.
PASSKEY_AT_1000 = ("Trained for 3000 steps instead (`--passkey-steps 3000`, 20.0 min for the whole run), the same "
                   "model retrieved 0.05 ± 0.05 of the keys at 1x for depth 0.5 and 0.00 for depth 1.0 (0.00 beyond "
                   "1x, either method): no closer to the 0.5 the verdict needs.")


def _task_line(sec: dict, task: str) -> str:
    spec, budget = sec["tasks"][task], sec["budget"][task]
    within, beyond = split_lengths(sec, task)
    extra = f"; majority class {budget['majority']:.2f}, chance 0.10" if budget.get("majority") is not None else ""
    return (f"`lmlab task make {spec['generator']} --set " + " --set ".join(spec["settings"]) + "`; training "
            f"context {budget['context']} chars{extra}. Accuracy (exact match of the whole answer"
            f"{'' if task != 'listops' else '; ListOps: the likeliest of the ten digits'}) by "
            f"{LENGTH_UNITS[task]}" + (f"; {', '.join(map(str, beyond))} are beyond the training lengths"
                                       if beyond else "") + ".")


def _table(sec: dict, task: str) -> list[str]:
    rows = sec["rows"]
    within, beyond = split_lengths(sec, task)
    md = ["| model | pattern | d_ff | params | test accuracy | " + " | ".join(
        f"{n}{' (beyond)' if n in beyond else ''}" for n in within + beyond) + " |",
        "|" + "---|" * (5 + len(within) + len(beyond))]
    for label, scoring in variants(rows, task):
        s = series(rows, task, label, scoring)
        md.append(f"| {name(label, scoring)} | `{s['pattern']}` | {s['d_ff']} | {s['params']:,} | "
                  f"{fmt(s['accuracy'])} | " + " | ".join(fmt(s["by_length"][n]) for n in within + beyond) + " |")
    return md + [""]


def measured_by(sec: dict) -> str:
    """The line under a section's title: the command that measured it, and how."""
    m = sec["model"]
    return (f"Measured by `{sec['command']}`: {m['steps']} steps per model, seeds "
            f"{', '.join(map(str, sec['seeds']))}, {sec['sizes']['n_train']} training and {sec['sizes']['n_test']} "
            f"test examples per task directory.")


def _meta_section(sec: dict) -> list[str]:
    meta = sec["model"]["meta"]
    return ["## Meta-tokens on associative recall (MQAR)", "", measured_by(sec), "",
            f"The attention model with and without {meta['meta_tokens']} learned meta-token embeddings and a "
            "meta-attention per layer but the last (more parameters); "
            f"{meta['meta_rate']:.0%} of each training window becomes meta-tokens. It is scored on the plain prompt "
            "(lmlab injects nothing at inference) and with a meta-token before every "
            f"{round(1 / meta['meta_rate'])}th prompt token, as in training.", "",
            _task_line(sec, "mqar"), ""] + _table(sec, "mqar")


def _archs_section(sec: dict) -> list[str]:
    md = ["## Architectures at one parameter budget", "", measured_by(sec), "",
          "The SSM hybrid and the LMU model get the FFN width (d_ff) that brings their parameter count to the "
          "attention model's (the counts in the tables are the trained models', embedding included; they differ by "
          "task only through the vocabulary).", ""]
    for task in sec["tasks"]:
        md += [f"### {TASK_TITLES[task]}", "", _task_line(sec, task), ""] + _table(sec, task)
    return md


def _passkey_section(pk: dict) -> list[str]:
    t = passkey_table(pk)
    mults = sorted({m for _, _, m in t})
    md = ["## LM-Infinite on passkey beyond the training length", "", measured_by(pk), "",
          f"An attention model ({pk['params']:,} parameters) trained on `lmlab task make passkey --set "
          + " --set ".join(pk["task_settings"]) + f"` (training context {pk['context']} chars, the longest prompt with its "
          f"answer), then scored by `lmlab.eval.passkey.evaluate` at 1x-{mults[-1]}x that context, vanilla (RoPE "
          f"extrapolated) and under LM-Infinite (n_global {pk['n_global']}, n_local = the context), "
          f"{pk['settings']['passkey_examples']} prompts per cell. Depth 1.0 puts "
          "the key right before the question, inside n_local; at depth 0.5 it sits in the middle that LM-Infinite "
          "masks beyond 1x. Exact match of the 5-digit key.", "",
          "| method | depth | " + " | ".join(f"{m}x ({m * pk['context']} tokens)" for m in mults) + " |",
          "|" + "---|" * (2 + len(mults))]
    for method in ("vanilla", "lminfinite"):
        for depth in sorted({d for _, d, _ in t}):
            md.append(f"| {method} | {depth} | " + " | ".join(fmt(t[(method, depth, m)]) for m in mults) + " |")
    return md + ["", PASSKEY_AT_1000, ""]


def _runs_table(res: dict) -> list[str]:
    """One row per part: the run that measured it, its wall time and the machine's load."""
    md = ["| part | command | wall time of the run | its models, single-job time | of which scoring | jobs x threads | "
          "load (1 min) at start, end | machine |", "|---|---|---|---|---|---|---|---|"]
    for part in PART_TITLES:
        if part not in res:
            continue
        sec = res[part]
        t, mach = sec["timing"], sec["machine"]
        together = sec.get("parts_run_together", [part])
        run = f"{t['wall_s'] / 60:.1f} min" + (f" (with {', '.join(p for p in together if p != part)})"
                                               if len(together) > 1 else "")
        timed = sec["per_seed"] if part == "passkey" else sec["rows"]
        scoring = sum(r["wall_s"] - r["train_s"] for r in timed)
        md.append(f"| {PART_TITLES[part]} | `{sec['command']}` | {run} | {sec['models_s'] / 60:.1f} min | "
                  f"{scoring / 60:.1f} min | "
                  f"{sec['jobs']} x {sec['settings']['threads']} | {t['load_1min_start']:.2f}, "
                  f"{t['load_1min_end']:.2f} | {common.describe(mach)}, torch {mach['torch']} |")
    return md + [""]


def panels(res: dict) -> list[tuple[str, list[tuple[dict, str, str]]]]:
    """(task, [(section, label, scoring)]) for each accuracy-by-length panel of the figure."""
    out: dict = {}
    if "archs" in res:
        for task in res["archs"]["tasks"]:
            out[task] = [(res["archs"], label, sc) for label, sc in variants(res["archs"]["rows"], task)]
    if "meta" in res:
        mine = [(res["meta"], label, sc) for label, sc in variants(res["meta"]["rows"], "mqar")
                if "meta" in label or "archs" not in res]
        out["mqar"] = out.get("mqar", []) + mine
    return list(out.items())


def plot(res: dict, docs: Path) -> str:
    plt = common.pyplot()
    shown = panels(res)
    n = len(shown) + ("passkey" in res)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.8), squeeze=False)
    for ax, (task, lines) in zip(axes[0], shown):
        for sec, label, scoring in lines:
            s = series(sec["rows"], task, label, scoring)
            xs = sorted(s["by_length"])
            ax.errorbar(xs, [statistics.fmean(s["by_length"][x]) for x in xs],
                        yerr=[mean_spread(s["by_length"][x])[1] / 2 for x in xs], marker="o", capsize=3,
                        label=name(label, scoring))
        within, beyond = split_lengths(lines[0][0], task)
        if beyond:
            ax.axvline(max(within), color="gray", ls=":", lw=1)
        ax.set_title(TASK_TITLES[task])
        ax.set_xlabel(LENGTH_UNITS[task])
        ax.set_ylim(-0.03, 1.03)
        ax.set_ylabel("accuracy (mean ± half spread over seeds)")
        ax.legend(fontsize=6)
    if "passkey" in res:
        ax, t = axes[0][-1], passkey_table(res["passkey"])
        mults = sorted({m for _, _, m in t})
        for method in ("vanilla", "lminfinite"):
            for depth in sorted({d for _, d, _ in t}):
                ax.errorbar(mults, [statistics.fmean(t[(method, depth, m)]) for m in mults],
                            yerr=[mean_spread(t[(method, depth, m)])[1] / 2 for m in mults], marker="o", capsize=3,
                            label=f"{method}, depth {depth}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(mults, [f"{m}x" for m in mults])
        ax.set_title("passkey")
        ax.set_xlabel("prompt length / training context")
        ax.set_ylim(-0.03, 1.03)
        ax.legend(fontsize=6)
    fig.tight_layout()
    docs.mkdir(parents=True, exist_ok=True)
    fig.savefig(docs / PNG, dpi=110)
    plt.close(fig)
    return PNG


def _intro(res: dict) -> list[str]:
    commands = sorted({res[p]["command"] for p in PART_TITLES if p in res})
    if len(commands) == 1:
        how = f"Regenerate: `{commands[0]}`."
    else:
        how = "The sections come from different runs; each names the command that measured it."
    return [how + " `--parts P` re-measures the parts P and keeps the others' numbers in `tasks-results.json`; "
            "`--render-only` redraws this page from that file.", "",
            "Every model: 2 layers, d_model {d}, 4 heads, char tokens, batch 32, AdamW lr 3e-3, trained on a task "
            "directory with the loss on the answers only (`--set data.task=DIR`), each training window starting at an "
            "example and as long as the longest one. Figures are the mean ± half the spread (max − min) over seeds. "
            "Each model is trained and scored in its own process, seeded and single-threaded, `--jobs` of them at "
            "once (default: two on a machine with two cores): its numbers do not depend on `--jobs`, only the wall "
            "time does.".format(d=next(res[p] for p in PART_TITLES if p in res)["model"]["d_model"]), ""]


def write_report(res: dict, docs: Path) -> Path:
    res["claims"] = claims(res)
    common.write_json(docs / "tasks-results.json", res)
    md = ["# The synthetic task suite: meta-tokens, SSM / LMU vs attention, LM-Infinite", ""] + _intro(res)
    md += ["## Runs", "",
           "The parts of one run share its pool of worker processes, so the run's wall time covers them together; "
           "a part's own cost is the sum of its models' times, each measured inside its job (training, then "
           "scoring on the test splits or the passkey prompts).", ""] + _runs_table(res)
    if "meta" in res or "archs" in res:
        md += ["## Accuracy against sequence length", "", f"![accuracy against sequence length]({PNG})", ""]
    if "meta" in res:
        md += _meta_section(res["meta"])
    if "archs" in res:
        md += _archs_section(res["archs"])
    if "passkey" in res:
        md += _passkey_section(res["passkey"])
    md += ["## Verdicts", "",
           f"Rules (tasks_report.py): a difference counts when it beats the larger seed spread and {NOISE_FLOOR}; "
           f"a model has learned a task at {LEARNED} accuracy (ListOps: the majority class + {NOISE_FLOOR}). Meta-tokens hold when their gain beyond the training "
           "length counts and they lose nothing within it. The hybrid holds when no learned task puts it behind "
           "attention; the LMU model when it is within 0.05 of attention on every learned task. ListOps holds when "
           "some family learns it and every family stays below 0.6. LM-Infinite needs the model to retrieve at 1x (0.5) and holds when it "
           "beats vanilla beyond 1x at every depth.", "",
           "| paper | claim | our number | verdict | why |", "|---|---|---|---|---|"]
    for c in res["claims"]:
        md.append(f"| {c['paper'].split(':')[0]} | {c['claim']} | {c['number']} | **{c['verdict']}** | {c['why']} |")
    md.append("")
    if any(c["verdict"] == "not measurable here" for c in res["claims"]):
        md += ["Where a verdict is *not measurable here*, nothing learned the task at this budget: these models "
               "train for a minute or two each on a shared CPU, far shorter than the recall literature trains its "
               "small models (Zoology trains its MQAR models about a thousand times longer). `--steps` and "
               "`--d-model` scale the run; a fair test of these claims needs models that solve the tasks within the "
               "training length first. Tried by hand for recall, without success:", ""]
        md += [f"- {p}" for p in RECALL_PROBES] + [""]
    plot(res, docs)
    return common.write_text(docs / "tasks.md", "\n".join(md))
