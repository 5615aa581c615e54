"""Tables, plots and claims for `lmlab experiment architectures`, from the OUT/results.json it wrote.

Runs are grouped by (variant, width) over seeds: mean and sample standard deviation. A difference
counts only beyond twice its standard error over seeds (NOISE_SE); a one-seed row borrows the std
pooled over rows with two or more seeds, and with no such row a claim is "not measurable here".
Rows this run did not train but the previous page had are carried (measured["carried"]), marked
with CARRIED on the page, and count in the claims like the others.
"""
from __future__ import annotations

import math
import shlex
import statistics
from pathlib import Path

from . import common
from .architectures import DOCS_JSON, FIRST_SEED, PROMPT, SAMPLE_TEMPERATURE, SCALING, VARIANTS, kept

NOISE_SE = 2.0
REPORT = "docs/experiments/architectures.md"
PAPERS = {"ffn": "Building on Efficient Foundations: Effectively Training LLMs with Structured Feedforward Layers",
          "hybrid": "Hunyuan-TurboS: Advancing Large Language Models through Mamba-Transformer Synergy and "
                    "Adaptive Chain-of-Thought",
          "lmu": "LMUFormer: Low Complexity Yet Powerful Spiking Model With Legendre Memory Units",
          "meta": "Language Modeling with Learned Meta-Tokens"}
STRUCTURED = [n for n in SCALING if n != "dense"]
CARRIED = "†"  # marks a row carried from an earlier run


def command(s: dict) -> str:
    """The command line that measured these results (its settings as recorded)."""
    parts = ["lmlab", "experiment", "architectures"]
    if s.get("quick"):
        parts += ["--quick"]
    else:
        parts += ["--steps", str(s["steps"]), "--seeds", str(s["seeds"]), "--width", str(s["width"]),
                  "--scale-widths", s["scale_widths"]]
    parts += ["--threads", str(s["threads"])]
    if s["variants"]:
        parts += ["--variants", s["variants"]]
    for o in s["overrides"]:
        parts += ["--set", o]
    if s["out"] != "runs/architectures":
        parts += ["--out", s["out"]]
    if s["docs"] != "docs/experiments":
        parts += ["--docs", s["docs"]]
    return " ".join(shlex.quote(p) for p in parts)


# --- aggregation ------------------------------------------------------------------------------
def groups(results: list[dict]) -> dict:
    """(name, width) -> mean and spread over the seeds that finished."""
    by: dict = {}
    for r in results:
        by.setdefault((r["name"], r["width"]), []).append(r)
    out = {}
    for key, rs in by.items():
        bpb = [r["val_bpb"] for r in rs]
        out[key] = {"n": len(rs), "seeds": [r["seed"] for r in rs], "bpb": statistics.fmean(bpb),
                    "std": statistics.stdev(bpb) if len(bpb) > 1 else None,
                    **{k: statistics.fmean(r[k] for r in rs) for k in
                       ("train_flops_per_token", "train_flops", "train_tok_per_s", "gen_tok_per_s", "rep3_greedy",
                        "rep3_sampled", "wall_s")},
                    "params": rs[0]["params"], "params_nonembed": rs[0]["params_nonembed"],
                    "first": min(rs, key=lambda r: r["seed"])}
    return out


def with_carried(results: list[dict], carried: dict) -> dict:
    """This run's groups plus the carried ones: rebuilt from their per-run records where those were
    kept, else the aggregate as the earlier page wrote it (no samples or curves then)."""
    g = groups(results)
    rebuilt = groups(carried.get("runs", []))
    for gr in carried.get("groups", []):
        key = (gr["name"], gr["width"])
        g[key] = dict(rebuilt[key], carried=gr["carried"]) if key in rebuilt else \
            {k: v for k, v in gr.items() if k not in ("name", "width")}
    return g


def pooled_std(g: dict) -> float | None:
    """The seed std pooled over every group with two or more seeds: the spread assumed for one-seed rows."""
    var = [v["std"] ** 2 for v in g.values() if v["std"] is not None]
    return math.sqrt(statistics.fmean(var)) if var else None


def difference(a: dict, b: dict, pooled: float | None) -> tuple[float, float | None]:
    """(mean a - mean b, its standard error over seeds; a one-seed side takes the pooled std, None without one)."""
    d = a["bpb"] - b["bpb"]
    sa, sb = (v["std"] if v["std"] is not None else pooled for v in (a, b))
    if sa is None or sb is None:
        return d, None
    return d, math.sqrt(sa ** 2 / a["n"] + sb ** 2 / b["n"])


def beyond_noise(d: float, se: float | None) -> int:
    """-1 lower (better) beyond noise, +1 higher beyond noise, 0 within noise."""
    return 0 if se is None or abs(d) <= NOISE_SE * se else (-1 if d < 0 else 1)


def fit(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Least squares bpb = a + b * log10(FLOPs) through (FLOPs, bpb) points; None with fewer than two."""
    if len({x for x, _ in points}) < 2:
        return None
    xs, ys = [math.log10(x) for x, _ in points], [y for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def scaling_fits(g: dict) -> dict:
    """Per SCALING variant, (intercept, slope per decade of training FLOPs) over its widths."""
    return {n: fit([(v["train_flops"], v["bpb"]) for (name, _), v in g.items() if name == n]) for n in SCALING}


# --- claims -----------------------------------------------------------------------------------
def _pm(v: dict) -> str:
    return f"{v['bpb']:.3f}" + (f" ± {v['std']:.3f}" if v["std"] is not None else " (1 seed)")


def _claim(paper, claim, setting, number, verdict, why, cmd) -> dict:
    return {"paper": PAPERS[paper], "claim": claim, "setting": setting, "number": number, "verdict": verdict,
            "why": why, "report": REPORT, "command": cmd}


def _unanimous(signs: list[int], good: int) -> str:
    if signs and all(s == good for s in signs):
        return "holds"
    if signs and all(s != good for s in signs):
        return "does not hold at this scale"
    return "mixed"


def _dense_noise(g: dict) -> float | None:
    """NOISE_SE x dense's mean seed std over its widths (else the pooled std): how far a bits/byte
    difference from dense's FLOPs curve must go to count."""
    stds = [v["std"] for (n, _), v in g.items() if n == "dense" and v["std"] is not None]
    spread = statistics.fmean(stds) if stds else pooled_std(g)
    return NOISE_SE * spread if spread is not None else None


def claims(measured: dict, g: dict, setting: str, cmd: str) -> list[dict]:
    s = measured["settings"]
    w = s["width"]
    base = g.get(("dense", w))
    fits = scaling_fits(g)
    pooled = pooled_std(g)
    out = []
    nm = "not measurable here"

    # 1. structured FFNs against dense at equal training FLOPs, read off dense's own FLOPs curve
    claim = "Structured FFNs (low-rank, block-diagonal) reach a lower loss than a dense model at equal training FLOPs."
    if fits.get("dense") is None:
        out.append(_claim("ffn", claim, setting, "dense trained at one width only", nm,
                          "equal compute needs dense at two or more widths to interpolate", cmd))
    else:
        a, b = fits["dense"]
        rows = [(n, wd, v["bpb"] - (a + b * math.log10(v["train_flops"])), v["std"])
                for (n, wd), v in g.items() if n in STRUCTURED]
        noise = _dense_noise(g)
        signs = [0 if noise is None or abs(r) <= noise else (-1 if r < 0 else 1) for _, _, r, _ in rows]
        number = "; ".join(f"{n} d{wd} {r:+.3f}" for n, wd, r, _ in rows) + " bits/byte vs dense's fit at the same FLOPs"
        verdict = nm if noise is None or not rows else _unanimous(signs, -1)
        why = ("no row with two seeds: no spread to judge against" if noise is None else
               f"rule: every structured row below dense's FLOPs fit by more than {noise:.3f} ({NOISE_SE:g} x "
               "dense's mean seed std, else the pooled one) = holds, every one not below = does not hold, else mixed")
        out.append(_claim("ffn", claim, setting, number if rows else "no structured rows", verdict, why, cmd))

    # 2. steeper scaling
    claim = "Structured FFNs scale more steeply with training FLOPs than dense (a more negative slope)."
    slopes = {n: f[1] for n, f in fits.items() if f is not None}
    noise = _dense_noise(g)
    if "dense" not in slopes or len(slopes) < 2 or noise is None:
        out.append(_claim("ffn", claim, setting, "fewer than two widths or seeds per variant", nm,
                          "a slope needs two or more widths, and its spread two or more seeds", cmd))
    else:
        span = math.log10(max(v["train_flops"] for (n, _), v in g.items() if n == "dense") /
                          min(v["train_flops"] for (n, _), v in g.items() if n == "dense"))
        number = ", ".join(f"{n} {v:+.3f}" for n, v in slopes.items()) + " bits/byte per decade of training FLOPs"
        signs = [0 if abs(slopes[n] - slopes["dense"]) * span <= noise else (-1 if slopes[n] < slopes["dense"] else 1)
                 for n in slopes if n != "dense"]
        out.append(_claim("ffn", claim, setting, number, _unanimous(signs, -1),
                          f"rule: a slope difference counts when over dense's {span:.2f} decades it moves bits/byte "
                          f"by more than {noise:.3f} ({NOISE_SE:g} x dense's mean seed std, else the pooled one); every structured slope "
                          "steeper = holds, none = does not hold, else mixed", cmd))

    # 3. self-guided training
    claim = "Self-guided training (a decaying dense guide early in training) improves structured FFNs' loss."
    pairs = [(n, g[(n, w)], g[(n + "+sgt", w)]) for n in STRUCTURED if (n, w) in g and (n + "+sgt", w) in g]
    if not pairs:
        out.append(_claim("ffn", claim, setting, "no structured variant run with and without it", nm,
                          "needs both rows of a structured kind", cmd))
    else:
        diffs = [(n, *difference(sgt, plain, pooled), sgt["train_flops"] / plain["train_flops"]) for n, plain, sgt in pairs]
        number = "; ".join(f"{n}: {d:+.3f}" + (f" ± {se:.3f} s.e." if se is not None else "") +
                           f" bits/byte at {r:.2f}x the FLOPs" for n, d, se, r in diffs)
        verdict = nm if any(se is None for _, _, se, _ in diffs) else \
            _unanimous([beyond_noise(d, se) for _, d, se, _ in diffs], -1)
        out.append(_claim("ffn", claim, setting, number, verdict,
                          "no row with two seeds: no spread" if verdict == nm else
                          f"rule: lower beyond {NOISE_SE:g} s.e. for every kind = holds, for none = does not hold",
                          cmd))

    # 4. the hybrid
    claim = "The AMF/MF Mamba-attention hybrid keeps Transformer quality while decoding more cheaply."
    hy = g.get(("hybrid (AMF MF)", w))
    cost = {(c["name"], c["position"]): c for c in measured.get("decode_cost", [])}
    if hy is None or base is None:
        out.append(_claim("hybrid", claim, setting, "hybrid or dense not run", nm, "needs both rows", cmd))
    else:
        d, se = difference(hy, base, pooled)
        late = [c for c in measured.get("decode_cost", []) if c["position"] > c["context"] // 2]
        state = {c["name"]: c["state_bytes"] for c in late}
        number = (f"bits/byte {_pm(hy)} vs dense {_pm(base)}; generation {hy['gen_tok_per_s']:.0f} vs "
                  f"{base['gen_tok_per_s']:.0f} tok/s; training {hy['train_tok_per_s']:.0f} vs "
                  f"{base['train_tok_per_s']:.0f} tok/s")
        if "hybrid (AMF MF)" in state and "dense" in state:
            number += f"; state at position {late[0]['position']}: {state['hybrid (AMF MF)']:,} vs {state['dense']:,} bytes"
        quality = beyond_noise(d, se)
        faster = hy["gen_tok_per_s"] >= base["gen_tok_per_s"]
        apart = hy.get("carried") != base.get("carried")  # speeds from two runs under different load
        if apart:
            number += f" (speeds from different runs: {hy.get('carried') or 'this run'} vs {base.get('carried') or 'this run'})"
        verdict = nm if se is None or apart else ("holds" if quality <= 0 and faster else
                                         "mixed" if quality <= 0 or faster else "does not hold at this scale")
        why = ("no row with two seeds: no spread" if se is None else
               "the two rows' speeds were measured in different runs under different machine load" if apart else
               "rule: quality not worse beyond noise and generation at least as fast = holds; one of the two = mixed"
               + ("; on this CPU at a 64-token context the M mixer's per-step work outweighs the shorter KV cache"
                  if not faster else ""))
        out.append(_claim("hybrid", claim, setting, number, verdict, why, cmd))

    # 5. LMUFormer
    claim = "An LMU model decodes recurrently at a constant per-token cost with quality comparable to a Transformer."
    lmu = g.get(("lmu (LF)", w))
    early = {c["name"]: c for c in measured.get("decode_cost", []) if c["position"] <= c["context"] // 2}
    late = {c["name"]: c for c in measured.get("decode_cost", []) if c["position"] > c["context"] // 2}
    if lmu is None or base is None or "lmu (LF)" not in late or "dense" not in late:
        out.append(_claim("lmu", claim, setting, "lmu or dense not run", nm, "needs both rows and the cost probe", cmd))
    else:
        d, se = difference(lmu, base, pooled)
        growth = {n: late[n]["flops_per_token"] / early[n]["flops_per_token"] for n in ("lmu (LF)", "dense")}
        number = (f"decode FLOPs/token position {late['dense']['position']} vs {early['dense']['position']}: "
                  f"LMU x{growth['lmu (LF)']:.2f}, dense x{growth['dense']:.2f}; state "
                  f"{late['lmu (LF)']['state_bytes']:,} vs dense {late['dense']['state_bytes']:,} bytes; bits/byte "
                  f"{_pm(lmu)} vs dense {_pm(base)}")
        constant = growth["lmu (LF)"] <= 1.0 + 1e-9 and late["lmu (LF)"]["state_bytes"] == early["lmu (LF)"]["state_bytes"]
        quality = beyond_noise(d, se)
        verdict = nm if se is None else ("holds" if constant and quality <= 0 else
                                         "mixed" if constant else "does not hold at this scale")
        why = ("no row with two seeds: no spread on quality" if se is None else
               "rule: constant cost and state, and bits/byte not worse than dense beyond noise = holds; "
               "constant cost but worse quality = mixed")
        out.append(_claim("lmu", claim, setting, number, verdict, why, cmd))

    # 6. meta-tokens
    mt = g.get(("meta-tokens", w))
    number = ("not run" if mt is None or base is None else
              f"plain-text bits/byte {_pm(mt)} vs dense {_pm(base)}")
    out.append(_claim("meta", "Meta-tokens with meta-attention improve long-range and length-generalisation tasks.",
                      setting, number, nm, "the claim is about synthetic long-context tasks after fine-tuning and "
                      "2x length generalisation; a 64-token char model on plain text cannot test it", cmd))
    return out


# --- plots ------------------------------------------------------------------------------------
def plots(g: dict, measured: dict, docs: Path) -> list[str]:
    plt = common.pyplot()
    w = measured["settings"]["width"]
    main = [(n, g[(n, w)]) for n in VARIANTS if (n, w) in g]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    ax = axes[0]
    names = [n for n, _ in main][::-1]
    ax.barh(names, [v["bpb"] for _, v in main][::-1], xerr=[v["std"] or 0 for _, v in main][::-1],
            color=["tab:gray" if n == "dense" else "tab:blue" for n in names])
    lo, hi = min(v["bpb"] for _, v in main), max(v["bpb"] for _, v in main)
    ax.set_xlim(lo - 0.1 * (hi - lo + 1e-3) - 0.05, hi + 0.05)
    ax.set_xlabel("validation bits per byte (mean ± std over seeds)")
    ax.set_title(f"d_model {w}: same data, tokens and seeds")
    ax = axes[1]
    for n in SCALING:
        pts = sorted((v["train_flops"], v["bpb"], v["std"] or 0) for (name, _), v in g.items() if name == n)
        if pts:
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", label=n,
                        color="black" if n == "dense" else None)
    ax.set_xscale("log")
    ax.set_xlabel("training matmul FLOPs")
    ax.set_ylabel("validation bits per byte")
    ax.set_title("Scaling with width")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(docs / "architectures_bpb.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for n, v in main:
        if "first" not in v:  # carried without its per-run records
            continue
        ev = v["first"]["evals"]
        ax.plot([s for s, _ in ev], [b for _, b in ev], marker=".", label=n, lw=2.2 if n == "dense" else 1.2,
                color="black" if n == "dense" else None, ls="--" if "pattern" in " ".join(VARIANTS[n].get("model", {}))
                else "-")
    ax.set_xlabel("step")
    ax.set_ylabel("validation bits per byte")
    ax.set_title(f"Validation during training (seed {FIRST_SEED}, d_model {w})")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(docs / "architectures_loss.png", dpi=110)
    plt.close(fig)
    return ["architectures_bpb.png", "architectures_loss.png"]


# --- the page ---------------------------------------------------------------------------------
def _cell(v: dict | None, fmt) -> str:
    return "not run" if v is None else fmt(v)


def _estimate(measured: dict, g: dict) -> str:
    """The default grid's expected time, from this run's mean wall time per run at each width."""
    import argparse

    from .architectures import add_arguments, planned_runs

    per_width = {}
    for (_, wd), v in g.items():
        if "carried" not in v:  # measured under another run's load
            per_width.setdefault(wd, []).append(v["wall_s"])
    if not per_width:
        return ""
    mean_all = statistics.fmean(x for xs in per_width.values() for x in xs)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    d = parser.parse_args([])  # the default command's grid
    plan = planned_runs(list(VARIANTS), d.seeds, d.width, common.numbers(d.scale_widths, int, "--scale-widths"))
    total = sum(statistics.fmean(per_width[r["width"]]) if r["width"] in per_width else mean_all * r["width"] / 64
                for r in plan)
    return (f"The default command (`nice lmlab experiment architectures`: every variant, {d.seeds} seeds, width "
            f"{d.width} and {d.scale_widths} for the scaling rows, {d.steps:,} steps) is {len(plan)} runs, about {total / 3600:.1f} hours on this "
            f"machine at the wall time per run measured here ({mean_all:.0f} s on average; widths not measured "
            "scaled linearly).")


def _mark(v: dict) -> str:
    return f" {CARRIED}" if "carried" in v else ""


def _carried_note(moved: dict, carried: dict) -> str:
    """Which rows the page carries from an earlier run, from where, and what of them was kept."""
    if not moved:
        return ""
    by: dict = {}
    for (n, wd), v in moved.items():
        by.setdefault(v["carried"], []).append(f"{n} d{wd}")
    bare = {(r["name"], r["width"]) for r in carried.get("runs", [])}
    lost = [f"{n} d{wd}" for (n, wd) in moved if (n, wd) not in bare]
    return (f"Rows marked {CARRIED} were not trained by this run: they are carried from " + "; ".join(f"{src} ({', '.join(rows)})" for src, rows in by.items())
            + ", with the same steps and settings, and count in the claims. Their speeds were measured under that "
            "run's machine load." + (f" Of {', '.join(lost)} only the per-row aggregates were kept (that page kept "
                                      "no per-run records), so those rows have no samples or loss curve here."
                                      if lost else ""))


def write_report(measured: dict) -> Path:
    """SETTINGS.docs/architectures.md, its PNGs and architectures-results.json (with `claims`)."""
    results, s = measured["results"], measured["settings"]
    docs = Path(s["docs"])
    docs.mkdir(parents=True, exist_ok=True)
    carried = measured.get("carried", {})
    g = with_carried(results, carried)
    w = s["width"]
    base = g.get(("dense", w))
    files = plots(g, measured, docs) if results else []
    su = results[0]["setup"] if results else {}
    cmd = command(s)
    setting = (f"{su.get('n_layers')} layers, d_model {w}, context {su.get('context')}, char tinyshakespeare, "
               f"{s['steps']} steps x batch {su.get('batch_size')}, up to {s['seeds']} seeds, CPU")
    claim_list = claims(measured, g, setting, "nice " + cmd)
    done, planned = len(results), len(measured.get("planned", results))
    moved = {k: v for k, v in g.items() if "carried" in v}
    lines = [
        "# Architecture variants on equal terms",
        "",
        "Generated by `lmlab experiment architectures` (src/lmlab/experiments/architectures.py and",
        "architectures_report.py); every number below was measured by that run. Regenerate with:",
        "",
        "```",
        f"nice {cmd}",
        "```",
        "",
        f"{done} of the {planned} runs this command plans finished in this run"
        + (f", and {sum(v['n'] for v in moved.values())} more are carried from an earlier one (rows marked "
           f"{CARRIED}, below)" if moved else "")
        + ((("; the rest have not been trained and show as *not run*." if s.get("reuse_only")
             else "; the rest were stopped for time and show as *not run*."))
           if done + sum(v["n"] for v in moved.values()) < planned else ".")
        + (" This page was rendered with `--reuse-only` from the runs finished in the run directory; the command"
           " above trains them all." if s.get("reuse_only") else ""),
        _carried_note(moved, carried),
        _estimate(measured, g),
        "",
        f"Setup: {su.get('tokenizer')} tokenizer on {su.get('corpus')}, {su.get('n_layers')} layers, "
        f"{su.get('n_heads')} heads, context {su.get('context')}, batch {su.get('batch_size')}, {s['steps']} steps",
        f"({results[0]['tokens']:,} training tokens per run, the same batches for every variant of one seed; seeds "
        f"{FIRST_SEED} upwards)," if results else "",
        f"AdamW with warm-up and cosine decay from lr {su.get('lr')}, float32 on one CPU thread. Validation bits per "
        f"byte on {su.get('eval_windows')} fixed",
        "held-out windows. *FLOPs* are matmul FLOPs of a training step per token, counted by",
        "`torch.utils.flop_counter` on the built model (MoE: the routed experts only; self-guided rows: the dense",
        "guide while it is on; the LMU's FFT convolution is not a matmul and is not counted). Spread is the sample",
        f"standard deviation over seeds; a row with one seed is given the std pooled over the rows with two or more; "
        f"a difference counts beyond {NOISE_SE:g} standard errors. Machine: "
        f"{common.describe(measured['machine'])}, shared with other jobs (load {measured['machine']['load_avg_1min']:.1f}"
        " at the start): speeds are indicative.",
        "",
        f"## Main grid (d_model {w})",
        "",
        "| variant | config | seeds | val bits/byte | vs dense | params (non-emb.) | train MFLOPs/token | "
        "vs dense | train tok/s | gen tok/s | rep-3 greedy | rep-3 T=0.8 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in VARIANTS:
        v = g.get((n, w))
        cfg = ", ".join(f"`{o}`" for o in common.as_settings(VARIANTS[n])) or "GELU MLP, `AF`"
        if v is None:
            why = "skipped: " + measured["skipped"][n] if n in measured.get("skipped", {}) else "not run"
            lines.append(f"| {n} | {cfg} | 0 | {why} | | | | | | | | |")
            continue
        d = f"{v['bpb'] - base['bpb']:+.3f}" if base else ""
        fl = f"{v['train_flops_per_token'] / base['train_flops_per_token']:.2f}x" if base else ""
        lines.append(f"| {n} | {cfg} | {v['n']}{_mark(v)} | {_pm(v)} | {d} | {v['params']:,} ({v['params_nonembed']:,}) | "
                     f"{v['train_flops_per_token'] / 1e6:.3f} | {fl} | {v['train_tok_per_s']:,.0f} | "
                     f"{v['gen_tok_per_s']:,.1f} | {v['rep3_greedy']:.2f} | {v['rep3_sampled']:.2f} |")
    widths = sorted({wd for (_, wd) in g} | {w})
    lines += ["", "## Scaling with width (dense and the structured FFNs)", "",
              "| variant | " + " | ".join(f"d{wd}: bits/byte @ train FLOPs" for wd in widths) + " | slope / decade |",
              "|---|" + "---:|" * (len(widths) + 1)]
    fits = scaling_fits(g)
    for n in SCALING:
        cells = [_cell(g.get((n, wd)), lambda v: f"{_pm(v)} @ {v['train_flops']:.2e}{_mark(v)}") for wd in widths]
        slope = f"{fits[n][1]:+.3f}" if fits.get(n) else "needs 2 widths"
        lines.append(f"| {n} | " + " | ".join(cells) + f" | {slope} |")
    cost = measured.get("decode_cost", [])
    if cost:
        lines += ["", f"## Decoding cost by position (untrained weights, d_model {w}, context {cost[0]['context']})", "",
                  "| pattern | position | matmul FLOPs/token | state bytes | ms/token |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {c['name']} (`{c['pattern']}`) | {c['position']} | {c['flops_per_token']:,.0f} | "
                  f"{c['state_bytes']:,} | {c['ms_per_token']:.2f} |" for c in cost]
        lines += ["", "State: the KV rows filled so far plus every recurrent state; attention's FLOPs include "
                  "4 x d_model per cached position and layer (scores and mixing)."]
    lines += ["", "## Claims", "", "| paper | claim | our number | verdict | why |", "|---|---|---|---|---|"]
    lines += [f"| {c['paper'].split(':')[0]} | {c['claim']} | {c['number']} | **{c['verdict']}** | {c['why']} |"
              for c in claim_list]
    lines.append("")
    for f in files:
        lines += [f"![{f}]({f})", ""]
    lines += ["## Samples", "",
              f"First 200 tokens after `{PROMPT!r}`, seed {FIRST_SEED} of each variant: greedy, then sampled at "
              f"T={SAMPLE_TEMPERATURE} (seed 0). rep-3 in the tables: the share of word 3-grams that repeat an earlier "
              "one (0 = none), averaged over seeds.", ""]
    for n in VARIANTS:
        v = g.get((n, w))
        if v is not None and "first" in v:
            for label, key in (("greedy", "sample"), (f"T={SAMPLE_TEMPERATURE}", "sample_t08")):
                text = v["first"][key].replace("\n", " / ").replace("`", "'").replace("|", "/")
                lines.append(f"- **{n}** ({label}): `{text}`")
    lines += ["", "Notes:", "",
              "- Parameters include embeddings (tied input/output); the structured rows have fewer FFN parameters "
              "and FLOPs than dense at the same width, so the scaling table, not the main grid, compares equal "
              "compute.",
              "- Meta-tokens: 5% of each training window becomes meta-tokens, so that variant sees 5% fewer text "
              "tokens; validation and generation run on plain text.", ""]
    common.write_json(docs / DOCS_JSON,
                      {"claims": claim_list, "settings": s, "machine": measured["machine"],
                       "runs_finished": done, "runs_planned": planned, "runs_carried": sum(v["n"] for v in moved.values()),
                       # every run's record (this run's and the carried ones kept): --reuse falls back to them
                       "runs": [kept(r) for r in results + carried.get("runs", [])],
                       "groups": [{"name": n, "width": wd, **{k: v for k, v in val.items() if k != "first"}}
                                  for (n, wd), val in g.items()],
                       "decode_cost": cost})
    return common.write_text(docs / "architectures.md", "\n".join(lines))

