"""Write docs/experiments/norms.md and the claims from the JSON that `lmlab experiment norms` measured."""
from __future__ import annotations

from pathlib import Path

from . import common
from .claims import claim

PAPER = "Pre-RMSNorm and Pre-CRMSNorm Transformers: Equivalent and Efficient Pre-LN Transformers"
REPORT = "docs/experiments/norms.md"
TARGETS = ("rmsnorm", "crmsnorm")
MEASURES = (("train_step", "training step (forward + backward)"), ("forward", "inference forward (no grad)"))
EXACT = 1e-4       # largest logit difference allowed, relative to the largest logit: float32 rounding, not a change
MIN_GAIN = 0.01    # the paper's smallest claimed gain (1%)


def command(s: dict) -> str:
    if s["quick"]:
        return "lmlab experiment norms --quick"
    return (f"nice lmlab experiment norms --d-model {s['d_model']} --layers {s['layers']} --batch {s['batch']} "
            f"--context {s['context']} --vocab {s['vocab']} --reps {s['reps']} --threads {s['threads']}")


STATS = ("speedup_vs_layernorm", "speedup_fastest")   # by median times, by fastest times


def noise(res: dict, measure: str) -> float:
    """How far the A/A control (two identical layernorm models) is from 1 by either statistic: this measure's noise."""
    return max(abs(res[measure]["layernorm (again)"][k] - 1) for k in STATS)


def setting(res: dict) -> str:
    s = res["settings"]
    return (f"random-init {s['layers']}-layer d_model {s['d_model']} Transformer ({res['params']['layernorm']:,} "
            f"params), batch {s['batch']} x {s['context']} tokens, fp32, {s['threads']} CPU thread(s), "
            f"median of {s['reps']} interleaved rounds")


def claims_of(res: dict) -> list[dict]:
    eq = res["equivalence"]
    exact = all(e["max_abs_logit_diff"] <= EXACT * max(1.0, e["max_abs_logit"]) and e["argmax_agree"] == 1.0
                for e in eq.values())
    s = res["settings"]
    equivalence = claim(
        PAPER, "A Pre-LN Transformer converts into a Pre-RMSNorm and a Pre-CRMSNorm Transformer that computes the same function.",
        f"random-init {s['layers']}-layer d_model {s['d_model']} Pre-LN model, norm gains drawn from [0.5, 1.5], "
        f"converted by lmlab.model.convert, logits on {res['tokens']} random tokens, fp32",
        "; ".join(f"{t}: max |logit difference| {e['max_abs_logit_diff']:.2e} (largest logit "
                  f"{e['max_abs_logit']:.2f}), argmax agrees at {e['argmax_agree']:.0%} of positions" for t, e in eq.items()),
        "holds" if exact else "does not hold at this scale",
        f"rule: holds if every difference is at most {EXACT:g} x the largest logit (float32 rounding) and every argmax agrees",
        REPORT, command(s))
    gains, losses, parts = [], [], []
    for measure, _ in MEASURES:
        bar = max(MIN_GAIN, noise(res, measure))
        for t in TARGETS:
            x = [res[measure][t][k] for k in STATS]
            gains.append(min(x) - 1 > bar)
            losses.append(1 - max(x) > bar)
            parts.append(f"{t} {measure.replace('_', ' ')} {x[0]:.3f}x ({x[1]:.3f}x)")
    parts.append("A/A control " + ", ".join(
        f"{m.replace('_', ' ')} {res[m]['layernorm (again)'][STATS[0]]:.3f}x ({res[m]['layernorm (again)'][STATS[1]]:.3f}x)"
        for m, _ in MEASURES))
    verdict = "holds" if all(gains) else "does not hold at this scale" if not any(gains) and any(losses) else "mixed"
    speed = claim(
        PAPER, "Pre-RMSNorm and Pre-CRMSNorm train and infer faster than the equivalent Pre-LN Transformer (the paper: 1-10%).",
        setting(res), "speed-up vs layernorm by median (by fastest) time: " + "; ".join(parts), verdict,
        f"rule: a speed-up counts when by both statistics it beats 1 by more than {MIN_GAIN:g} and the A/A control's "
        "distance from 1; holds if all four count, does not hold if none does and some slow-down counts by the same bar",
        REPORT, command(s))
    return [equivalence, speed]


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows]) + "\n"


def write_report(res: dict, doc: Path) -> Path:
    s, m = res["settings"], res["machine"]
    md = ["# Pre-LN vs Pre-RMSNorm vs Pre-CRMSNorm\n",
          f"Regenerate: `{command(s)}` ({res['wall_s'] / 60:.1f} minutes; `--render-only` redraws this page from "
          f"`{Path(doc).stem}-results.json`). Measured on {common.describe(m)}, torch {m['torch']}, 1-minute load "
          f"average {m['load_avg_1min']:.1f} at the start (a shared CPU: only same-run ratios mean anything). "
          "Model code: `model.norm = layernorm | rmsnorm | crmsnorm`, conversion: `lmlab convert RUN --norm ...` "
          "([architectures.md](../architectures.md)).\n",
          "## Equivalence\n",
          "A Pre-LN model with its norm gains drawn from [0.5, 1.5] (a fresh model's gains are all 1) and its "
          f"conversions, logits on {res['tokens']} random tokens:\n",
          _table(["target", "parameters (Pre-LN: " + f"{res['params_converted_from']:,})", "max abs logit difference",
                  "largest abs logit", "argmax agrees"],
                 [[t, f"{e['params']:,}", f"{e['max_abs_logit_diff']:.2e}", f"{e['max_abs_logit']:.2f}",
                   f"{e['argmax_agree']:.0%}"] for t, e in res["equivalence"].items()]),
          "## Speed\n",
          f"{setting(res)}. Every call of every model alternates within a round, so load changes hit all alike; "
          "`layernorm (again)` is a second, identical layernorm model: its distance from 1.000x is the noise. "
          "Speed-up = layernorm's time over the model's (above 1 = faster), by median and by fastest call.\n"]
    rows = []
    for key, label in MEASURES + (("converted_forward", "converted model forward (parameter-free norms) vs its Pre-LN original"),):
        for name, x in res[key].items():
            rows.append([label, name, f"{x['ms_median']:.2f}", f"{x['ms_min']:.2f}", f"{x['speedup_vs_layernorm']:.3f}x",
                         f"{x['speedup_fastest']:.3f}x"])
    md.append(_table(["measure", "norm", "median ms", "fastest ms", "speed-up (medians)", "speed-up (fastest)"], rows))
    md.append("## Verdicts\n")
    md.append(_table(["claim", "our number", "verdict", "why"],
                     [[c["claim"], c["number"], f"**{c['verdict']}**", c["why"]] for c in res["claims"]]))
    return common.write_text(doc, "\n".join(md))
