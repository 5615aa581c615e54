"""report.md and curves.png for `lmlab experiment frozen-glyph`, from its results.json.

The tables of docs/experiments/frozen-glyph.md are these, rendered from
docs/experiments/frozen-glyph-results.json (tests/test_experiment_reports.py checks it).
"""
from __future__ import annotations

import math
from pathlib import Path

from ..errors import LmlabError
from . import common

# seed-paired differences of validation bits/byte shown per corpus: (row, minus row)
COMPARISONS = (("glyph", "trainable"), ("binary", "glyph"), ("gaussian", "glyph"))
SAMPLE_CHARS = 150
PAGE = "docs/experiments/frozen-glyph.md"
COMMAND = f"lmlab experiment frozen-glyph --seeds 1337,1338,1339 --figures docs/experiments/img --doc {PAGE}"


def corpora(results: dict) -> dict:
    """The per-corpus entries of results.json (the other keys: fonts, settings, claims)."""
    return {k: v for k, v in results.items() if isinstance(v, dict) and "runs" in v}


def plot_curves(results: dict, path: Path) -> None:
    results = corpora(results)
    keys = [k for k in results if results[k]["runs"]]
    if not keys:
        return
    plt = common.pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for emb, r in results[key]["runs"].items():
            steps, bpb = zip(*r["curve"])
            ax.plot(steps, bpb, marker="o", markersize=3, label=f"{emb} ({r['val_bpb']:.3f})")
        ax.set_title(f"{key}: validation bits per byte")
        ax.set_xlabel("step")
        ax.set_ylabel("bits/byte")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(results: dict) -> str:
    """The headline table: one row per corpus and embedding, mean (± sd) over seeds."""
    results = corpora(results)
    lines = ["| corpus | embedding | seeds | val bits/byte | MC acc | MC acc_norm | tokens/s | trained params | frozen | minutes |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key, res in results.items():
        for emb, r in res["runs"].items():
            n = len(r["seeds"])
            pm = (lambda m, sd, f: f"{m:{f}} ± {sd:{f}}") if n > 1 else (lambda m, sd, f: f"{m:{f}}")
            mc = r["mc"]
            lines.append(f"| {key} | {emb} | {n} | {pm(r['val_bpb'], r['val_bpb_sd'], '.4f')} | "
                         f"{pm(mc['acc'], mc['acc_sd'], '.3f')} | {pm(mc['acc_norm'], mc['acc_norm_sd'], '.3f')} | "
                         f"{r['tok_per_s']:.0f} | {r['params']:,} | {r['frozen']:,} | {r['minutes']:.1f} |")
    lines.append("")
    lines.append("mean ± sample sd over the row's seeds (when more than one); \"frozen\" counts the entries of the "
                 "frozen input matrix (not trained); minutes (training and evaluation) summed over seeds.")
    for key, res in results.items():
        lines.append(f"{key}: {res['mc_items']} items, {res['mc_chance']:.2f} chance; vocabulary {res['vocab_size']:,}; "
                     f"validation {res['val_tokens']:,} tokens")
    return "\n".join(lines) + "\n"


def seed_differences(results: dict) -> str:
    """Validation bits/byte of one embedding minus another's, seed by seed ('' if no pair ran)."""
    results = corpora(results)
    rows, seeds = [], []
    for key, res in results.items():
        runs = res["runs"]
        for a, b in COMPARISONS:
            if a in runs and b in runs:
                by_seed = {r["seed"]: r["val_bpb"] for r in runs[b]["seeds"]}
                pairs = [(r["seed"], r["val_bpb"] - by_seed[r["seed"]]) for r in runs[a]["seeds"] if r["seed"] in by_seed]
                seeds += [s for s, _ in pairs if s not in seeds]
                rows.append((key, f"{a} − {b}", dict(pairs)))
    if not rows:
        return ""
    lines = ["Differences per seed (seed-paired, validation bits/byte):", "",
             "| corpus | comparison | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "|---|---|" + "---|" * len(seeds)]
    for key, label, diffs in rows:
        cells = [f"{diffs[s]:+.4f}" if s in diffs else "-" for s in seeds]
        lines.append(f"| {key} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _one_line(text: str) -> str:
    return text.replace("\n", "⏎")


def samples(results: dict) -> str:
    """Each model's sample from its first seed, one table per corpus."""
    results = corpora(results)
    keys = [k for k in results if results[k]["runs"]]
    if not keys:
        return ""
    first = next(iter(results[keys[0]]["runs"].values()))["seeds"][0]
    lines = [f"A sample from each model (seed {first['seed']}, temperature 0.8, prompt from the held-out English "
             "text):", ""]
    for key in keys:
        runs = results[key]["runs"]
        prompt = next(iter(runs.values()))["seeds"][0]["sample"]["prompt"]
        lines += [f"{key} models, prompt `{_one_line(prompt)}`:", "",
                  f"| embedding | continuation (first {SAMPLE_CHARS} characters, ⏎ = newline) |", "|---|---|"]
        lines += [f"| {emb} | {_one_line(r['seeds'][0]['sample']['text'][:SAMPLE_CHARS])} |" for emb, r in runs.items()]
        lines.append("")
    return "\n".join(lines)


def fonts(results: dict) -> str:
    """Which experiment the numbers belong to: the font chain, renderer and coverage each corpus ran with."""
    lines = []
    f = results.get("fonts")
    if f:
        lines.append(f"Font chain: {', '.join(f['chain']) or 'none'} (GNU Unifont "
                     f"{'in it' if f['unifont'] else 'absent: most non-Latin scripts are hex boxes'}); renderer "
                     f"{f['renderer']}.")
    for key, res in corpora(results).items():
        cov = res.get("glyphs", {}).get("coverage")
        if not cov:
            continue
        drawn = ", ".join(f"{name} {n:,}" for name, n in cov["chars_by_font"].items())
        lines.append(f"{key}: {cov['tokens']:,} tokens drawn with {', '.join(cov['fonts'])}, renderer "
                     f"{cov.get('renderer', 'not recorded (before glyph-v3, whose byte boxes are all distinct)')}; "
                     f"characters per font: {drawn}; {cov['tokens_with_fallback']:,} tokens use the hex-box fallback; "
                     f"{cov['duplicate_rows']:,} duplicate rows.")
    return "\n".join(lines) + "\n" if lines else ""


def provenance(results: dict) -> str:
    """What the numbers were measured on and how long they took, from the results' own record."""
    m = results.get("machine")
    if not m:
        return ("These results do not record the machine, PyTorch version or wall time they were measured with "
                "(they predate recording them).\n")
    gpu = m.get("device") == "cuda" and m.get("cuda")
    where = gpu or f"the CPU ({m.get('cpu_model') or m['cpu']}, {m['cpus']} cores)"
    threads = results.get("settings", {}).get("threads") or m["cpu_threads"]
    line = f"Measured by `{results['command']}` on {where} with PyTorch {m['torch']}"
    line += "" if gpu else f", {threads} torch thread(s)"
    t = results.get("timing")
    if t:
        line += (f"; its {t['runs_done']} training runs with their evaluation took {t['wall_s'] / 60:.1f} minutes of "
                 f"wall time (1-minute load average {t['load_1min_start']:.2f} at the start, {t['load_1min_end']:.2f} "
                 "at the end; the machine is shared)")
    line += (". Tokens/s are that machine's" + (": these tiny models are bound by kernel launches there, so they do "
                                                 "not rank the embeddings." if gpu else "."))
    return line + "\n"


def stale(results: dict) -> str:
    """Why the numbers may not be what the current renderer gives ('' when they are current)."""
    from ..embeddings.render import RENDERER_VERSION

    used = {res.get("glyphs", {}).get("coverage", {}).get("renderer") for res in corpora(results).values()
            if res.get("glyphs")} or {results.get("fonts", {}).get("renderer")}
    if used == {RENDERER_VERSION}:
        return ""
    return (f"Stale: these runs used a renderer older than {RENDERER_VERSION} (or did not record it); "
            f"{RENDERER_VERSION} changed the pictures of the byte-fallback tokens, so the glyph rows would differ "
            "slightly if re-run.\n")


def claims_of(results: dict) -> list[dict]:
    """The paper's claims, decided from the seed-paired differences by a stated rule."""
    from .claims import claim

    paper = "Emergent Semantics Beyond Token Embeddings: Transformer LMs with Frozen Visual Unicode Representations"
    cs = corpora(results)
    st = results.get("settings", {})
    first = next((r for res in cs.values() for r in res["runs"].values()), None)
    if not first:
        return []
    n = len(first["seeds"])
    note = stale(results)
    setting = (f"{st.get('layers', 4)}-layer d_model {st.get('d_model', 128)} models, {st.get('steps', 600)} steps, "
               f"{n} seed(s), unicode tokenizer, english-prose and multilingual corpora"
               + ("; stale renderer (see report)" if note else ""))
    command = COMMAND
    report = PAGE

    def paired(key, a, b, field=None):
        runs = cs[key]["runs"]
        get = (lambda r: r["val_bpb"]) if field is None else (lambda r: r["mc"][field])
        other = {r["seed"]: get(r) for r in runs[b]["seeds"]}
        return [get(r) - other[r["seed"]] for r in runs[a]["seeds"] if r["seed"] in other]

    out = []
    keys = [k for k in cs if {"glyph", "trainable"} <= set(cs[k]["runs"])]
    if keys:
        d = {k: paired(k, "glyph", "trainable") for k in keys}
        beats = all(x < 0 for k in keys for x in d[k])
        loses = all(sum(d[k]) > 0 for k in keys)
        out.append(claim(paper, "Frozen glyph embeddings give a better LM than trainable ones in the same model.", setting,
                         "; ".join(f"{k}: glyph − trainable {min(d[k]):+.4f} to {max(d[k]):+.4f} bits/byte per seed"
                                   for k in keys),
                         "holds" if beats else "does not hold at this scale" if loses else "mixed",
                         "rule: glyph lower in every seed and corpus holds; higher on average in every corpus does "
                         "not", report, command))
        mc = {k: paired(k, "glyph", "trainable", "acc") for k in keys}
        se = max(math.sqrt(0.25 * 0.75 / cs[k]["mc_items"]) for k in keys)
        out.append(claim(paper, "Frozen glyph models score higher on a multiple-choice benchmark (the paper: MMLU) than "
                         "trainable-embedding models.", setting + f"; log-likelihood multiple choice, "
                         f"{cs[keys[0]]['mc_items']} held-out items per corpus",
                         "; ".join(f"{k}: glyph − trainable MC acc {sum(mc[k]) / len(mc[k]):+.3f} mean over seeds"
                                   for k in keys),
                         "holds" if all(sum(mc[k]) / len(mc[k]) > 2 * se for k in keys)
                         else "does not hold at this scale" if all(abs(sum(mc[k]) / len(mc[k])) <= 2 * se or
                                                                     sum(mc[k]) < 0 for k in keys) else "mixed",
                         f"rule: a gain above 2 standard errors of one accuracy ({2 * se:.3f}) in every corpus holds",
                         report, command))
    keys = [k for k in cs if {"glyph", "binary", "gaussian"} <= set(cs[k]["runs"])]
    if keys:
        d = {k: paired(k, "binary", "glyph") + paired(k, "gaussian", "glyph") for k in keys}
        out.append(claim(paper, "The glyph pictures carry information: frozen glyph embeddings beat content-free frozen "
                         "codes (binary, Gaussian).", setting,
                         "; ".join(f"{k}: control − glyph {min(d[k]):+.4f} to {max(d[k]):+.4f} bits/byte" for k in keys),
                         "holds" if all(x > 0 for k in keys for x in d[k]) else
                         "does not hold at this scale" if all(x < 0 for k in keys for x in d[k]) else "mixed",
                         "rule: every control worse than glyph in every seed and corpus holds (a control the paper "
                         "implies rather than runs)", report, command))
    return out


def report(results: dict) -> str:
    return "\n".join(part for part in (provenance(results), stale(results), markdown(results),
                                        seed_differences(results), fonts(results), verdicts(results),
                                        samples(results)) if part)


def page_parts(results: dict) -> dict:
    """The generated sections of the page (its marked regions); the method and conclusion around them are prose."""
    join = lambda *parts: "\n".join(p for p in parts if p)  # noqa: E731
    return {"results": join(provenance(results), stale(results), markdown(results), fonts(results)),
            "details": join(seed_differences(results), samples(results)), "verdicts": verdicts(results)}


def check_page(doc) -> Path:
    """`doc` as a page write_page can fill (it exists and has each marked region once), before any run."""
    doc = Path(doc)
    if not doc.is_file():
        raise LmlabError(f"{doc}: no such page (--doc fills the marked sections of an existing page)")
    try:
        text = doc.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise LmlabError(f"{doc}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    common.fill_regions(text, "frozen-glyph", dict.fromkeys(("results", "details", "verdicts"), ""), doc)
    return doc


def write_page(results: dict, doc) -> Path:
    """Fill the marked regions of `doc` from the results, and write the results beside it (NAME-results.json)."""
    doc = check_page(doc)
    common.write_json(doc.with_name(doc.stem + "-results.json"), results)
    return common.write_text(doc, common.fill_regions(doc.read_text(encoding="utf-8"), "frozen-glyph",
                                                      page_parts(results), doc))


def write_report(results: dict, out: Path) -> None:
    """OUT/curves.png and OUT/report.md."""
    plot_curves(results, out / "curves.png")
    common.write_text(out / "report.md", report(results))


def verdicts(results: dict) -> str:
    """The claims list as a table (what docs/experiments/README.md gathers from every experiment)."""
    lines = ["| claim | our number | verdict | why |", "|---|---|---|---|"]
    lines += [f"| {c['claim']} | {c['number']} | **{c['verdict']}** | {c['why']} |" for c in results.get("claims", [])]
    return "\n".join(lines) + "\n" if results.get("claims") else ""
