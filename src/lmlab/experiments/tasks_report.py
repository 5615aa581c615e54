"""docs/experiments/tasks.md, its PNG and the claims list, from tasks-results.json alone.

Every figure on the page is computed here from the per-seed rows the measurement wrote: means
over seeds with their spread (max - min), and the verdicts by the rules stated on the page.
"""
from __future__ import annotations

import shlex
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


def command(s: dict) -> str:
    parts = ["lmlab", "experiment", "tasks"]
    if s.get("quick"):
        parts.append("--quick")
    else:
        parts += ["--steps", str(s["steps"]), "--seeds", s["seeds"], "--d-model", str(s["d_model"]),
                  "--passkey-examples", str(s["passkey_examples"])]
    parts += ["--parts", s["parts"], "--threads", str(s["threads"])]
    if s["out"] != "runs/tasks":
        parts += ["--out", s["out"]]
    if s["docs"] != "docs/experiments":
        parts += ["--docs", s["docs"]]
    return " ".join(shlex.quote(p) for p in parts)


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


def split_lengths(res: dict, task: str) -> tuple[list[int], list[int]]:
    """(training lengths, lengths beyond them) of a task."""
    settings = res["archs"]["tasks"][task]
    beyond = settings["beyond"]
    every = sorted({n for r in res["archs"]["rows"] if r["task"] == task for n in map(int, r["plain"]["by_length"])})
    return [n for n in every if n not in beyond], [n for n in every if n in beyond]


def pooled(s: dict, lengths: list[int]) -> list[float]:
    """Per seed, the mean accuracy over `lengths` (equal weight per length)."""
    n_seeds = len(s["accuracy"])
    return [statistics.fmean(s["by_length"][n][i] for n in lengths) for i in range(n_seeds)]


# --- verdicts ---------------------------------------------------------------------------------
def compare(a: list[float], b: list[float]) -> tuple[float, float]:
    """(mean(a) - mean(b), the noise it must beat: the larger seed spread, at least NOISE_FLOOR)."""
    return statistics.fmean(a) - statistics.fmean(b), max(NOISE_FLOOR, mean_spread(a)[1], mean_spread(b)[1])


def learned_at(res: dict, task: str) -> float:
    """The accuracy a model must reach to have learned `task`: LEARNED, or for a choice task the
    majority class plus NOISE_FLOOR (always answering the commonest digit is no learning)."""
    majority = res["archs"]["budget"][task].get("majority")
    return LEARNED if majority is None else max(LEARNED, majority + NOISE_FLOOR)


def claim(paper, text, setting, number, verdict, why, cmd) -> dict:
    return {"paper": paper, "claim": text, "setting": setting, "number": number, "verdict": verdict, "why": why,
            "report": REPORT, "command": cmd}


def meta_claim(res: dict, cmd: str, setting: str) -> dict | None:
    rows = res["archs"]["rows"]
    base, meta = series(rows, "mqar", "attention (AF)"), series(rows, "mqar", "attention + meta-tokens", "meta_prompt")
    if not base or not meta:
        return None
    within, beyond = split_lengths(res, "mqar")
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


def arch_claim(res: dict, label: str, paper: str, text: str, tolerance: float, cmd: str, setting: str) -> dict | None:
    """`label` against attention on every task: holds if within `tolerance` + noise on all learned ones."""
    rows, diffs, parts = res["archs"]["rows"], [], []
    for task in res["archs"]["tasks"]:
        a, b = series(rows, task, label), series(rows, task, "attention (AF)")
        if not a or not b:
            return None
        d, noise = compare(a["accuracy"], b["accuracy"])
        learned = max(statistics.fmean(a["accuracy"]), statistics.fmean(b["accuracy"])) >= learned_at(res, task)
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


def listops_claim(res: dict, cmd: str, setting: str) -> dict | None:
    rows = res["archs"]["rows"]
    accs = {label: series(rows, "listops", label)["accuracy"] for label, _ in variants(rows, "listops")}
    if len(accs) < 2:
        return None
    means = {k: statistics.fmean(v) for k, v in accs.items()}
    majority = res["archs"]["budget"]["listops"].get("majority")
    number = "ListOps accuracy: " + ", ".join(f"{k} {fmt(v)}" for k, v in accs.items()) + \
             (f" (majority class {majority:.2f}, chance 0.10)" if majority is not None else "")
    spread = max(means.values()) - min(means.values())
    if max(means.values()) < learned_at(res, "listops"):
        verdict, why = "not measurable here", "no family beats the majority class: under-training cannot be told from hardness"
    elif max(means.values()) < 0.6:
        verdict, why = "holds", f"every family stays below 0.6 (spread between them {spread:.2f})"
    else:
        verdict, why = "does not hold at this scale", "one family solves the short ListOps used here"
    return claim("Long Range Arena: A Benchmark for Efficient Transformers",
                 "ListOps is hard for every architecture family: accuracy stays far from perfect.",
                 setting + "; ListOps of 5-40 tokens, depth <= 3 (LRA: 500-2000 tokens, depth 10)",
                 number, verdict, why, cmd)


def passkey_table(res: dict) -> dict:
    """(method, depth, multiplier) -> per-seed accuracies."""
    out: dict = {}
    for r in res["passkey"]["rows"]:
        out.setdefault((r["method"], r["depth"], r["multiplier"]), []).append(r["accuracy"])
    return out


def passkey_claim(res: dict, cmd: str) -> dict:
    pk, t = res["passkey"], passkey_table(res)
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
    setting = (f"2-layer attention, d_model {res['model']['d_model']}, {pk['params']:,} params, context {pk['context']} "
               f"chars, {res['model']['steps']} steps, seeds {','.join(map(str, res['seeds']))}, "
               f"{res['settings']['passkey_examples']} prompts per cell")
    verdict, why = passkey_verdict(statistics.fmean(at1), gains)
    return claim("LM-Infinite: Simple On-the-Fly Length Generalization for Large Language Models",
                 "A Lambda-shaped mask with a distance cap keeps passkey retrieval working beyond the training length.",
                 setting, number, verdict, why, cmd)


def claims(res: dict) -> list[dict]:
    cmd = command(res["settings"])
    m = res["model"]
    setting = (f"2 layers, d_model {m['d_model']}, char tokens, {m['steps']} steps x batch {m['batch_size']}, "
               f"seeds {','.join(map(str, res['seeds']))}, {res['sizes']['n_train']} training examples per task")
    out = []
    if "archs" in res:
        out.append(meta_claim(res, cmd, setting + f", meta-tokens {m['meta']['meta_tokens']} at rate {m['meta']['meta_rate']}"))
        out.append(arch_claim(res, "ssm hybrid (AMF MF)",
                              "Hunyuan-TurboS: Advancing Large Language Models through Mamba-Transformer Synergy and "
                              "Adaptive Chain-of-Thought",
                              "A Mamba-attention hybrid keeps attention's quality at the same size.",
                              0.0, cmd, setting + ", equal parameters (FFN width solved)"))
        out.append(arch_claim(res, "lmu (LF)",
                              "LMUFormer: Low Complexity Yet Powerful Spiking Model With Legendre Memory Units",
                              "An attention-free Legendre-memory model comes close to a Transformer's accuracy.",
                              0.05, cmd, setting + ", equal parameters (FFN width solved)"))
        out.append(listops_claim(res, cmd, setting))
    if "passkey" in res:
        out.append(passkey_claim(res, cmd))
    return [c for c in out if c]


# --- the page ---------------------------------------------------------------------------------
def _arch_tables(res: dict) -> list[str]:
    rows, md = res["archs"]["rows"], []
    for task, spec in res["archs"]["tasks"].items():
        within, beyond = split_lengths(res, task)
        budget = res["archs"]["budget"][task]
        extra = f"; majority class {budget['majority']:.2f}, chance 0.10" if budget.get("majority") is not None else ""
        md += [f"### {TASK_TITLES[task]}", "",
               f"`lmlab task make {spec['generator']} --set " + " --set ".join(spec["settings"]) + "`; training "
               f"context {budget['context']} chars{extra}. Accuracy (exact match of the whole answer"
               f"{'' if task != 'listops' else '; ListOps: the likeliest of the ten digits'}) by "
               f"{LENGTH_UNITS[task]}" + (f"; {', '.join(map(str, beyond))} are beyond the training lengths"
                                          if beyond else "") + ".", ""]
        head = "| model | pattern | d_ff | params | test accuracy | " + " | ".join(
            f"{n}{' (beyond)' if n in beyond else ''}" for n in within + beyond) + " |"
        md += [head, "|" + "---|" * (5 + len(within) + len(beyond))]
        for label, scoring in variants(rows, task):
            s = series(rows, task, label, scoring)
            md.append(f"| {name(label, scoring)} | `{s['pattern']}` | {s['d_ff']} | {s['params']:,} | "
                      f"{fmt(s['accuracy'])} | " + " | ".join(fmt(s["by_length"][n]) for n in within + beyond) + " |")
        md.append("")
    return md


def _passkey_section(res: dict) -> list[str]:
    pk, t = res["passkey"], passkey_table(res)
    mults = sorted({m for _, _, m in t})
    md = ["## LM-Infinite on passkey beyond the training length", "",
          f"An attention model ({pk['params']:,} parameters) trained on `lmlab task make passkey --set "
          + " --set ".join(pk["settings"]) + f"` (training context {pk['context']} chars, the longest prompt with its "
          f"answer), then scored by `lmlab.eval.passkey.evaluate` at 1x-{mults[-1]}x that context, vanilla (RoPE "
          f"extrapolated) and under LM-Infinite (n_global {pk['n_global']}, n_local = the context). Depth 1.0 puts "
          "the key right before the question, inside n_local; at depth 0.5 it sits in the middle that LM-Infinite "
          "masks beyond 1x. Exact match of the 5-digit key.", "",
          "| method | depth | " + " | ".join(f"{m}x ({m * pk['context']} tokens)" for m in mults) + " |",
          "|" + "---|" * (2 + len(mults))]
    for method in ("vanilla", "lminfinite"):
        for depth in sorted({d for _, d, _ in t}):
            md.append(f"| {method} | {depth} | " + " | ".join(fmt(t[(method, depth, m)]) for m in mults) + " |")
    return md + [""]


def plot(res: dict, docs: Path) -> str:
    plt = common.pyplot()
    tasks = list(res.get("archs", {}).get("tasks", {}))
    n = len(tasks) + ("passkey" in res)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rows = res["archs"]["rows"]
        for label, scoring in variants(rows, task):
            s = series(rows, task, label, scoring)
            xs = sorted(s["by_length"])
            ax.errorbar(xs, [statistics.fmean(s["by_length"][x]) for x in xs],
                        yerr=[mean_spread(s["by_length"][x])[1] / 2 for x in xs], marker="o", capsize=3,
                        label=name(label, scoring))
        within, beyond = split_lengths(res, task)
        if beyond:
            ax.axvline(max(within), color="gray", ls=":", lw=1)
        ax.set_title(TASK_TITLES[task])
        ax.set_xlabel(LENGTH_UNITS[task])
        ax.set_ylim(-0.03, 1.03)
        ax.set_ylabel("accuracy (mean ± half spread over seeds)")
        ax.legend(fontsize=6)
    if "passkey" in res:
        ax, t = axes[0][-1], passkey_table(res)
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


def write_report(res: dict, docs: Path) -> Path:
    res["claims"] = claims(res)
    common.write_json(docs / "tasks-results.json", res)
    m, s = res["model"], res["settings"]
    md = ["# The synthetic task suite: meta-tokens, SSM / LMU vs attention, LM-Infinite", "",
          f"Regenerate: `{command(s)}` (then `--render-only` redraws this page from "
          f"`tasks-results.json`). Measured on {common.describe(res['machine'])}, torch {res['machine']['torch']}, "
          f"{res['wall_s'] / 60:.1f} minutes for the whole run.", "",
          f"Every model: {m['n_layers']} layers, d_model {m['d_model']}, {m['n_heads']} heads, char tokens, "
          f"{m['steps']} steps of batch {m['batch_size']}, AdamW lr 3e-3, trained on a task directory with the loss on "
          f"the answers only (`--set data.task=DIR`), each training window starting at an example and as long as the "
          f"longest one. Seeds "
          f"{', '.join(map(str, res['seeds']))}: figures are the mean ± half the spread (max − min) over seeds. "
          f"Task sizes: {res['sizes']['n_train']} training, {res['sizes']['n_test']} test examples per directory.", "",
          "Parameter budget: the SSM hybrid and the LMU model get the FFN width (d_ff) that brings their parameter "
          "count to the attention model's (the counts in the tables are the trained models', embedding included; "
          "they differ by task only through the vocabulary). The meta-token model is the attention model plus "
          f"{m['meta']['meta_tokens']} meta-token embeddings and a meta-attention per layer but the last (more "
          f"parameters); {m['meta']['meta_rate']:.0%} of each training window becomes meta-tokens. It is scored on the plain "
          "prompt (lmlab injects nothing at inference) and with a meta-token before every "
          f"{round(1 / m['meta']['meta_rate'])}th prompt token, as in training.", ""]
    if "archs" in res:
        md += ["## Accuracy against sequence length", "", f"![accuracy against sequence length]({PNG})", ""]
        md += _arch_tables(res)
    if "passkey" in res:
        md += _passkey_section(res)
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
               "small models. `--steps` and `--d-model` scale the run; a fair test of these claims needs models that solve the tasks within the training length "
               "first.", ""]
    plot(res, docs)
    return common.write_text(docs / "tasks.md", "\n".join(md))
