"""docs/experiments/interpretability.md and the claims list, from the results JSON alone.

Every verdict is decided by a rule stated next to it here, from the measured numbers.
"""
from __future__ import annotations

from pathlib import Path

from . import common

PAPERS = {
    "talking": "Talking Heads",
    "dynamics": "Analyzing Transformer Dynamics as Movement through Embedding Space",
    "keys": "Correlation and Navigation in the Vocabulary Key Representation Space of Language Models",
    "sinks": "See What You Are Told: Visual Attention Sink in Large Multimodal Models",
}
REPORT = "docs/experiments/interpretability.md"


def command(s: dict) -> str:
    if s["quick"]:
        return f"lmlab experiment interpretability --quick --work {s['work']}"
    flags = ("max_minutes", "laundry_vocab", "laundry_lengths", "corpus", "text_steps", "text_layers", "laundry_data",
             "laundry_steps", "laundry_warmup_steps", "laundry_warmup_lengths", "laundry_warmup_examples",
             "laundry_warmup_batch_size", "laundry_examples", "laundry_test", "laundry_d_model", "laundry_context",
             "laundry_batch_size", "laundry_lr", "mix_chars", "d_model",
             "context", "batch_size", "eval_tokens", "icn_prompts", "icn_answers", "controls", "seed")
    from .interpretability import add_arguments

    defaults = common.argparse_defaults(add_arguments)
    given = [f"--{k.replace('_', '-')} {s[k]}" for k in ("work",) + flags  # older results lack the newer flags
             if k in s and s[k] != defaults.get(k)]
    return " ".join(["lmlab experiment interpretability"] + given)


def _verdict(holds: bool, mixed: bool = False) -> str:
    return "holds" if holds else "mixed" if mixed else "does not hold at this scale"


def _steps(r: dict, run: str, planned: int) -> str:
    """'N steps' as reached (a wall-clock budget may stop a run early)."""
    reached = r.get(run, {}).get("steps") or planned
    return f"{reached} steps" + (f" (of {planned} planned, stopped by --max-minutes)" if reached < planned else "")


def _laundry_data(s: dict) -> str:
    """What the Laundry List model was trained on, in one line (results before --laundry-data: mix)."""
    if s.get("laundry_data", "mix") == "mix":
        return f"{s['corpus']} text mixed with {s['laundry_examples']} Laundry List examples (LM loss on all tokens)"
    return (f"{_warmup(s)}{s['laundry_examples']} Laundry List examples{_lengths(s)} alone, "
            f"the loss on the answers only, batch {s['laundry_batch_size']}, lr {s['laundry_lr']:g}")


def _lengths(s: dict) -> str:
    return f" of lengths {s['laundry_lengths']}" if s.get("laundry_lengths") else ""  # older results lack it


def _warmup(s: dict) -> str:
    """The short-list warm-up before the task run, in words ('' without one; results before it had none)."""
    if not s.get("laundry_warmup_steps"):
        return ""
    return (f"after a warm-up of {s['laundry_warmup_steps']} steps (batch {s['laundry_warmup_batch_size']}) on "
            f"{s['laundry_warmup_examples']} examples of lengths {s['laundry_warmup_lengths']} only; ")


def _laundry_model(s: dict) -> str:
    """The page's paragraph on what the Laundry List model saw."""
    if s.get("laundry_data", "mix") == "mix":
        return (f"on the training part of {s['corpus']} *mixed* with {s['laundry_examples']} Laundry List examples "
                f"(one example line after every {s['mix_chars']} characters of text; the loss on every token, so "
                "the model is a text model that has also seen the task)")
    warm = (f", after a warm-up of {s['laundry_warmup_steps']} steps on short lists only (lengths "
            f"{s['laundry_warmup_lengths']}, {s['laundry_warmup_examples']} examples, batch "
            f"{s['laundry_warmup_batch_size']}), whose weights the task run continues from (a curriculum, through "
            "`lmlab finetune`'s machinery)" if s.get("laundry_warmup_steps") else "")
    return (f"on {s['laundry_examples']} Laundry List examples{_lengths(s)} alone "
            f"(`--laundry-data task`: each training window starts at an example, the loss falls on the answers "
            f"only; batch {s['laundry_batch_size']}, lr {s['laundry_lr']:g}){warm}. Earlier runs without the "
            "warm-up did not learn the task: mixed into text with the loss on every token (`--laundry-data mix`), "
            "or on all lengths from the start (1500 steps: test accuracy 0.35 at 2 items, below naming a random "
            "item)")


def _laundry_claims(r: dict, s: dict) -> list[dict]:
    L = r["laundry"]
    rows = L["test"]["by_length"]
    short, long_ = rows[0], rows[-1]
    drop = short["accuracy"] - long_["accuracy"]
    separated = long_["ci95"][1] < short["ci95"][0]            # the 95% intervals do not overlap
    above_guess = short["accuracy"] > 1 / short["length"] + 0.05   # better than naming a random list item
    ch = L["channel"]
    gain, control = L["gain"], L["control_gain"] or 0.0
    rel = f"{gain / L['test']['accuracy']:+.0%} relative" if L["test"]["accuracy"] else "no relative change from 0"
    setting = (f"2 layers x 4 heads, d {s['laundry_d_model']}, context {s['laundry_context']}, {_steps(r, 'laundry_run', s['laundry_steps'])}, "
               f"seed {s['seed']}, char tokens; {_laundry_data(s)}")
    return [
        dict(paper=PAPERS["talking"], claim="Laundry List recall accuracy falls as the list grows.",
             setting=setting,
             number=f"test accuracy {short['accuracy']:.3f} at {short['length']} items, {long_['accuracy']:.3f} at "
                    f"{long_['length']} items (n = {short['n']}, {long_['n']}; naming a random list item: "
                    f"{1 / short['length']:.2f}, {1 / long_['length']:.2f})",
             verdict=_verdict(drop > 0.1 and separated, drop > 0) if above_guess else "not measurable here",
             why="rule: not measurable unless the short lists beat naming a random list item by 5 points (the task "
                 "is learned); then holds if the drop exceeds 10 points with non-overlapping Wilson 95% intervals, "
                 "mixed if it only falls"),
        dict(paper=PAPERS["talking"],
             claim="A low-rank channel: one SVD component of an earlier head's OV carries most of its composition with the mover head.",
             setting=setting,
             number=f"{L['writer']} -> {L['mover']} ({ch['mode']}-composition): component {ch['component']} carries "
                    f"{ch['share']:.0%} of it (score {ch['score']:.3f})",
             # the mover is the head that reads the answer: in a model that has not learned the task it is no mover
             verdict=_verdict(ch["share"] >= 0.5, ch["share"] >= 0.25) if above_guess else "not measurable here",
             why="rule: not measurable unless the task is learned (as above), since the mover head is found by the "
                 "task; then holds if the top component carries at least half the squared composition, mixed from "
                 "a quarter"),
        dict(paper=PAPERS["talking"],
             claim="Scaling that channel in the residual stream improves Laundry List accuracy by over 20%.",
             setting=setting + f"; scale chosen on validation, {L['controls']} random-direction controls",
             number=f"test accuracy {L['test']['accuracy']:.3f} -> {L['test_at_chosen']:.3f} at scale "
                    f"{L['chosen_scale']:g} ({gain:+.3f}, {rel}); control {control:+.3f}",
             verdict=_verdict(gain >= 0.20 and gain > control, gain > control + 0.02 and gain > 0)
             if above_guess else "not measurable here",
             why="rule: not measurable unless the task is learned (as above); then holds if the gain is at least "
                 "20 points and beats the control, mixed if it beats it by 2 points"),
    ]


def _text_setting(s: dict) -> str:
    return (f"{s['text_layers']} layers x 4 heads, d {s['d_model']}, context {s['context']}, "
            f"{_steps(s['_results'], 'text_run', s['text_steps'])}, seed {s['seed']}, "
            f"char tokens, {s['corpus']} (held-out last 10%, {s['eval_tokens']} tokens)")


def _dynamics_claims(r: dict, s: dict) -> list[dict]:
    t = r["trajectory"]
    nxt, here = t["cos_to_next_token"], t["cos_to_input_token"]
    towards, away = nxt[-1] > nxt[0], here[-1] < here[0]
    return [dict(paper=PAPERS["dynamics"],
                 claim="The blocks move each position's state through embedding space away from its own token's "
                       "vector and towards the vector of the token that comes next.",
                 setting=_text_setting(s) + "; one held-out window, tied embeddings",
                 number=f"cosine to the next token {nxt[0]:.3f} (embeddings) -> {nxt[-1]:.3f} (last state); "
                        f"to the own token {here[0]:.3f} -> {here[-1]:.3f}",
                 verdict=_verdict(towards and away, towards or away),
                 why="rule: holds if the last state is nearer the next token and farther from its own than the embedding; mixed if one")]


def _keys_claims(r: dict, s: dict) -> list[dict]:
    k = r["keys"]["key_space"]
    diff = k["middle_cos"] - k["middle_cos_shuffled"]
    share = k["correct_rank_share"]
    out = [
        dict(paper=PAPERS["keys"],
             claim="Middle-ranked tokens are biased towards keys similar to the top-ranked one.",
             setting=_text_setting(s),
             number=f"mean cosine to the top-1 key over ranks {k['middle_ranks'][0]}-{k['middle_ranks'][1] - 1}: "
                    f"{k['middle_cos']:.3f}, shuffled vocabulary {k['middle_cos_shuffled']:.3f}",
             verdict=_verdict(diff > 0.05, diff > 0),
             why="rule: holds if the middle ranks' cosine exceeds the shuffled control by 0.05, mixed if by less"),
        dict(paper=PAPERS["keys"],
             claim="The few top-ranked tokens are typically right; the correct token seldom sits in the middle ranks.",
             setting=_text_setting(s),
             number=f"correct next token at ranks < {k['top']}: {share['top']:.1%}, middle: {share['middle']:.1%}, "
                    f"tail: {share['tail']:.1%}",
             verdict=_verdict(share["top"] > 0.5 and share["middle"] < share["top"], share["middle"] < share["top"]),
             why="rule: holds if most correct tokens are in the top ranks and fewer in the middle; mixed if only the latter"),
    ]
    icn = r["keys"].get("icn") or {}
    if icn.get("pairs"):
        moved = icn["mean_after_rel"] < icn["mean_before_rel"]
        out.append(dict(
            paper=PAPERS["keys"],
            claim="In-context navigation (explored answers in the context) moves the query away from the explored keys.",
            setting=_text_setting(s) + f"; {icn['prompts']} prompts cut from the held-out text, {icn['answers_per_prompt']} answers each",
            number=f"query . explored key relative to the mean key: {icn['mean_before_rel']:.2f} before, "
                   f"{icn['mean_after_rel']:.2f} after; lower after in {icn['share_moved_away']:.0%} of {icn['pairs']} pairs",
            verdict=_verdict(moved and icn["share_moved_away"] > 0.5, moved or icn["share_moved_away"] > 0.5),
            why="rule: holds if the mean relative dot product falls and falls in most pairs; mixed if one of the two"))
    return out


def _sinks_claims(r: dict, s: dict) -> list[dict]:
    sk = r["sinks"]
    heads = sk["attention"]["heads"]
    best = max(heads, key=lambda h: h["sink_share"])
    n_sink = sum(h["sink_share"] >= 0.5 for h in heads)
    dims = [(st["name"], d) for st in sk["massive_activations"]["states"] for d in st["dims"]]
    at_zero = [x for x in dims if any(c["position"] == 0 for c in x[1]["carriers"])]
    red = sk["redistribution"]
    out = [
        dict(paper=PAPERS["sinks"], claim="Some heads put most of their attention on the first token (an attention sink).",
             setting=_text_setting(s), number=f"{n_sink} of {len(heads)} heads give position 0 at least half their "
                                              f"attention; the most, {best['head']}, {best['sink_share']:.2f}",
             verdict=_verdict(n_sink > 0, best["sink_share"] >= 0.25),
             why="rule: holds if a head gives position 0 at least half its attention; mixed from a quarter"),
        dict(paper=PAPERS["sinks"],
             claim="Sinks come with massive activations: a few residual dimensions over 100x the median, carried by the sink token.",
             setting=_text_setting(s),
             number=f"{len(dims)} (state, dimension) pairs over 100x the median, {len(at_zero)} carried by position 0"
                    + (f"; largest {max(d['ratio_to_median'] for _, d in dims):.0f}x" if dims else ""),
             verdict=_verdict(bool(at_zero), bool(dims)),
             why="rule: holds if such a dimension exists at position 0; mixed if only at other positions"),
    ]
    if "bpb_redistributed" in red:
        d, c = red["delta_redistributed"], red["delta_sink_value_removed"]
        out.append(dict(
            paper=PAPERS["sinks"],
            claim="The sink's attention is surplus: spreading it over the other tokens (VAR) costs nothing or helps.",
            setting=_text_setting(s) + f"; sink heads: share >= {red['threshold']}",
            number=f"bits per byte {red['bpb_before']:.4f} -> {red['bpb_redistributed']:.4f} redistributed ({d:+.4f}); "
                   f"control, sink value removed only: {c:+.4f}",
            verdict=_verdict(d <= 0, d <= 0.02),
            why="rule: holds if bpb does not rise; mixed if it rises by at most 0.02"))
    else:
        out.append(dict(paper=PAPERS["sinks"],
                        claim="The sink's attention is surplus: spreading it over the other tokens (VAR) costs nothing or helps.",
                        setting=_text_setting(s), number="no sink head", verdict="not measurable here",
                        why=red.get("skipped", "no head met the sink threshold")))
    return out


def claims(results: dict, doc) -> list[dict]:
    s = dict(results["settings"], _results=results)
    out = (_laundry_claims(results, s) + _dynamics_claims(results, s) + _keys_claims(results, s)
           + _sinks_claims(results, s))
    report = Path(doc).as_posix() if Path(doc).as_posix().endswith(REPORT) else REPORT
    for c in out:
        c.update(report=report, command=command(s))
    return out


def _figures(results: dict, what: str) -> str:
    return "\n".join(f"![{what}]({p})" for p in results["figures"].get(what, []))


def markdown(results: dict) -> str:
    s, m = dict(results["settings"], _results=results), results["machine"]
    rows = "\n".join(f"| {c['paper'].split(':')[0]} | {c['claim']} | {c['number']} | **{c['verdict']}** |"
                     for c in results["claims"])
    L = results["laundry"]
    by_len = " · ".join(f"{r['length']}: {r['accuracy']:.2f}" for r in L["test"]["by_length"])
    by_len_after = " · ".join(f"{r['length']}: {r['accuracy']:.2f}" for r in L["test_by_length_at_chosen"] or [])
    twenty = next(c for c in results["claims"] if "over 20%" in c["claim"])
    appears = {"holds": "appears here", "not measurable here": "is not measurable here"}.get(
        twenty["verdict"], "does not appear here")
    sweep = ", ".join(f"{r['scale']:g}: {r['test']:.3f} / "
                      + (f"{r['control_test_mean']:.3f}" if r["control_test_mean"] is not None else "-")
                      for r in L["sweep"])
    short = L["test"]["by_length"][0]
    unlearned = (f"**The task was not learned**: {short['length']}-item lists are answered {short['accuracy']:.2f} "
                 f"of the time, below the {1 / short['length']:.2f} of naming a random list item, so the heads and "
                 "the intervention below describe a model that does not solve it.\n\n"
                 if short["accuracy"] <= 1 / short["length"] + 0.05 else "")
    quick = "**A --quick smoke run: tiny models, a few steps; the numbers say nothing about the claims.**\n\n" \
        if s["quick"] else ""
    k = results["keys"]["key_space"]
    bins = ", ".join(f"{lo}-{hi - 1}: {a:.3f} / {b:.3f}" for (lo, hi), a, b in
                     zip(k["bins"], k["cos_to_top1"], k["cos_to_top1_shuffled"]))
    return f"""# Interpretability: four papers' claims on models trained here

{quick}Regenerate: `{command(s)}` (runs and raw analyses land in `{s['work']}`; finished runs are
reused; `--render-only` rewrites this page from `interpretability-results.json`).
{common.timing_note(results)}Measured on {common.describe(m)}, torch {m['torch']}.

| paper | claim | measured | verdict |
|---|---|---|---|
{rows}

Verdict rules are stated in each claim's `why` in `interpretability-results.json` (decided in
`interpretability_report.py` from the numbers).

## Models
- **Text model**: {_text_setting(s)}; {results['text_run']['params']:,} parameters, validation bits per
  byte {results['text_run']['val_bpb']:.3f}.
- **Laundry List model**: two blocks of 4 heads, width {s['laundry_d_model']}, context {s['laundry_context']}, {results['laundry_run']['params']:,}
  parameters, {_steps(results, 'laundry_run', s['laundry_steps'])} {_laundry_model(s)}. A Laundry
  List example (`lmlab task make laundry`) lists distinct items, then names all but one again; the
  answer is the one left: `d b f a . b a f ? d`.

## Talking Heads and the Laundry List
{unlearned}Test accuracy by list length, plain model: {by_len}. With the channel scaled by
{L['chosen_scale']:g} (chosen on the validation split): {by_len_after}.

The mover head is {L['mover']} (the head whose attention from the `?` goes most to the answer item);
the inhibition head is {L['writer']}, whose OV component {L['channel']['component']} has the largest
{L['channel']['mode']}-composition score with it. Scaling that component (a weight edit of the
writer's W_O along it, every position) moves test accuracy by {L['gain']:+.3f}; the same scale on
{L['controls']} random directions in the writer's write space moves it by {(L['control_gain'] or 0):+.3f}.
Test accuracy by scale (channel / mean of the controls): {sweep}.
**The paper's "over 20%" improvement {appears}: {twenty['verdict']}** ({twenty['number']}).

{_figures(results, 'laundry')}

## Transformer dynamics as movement through embedding space
The path of one held-out window's states through the 2-D PCA of all states (numbered by blocks
passed), and the cosine of each state to the token embeddings (tied input/output vectors):

{_figures(results, 'trajectory')}

Logit lens over the held-out text (each state decoded through the final norm and the unembedding):

{_figures(results, 'lens')}

## The vocabulary key space
Cosine of the key at each rank to the top-1 key (model / shuffled vocabulary, by rank bin): {bins}.

{_figures(results, 'keys')}

## Attention sinks and massive activations
Share of attention each head gives to position 0 (each window's first token):

{_figures(results, 'sinks')}

The redistribution experiment spreads the sink heads' attention to position 0 over the other
visible tokens (renormalised); its control only removes the sink token's value contribution.

## Limits
Character-level models of a few hundred thousand parameters trained for minutes on two CPU cores:
the papers measured pretrained models of 10^8-10^10 parameters. A claim that does not hold here is
a statement about this scale, not about the papers' models.
"""


def write_report(results: dict, doc) -> Path:
    return common.write_text(doc, markdown(results))
