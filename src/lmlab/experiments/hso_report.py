"""docs/experiments/hso.md and the claims of hso-results.json, from what `lmlab experiment hso` measured.

Verdict rule (both claims): HSO is better on a corpus when the 95% paired-bootstrap interval of its
difference to the plain model lies entirely on the better side; the claim holds when that is so on
every corpus, does not hold at this scale when on none, and is mixed otherwise.
"""
from __future__ import annotations

from pathlib import Path

from . import common

PAPER = "Making the Most of your Model"
REPORT = "docs/experiments/hso.md"


def command(s: dict) -> str:
    if s["quick"]:
        return f"lmlab experiment hso --quick --work {s['work']}"
    return (f"lmlab experiment hso --work {s['work']} --steps {s['steps']} --hso-steps {s['hso_steps']} "
            f"--hso-lrs {s['hso_lrs']} --chunk {s['chunk']} --tune-tokens {s['tune_tokens']} "
            f"--test-tokens {s['test_tokens']} --mc-tune {s['mc_tune']} --mc-items {s['mc_items']} "
            f"--batch-size {s['batch_size']} --seed {s['seed']}")


def verdict(sides: list[str]) -> str:
    """sides: 'better', 'worse' or 'same' per corpus."""
    better = sides.count("better")
    if better == len(sides):
        return "holds"
    return "does not hold at this scale" if better == 0 else "mixed"


def side(ci: list[float], lower_is_better: bool) -> str:
    lo, hi = ci
    if (hi < 0) if lower_is_better else (lo > 0):
        return "better"
    if (lo > 0) if lower_is_better else (hi < 0):
        return "worse"
    return "same"


def setting_line(r: dict) -> str:
    m, s = r["model"], r["settings"]
    return (f"byte-level {m['n_layers']} layers x {m['d_model']}, context {m['context']}, {m['params']:,} parameters, "
            f"{s['steps']} training steps on the English novels, seed {s['seed']}; HSO setting chosen on "
            f"{s['tune_tokens']} tuning tokens / {s['mc_tune']} items per corpus")


def cost_of(r: dict, name: str) -> tuple[float, float]:
    """(FLOP ratio, wall-time ratio) of the chosen setting against the same chunking without HSO."""
    lm = r["lm"]
    t = lm["test"][name]
    return lm["flops"][lm["chosen"]]["ratio"], t["hso_seconds"] / max(t["plain_seconds"], 1e-9)


def claims(r: dict) -> list[dict]:
    lm, mc = r["lm"], r["choice"]
    lm_sides = [side(t["ci95"], True) for t in lm["test"].values()]
    flops, _ = cost_of(r, next(iter(lm["test"])))
    walls = [cost_of(r, n)[1] for n in lm["test"]]
    lm_number = "; ".join(f"{n}: {t['plain']:.4f} -> {t['hso']:.4f} bpb (95% CI of the change "
                          f"[{t['ci95'][0]:+.4f}, {t['ci95'][1]:+.4f}])" for n, t in lm["test"].items())
    mc_sides = [side(c["acc"]["ci95"], False) for c in mc.values()]
    mc_number = "; ".join(f"{n}: accuracy {c['acc']['plain']:.3f} -> {c['acc']['hso']:.3f} with {c['chosen']} "
                          f"(95% CI of the change [{c['acc']['ci95'][0]:+.3f}, {c['acc']['ci95'][1]:+.3f}], "
                          f"n={c['n']}, chance {c['chance']:.2f})" for n, c in mc.items())
    cmd = command(r["settings"])
    return [
        {"paper": PAPER,
         "claim": "Hidden-state optimisation (gradient steps on the cached past hidden states, not the weights) "
                  "improves a Transformer decoder's next-token predictions at inference time, more so out of domain.",
         "setting": setting_line(r) + f"; next chunk of {lm['chunk']} tokens after {lm['seen']} seen",
         "number": f"{lm['chosen']}: {lm_number}; cost x{flops:.1f} FLOPs, x{min(walls):.1f}-{max(walls):.1f} wall time",
         "verdict": verdict(lm_sides),
         "why": "per corpus (in domain first): " + ", ".join(f"{n} {s}" for n, s in zip(lm["test"], lm_sides)),
         "report": REPORT, "command": cmd},
        {"paper": PAPER,
         "claim": "Hidden-state optimisation improves few-shot classification by the likelihood of each label; "
                  "here: multiple-choice continuation (eval/choice.py).",
         "setting": setting_line(r) + "; 4 choices of about 24 bytes after a 72-byte passage",
         "number": mc_number,
         "verdict": verdict(mc_sides),
         "why": "per corpus: " + ", ".join(f"{n} {s}" for n, s in zip(mc, mc_sides))
                + "; a multiple-choice construction, not the paper's few-shot prompts (a model this small "
                  "does not classify from demonstrations)",
         "report": REPORT, "command": cmd},
    ]


def lm_tables(r: dict) -> str:
    lm = r["lm"]
    names = list(lm["tune"])
    keys = [k for k in lm["tune"][names[0]] if k != "plain"]
    head = "| setting | FLOPs vs plain | " + " | ".join(f"{n} bpb (change)" for n in names) + " |"
    lines = [head, "|" + "---|" * (2 + len(names))]
    lines.append("| plain (0 steps) | 1.0 | " + " | ".join(f"{lm['tune'][n]['plain']['bpb']:.4f}" for n in names) + " |")
    for k in keys:
        cells = [f"{lm['tune'][n][k]['bpb']:.4f} ({lm['tune'][n][k]['bpb'] - lm['tune'][n]['plain']['bpb']:+.4f})"
                 for n in names]
        mark = " **(chosen)**" if k == lm["chosen"] else ""
        lines.append(f"| {k}{mark} | {lm['flops'][k]['ratio']:.1f} | " + " | ".join(cells) + " |")
    test = ["| corpus | tokens (chunks) | plain bpb | HSO bpb | change, 95% CI | chunks improved | wall time vs plain |",
            "|---|---|---|---|---|---|---|"]
    for n, t in lm["test"].items():
        test.append(f"| {n} | {t['tokens']} ({t['chunks']}) | {t['plain']:.4f} | {t['hso']:.4f} | "
                    f"{t['hso'] - t['plain']:+.4f} [{t['ci95'][0]:+.4f}, {t['ci95'][1]:+.4f}] | "
                    f"{t['chunks_better']:.0%} | x{t['hso_seconds'] / max(t['plain_seconds'], 1e-9):.1f} |")
    return "\n".join(lines), "\n".join(test)


def mc_table(r: dict) -> str:
    lines = ["| corpus | chosen on tuning items | items | acc plain | acc HSO | change, 95% CI | acc_norm plain | "
             "acc_norm HSO | true-choice log-loss plain / HSO | wall time vs plain |", "|---|---|---|---|---|---|---|---|---|---|"]
    for n, c in r["choice"].items():
        a, b = c["acc"], c["acc_norm"]
        lines.append(f"| {n} | {c['chosen']} | {c['n']} | {a['plain']:.3f} | {a['hso']:.3f} | "
                     f"{a['hso'] - a['plain']:+.3f} [{a['ci95'][0]:+.3f}, {a['ci95'][1]:+.3f}] | {b['plain']:.3f} | "
                     f"{b['hso']:.3f} | {c['logloss']['plain']:.3f} / {c['logloss']['hso']:.3f} | "
                     f"x{c['hso_seconds'] / max(c['plain_seconds'], 1e-9):.1f} |")
    return "\n".join(lines)


def render(r: dict) -> str:
    s, m, lm = r["settings"], r["model"], r["lm"]
    tune, test = lm_tables(r)
    lm_claim, mc_claim = r["claims"]
    quick = ("**This page comes from `--quick`: a tiny model trained for a few steps, a handful of chunks; its "
             "numbers say nothing about the claims.**\n\n" if s["quick"] else "")
    return f"""# Hidden-state optimisation ("Making the most of your model")

{quick}The thesis proposes hidden-state optimisation (HSO): at inference, take a few gradient steps on the
cached hidden states of the text seen so far (not on the weights) to raise that text's likelihood, then
predict. lmlab's version (`lmlab generate/eval --hso STEPS --hso-lr LR`, `src/lmlab/infer/hso.py`;
definition in [docs/inference.md](../inference.md#how-each-works-here)) optimises every attention
layer's K and V of the seen positions but the last, by plain gradient descent on the mean log-loss of
the seen tokens, then runs the last seen token and the new ones through that cache.

Command: `{command(s)}`
(model: {m['n_layers']} layers x {m['d_model']}, {m['n_heads']} heads, context {m['context']} bytes,
{m['params']:,} parameters, validation bits per byte {_num(m['val_bpb'])} after {s['steps']} steps; {r['seconds'] / 60:.1f} minutes
in all on {common.describe(r['machine'])}, torch {r['machine']['torch']}, load average {r['machine']['load_avg_1min']:.1f} at the start).

## Verdicts

| claim | verdict | measured |
|---|---|---|
| next-token predictions (bits per byte) | **{lm_claim['verdict']}** | {lm_claim['number']} |
| classification by label likelihood (multiple choice) | **{mc_claim['verdict']}** | {mc_claim['number']} |

Rule (in `hso_report.py`): HSO is better on a corpus when the 95% paired-bootstrap interval of the
change lies wholly on the better side; the claim holds if so on every corpus, does not hold at this
scale if on none, mixed otherwise ({lm_claim['why']}; multiple choice: {mc_claim['why']}).

## Bits per byte of the next chunk

Each text is cut into chunks of {lm['chunk']} tokens; a chunk is predicted from a window of up to
{m['context']} tokens ending with it, i.e. after up to {lm['seen']} seen tokens. HSO optimises the cache of
those seen tokens before the chunk is scored (then starts afresh for the next chunk: the weights and
the text's earlier caches are never carried over). "Plain" is the same chunking with 0 steps. The
in-domain text is the held-out last tenth of the training novels; Shakespeare and the German UDHR
are out of domain for a model that read only the novels.

Tuning part ({s['tune_tokens']} tokens per corpus), every setting; the chosen one has the lowest mean
change over the corpora:

{tune}

Test part, the chosen setting ({lm['chosen']}), paired chunk by chunk with the plain model:

{test}

FLOPs count the matmuls of the forward passes (`model.flops_per_token`; a backward pass as two
forwards): plain = one forward pass over the {lm['seen'] + lm['chunk'] - 1}-token window; HSO = steps x 3 forward
passes over the {lm['seen'] - 1} optimised positions, then the chunk over the cache. The plain chunked
evaluation itself costs about {(lm['seen'] + lm['chunk'] - 1) / lm['chunk']:.0f}x the FLOPs of `lmlab eval`'s tiling (which predicts a whole
context per pass but gives its early tokens less to see).

## Multiple choice

Items from eval/choice.py on the same held-out text: a 72-byte passage, its true continuation of
about 24 bytes among three cut from elsewhere in the same text; a choice wins by its total
log-likelihood (`acc`) or per byte (`acc_norm`). HSO optimises the passage's cache once and scores
all four choices from it. The setting is chosen per corpus on {s['mc_tune']} tuning items by the
log-loss of the true choice among the four, then reported on {s['mc_items']} other items.

{mc_table(r)}

This is the classification test that fits a model of this size: the paper's few-shot prompts
(labelled demonstrations, then a label to score) need a model that classifies from demonstrations
at all, which a {m['n_layers']}-layer byte model trained for {s['steps']} steps does not.
"""


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def write_report(results: dict, doc) -> Path:
    return common.write_text(doc, render(results))
