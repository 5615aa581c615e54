"""docs/experiments/superbpe.md and its PNG, from the results.json `lmlab experiment superbpe` wrote.

Every number on the page is read off the results: the sweep tables, the LM table, and the
findings, which are sentences computed from the same numbers.
"""
from __future__ import annotations

import math
from pathlib import Path

from . import common


def plot(results: dict, png: Path) -> None:
    plt = common.pyplot()
    lms, sweeps = results.get("lm", []), results.get("sweeps", [])
    ncols = max(1, len(sweeps), len(lms))
    nrows = (1 if sweeps else 0) + (1 if lms else 0) or 1
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, 4.2 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for ax, sw in zip(axes[0], sweeps):
        ax.set_visible(True)
        rows = sw["rows"]
        for i, vocab in enumerate(sorted({r["vocab"] for r in rows})):
            color = f"C{i}"
            base = [r for r in rows if r["vocab"] == vocab and r["kind"] == "bpe"]
            sup = sorted((r for r in rows if r["vocab"] == vocab and r["kind"] == "superbpe"),
                         key=lambda r: r["transition"])
            ax.plot([r["transition"] / vocab for r in sup], [r["bytes_per_token"] for r in sup], "o-",
                    color=color, label=f"SuperBPE {vocab // 1024}k")
            if base:
                ax.axhline(base[0]["bytes_per_token"], color=color, ls="--",
                           label=f"BPE {vocab // 1024}k ({base[0]['vocab_reached']} ids)")
        ax.set_xlabel("transition t / vocabulary size")
        ax.set_ylabel(f"bytes per token, held-out {results.get('corpus', '')}")
        ax.set_title(f"trained on {sw['train']}", fontsize=9)
        ax.legend(fontsize=7)
    for ax, lm in zip(axes[-1], lms):
        ax.set_visible(True)
        for kind, m in lm["models"].items():
            ax.plot([c["step"] for c in m["curve"]], [c["val_bpb"] for c in m["curve"]], "o-", ms=3,
                    label=f"{kind} (ctx {m['context_tokens']} tok): held-out {m['held_out_bpb']:.3f}")
        ax.set_xlabel("training step (same bytes per step for all)")
        ax.set_ylabel("validation bits per byte")
        ep = f", {lm['epochs']:g} epochs" if lm.get("epochs") else ""
        ax.set_title(f"LMs on {lm['corpus']}{ep}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def _fmt(v, spec=".3f"):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _vocab(r: dict) -> str:
    """The compared vocabulary size, with the requested one when BPE fell short of it."""
    req = r.get("vocab_requested", r["vocab"])
    return str(r["vocab"]) if req == r["vocab"] else f"{r['vocab']} (of {req} requested)"


def findings(results: dict) -> list[str]:
    """Plain statements read off the measured numbers."""
    out = []
    for sw in results.get("sweeps", []):
        by_vocab: dict = {}
        for r in sw["rows"]:
            by_vocab.setdefault(r["vocab"], []).append(r)
        for vocab, rows in sorted(by_vocab.items()):
            base = next(r for r in rows if r["kind"] == "bpe")
            sup = [r for r in rows if r["kind"] == "superbpe"]
            if not sup:
                continue
            best = max(sup, key=lambda r: r["token_reduction"])
            requested = base.get("vocab_requested", vocab)
            short = "" if requested == vocab else (
                f" (requested {requested}: BPE ran out of pairs seen twice at {vocab} ids, so SuperBPE was trained "
                f"to the same size)")
            if any(r["vocab_reached"] != base["vocab_reached"] for r in sup):
                short += (f" (not vocabulary-matched: SuperBPE reached "
                          f"{', '.join(str(r['vocab_reached']) for r in sup)} ids, BPE {base['vocab_reached']})")
            ratios = [r["stage2_vs_hf_bpe"] for r in sup]
            out.append(f"- Trained on {sw['train']}, vocab {vocab}: SuperBPE needs {best['token_reduction']:.1%} fewer "
                       f"tokens than BPE at best (t = {best['transition']}), "
                       f"{min(r['token_reduction'] for r in sup):.1%} "
                       f"at worst{short}; stage 2 took {min(ratios):.2f}x-{max(ratios):.2f}x HF's BPE training time.")
    for lm in results.get("lm", []):
        m = lm["models"]
        ref = m["bpe"]
        for kind, r in m.items():
            if kind == "bpe":
                continue
            d_held = r["held_out_bpb"] - ref["held_out_bpb"]
            d_best = r["best_val_bpb"] - ref["best_val_bpb"]
            ep = f"{lm['epochs']:g} epochs" if lm.get("epochs") else f"{lm['steps']} steps"
            out.append(f"- LMs on {lm['corpus']}, {ep}: {kind} is {'better' if d_held < 0 else 'worse'} than BPE by "
                       f"{abs(d_held):.4f} bits/byte on held-out text and {'better' if d_best < 0 else 'worse'} by "
                       f"{abs(d_best):.4f} at the best validation point.")
    return out


def report(results: dict, png_name: str, commands: list[str], notes: list[str] = ()) -> str:
    lines = [
        "# SuperBPE vs BPE",
        "",
        "SuperBPE (Liu et al. 2025; PAPERS.md section 2) trains byte-level BPE with whitespace",
        "pre-tokenisation up to a transition vocabulary size t, then keeps merging inside whole lines",
        "(digits still split into groups of 1-3, no token crossing a newline, at most 4 words per token,",
        "no token containing \": \"). Stage 1 is HF `tokenizers`; stage 2 is lmlab's incremental trainer",
        "(`lmlab/tokenizers/superbpe_trainer.py`); both tokenizers are stock HF `tokenizer.json` files.",
        "",
        "Use them:",
        "",
        "```",
        "lmlab tokenizer train --kind superbpe --vocab 16384 --transition 8192 english-prose -o tok/superbpe16k",
        "lmlab tokenizer stats tok/superbpe16k some.txt       # bytes/token, tokens/word, vocab use, MB/s",
        "lmlab train -c demo --set tokenizer.path=tok/superbpe16k   # or tokenizer.kind=superbpe",
        "```",
        "",
        "Stock HF loads the same file: `tokenizers.Tokenizer.from_file('tok/superbpe16k/tokenizer.json')`",
        "gives the same ids (lmlab also spells text that happens to read `<|endoftext|>` as plain text,",
        "and lone surrogates as their 'surrogatepass' bytes, which HF cannot take).",
        "",
        *(["Regenerate:", "", "```", *commands, "```", ""] if commands else []),
        f"Corpus: `{results.get('corpus')}`, every document split into its first "
        f"{1 - results.get('held_out', 0.15):.0%} (training text, {results.get('train_bytes', 0):,} bytes) "
        f"and its last {results.get('held_out', 0.15):.0%} "
        f"(held-out text, {results.get('held_out_bytes', 0):,} bytes).",
        f"Sweeps measured on: {results.get('machine', '?')}; LMs trained on: {results.get('lm_machine', '?')}.",
        "",
    ]
    for sw in results.get("sweeps", []):
        rows = sw["rows"]
        lines += [f"## Bytes per token on held-out text, tokenizers trained on {sw['train']} "
                  f"({sw['train_bytes']:,} bytes)", "",
                  "| vocab | tokenizer | t | ids reached | bytes/token | fewer tokens than BPE | superword tokens | "
                  "train s (HF BPE / stage 1 + stage 2) | stage 2 / HF BPE |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            if r["kind"] == "bpe":
                lines.append(f"| {_vocab(r)} | BPE | - | {r['vocab_reached']} | {r['bytes_per_token']:.3f} | - | - | "
                             f"{r['train_seconds']:.1f} | - |")
            else:
                lines.append(
                    f"| {_vocab(r)} | SuperBPE | {r['transition']} | {r['vocab_reached']} "
                    f"| {r['bytes_per_token']:.3f} "
                    f"| {r['token_reduction']:.1%} | {r['superword_share']:.1%} | "
                    f"{r['stage1_seconds']:.1f} + {r['stage2_seconds']:.1f} | {r['stage2_vs_hf_bpe']:.2f}x |")
        best = {}
        for r in rows:
            if r["kind"] == "superbpe" and r["token_reduction"] > best.get(r["vocab"], (-1,))[0]:
                best[r["vocab"]] = (r["token_reduction"], r["transition"])
        lines += ["", "Best token reduction per vocabulary size: " + ", ".join(
            f"{v}: {b[0]:.1%} (t = {b[1]})" for v, b in sorted(best.items())) + ".", ""]
    lms = results.get("lm", [])
    if lms:
        lines += ["## LMs: BPE vs SuperBPE in bits per byte", "",
                  f"Identical models ({results.get('lm_setup', '')}); per corpus, every model reads the same "
                  "training text for the same number of steps with the same batch, contexts matched in bytes "
                  "(so the same bytes per step). Held-out bits/byte: the final model over every byte of the "
                  "held-out text. Best validation: the lowest in-training score on the validation split (the "
                  "last 5% of the training text, never trained on), i.e. early stopping. Each corpus is split like "
                  "the sweep's (training / held-out bytes: " + "; ".join(sorted({
                      f"{lm['corpus']} {lm['train_bytes']:,} / {lm['held_out_bytes']:,}" for lm in lms})) + ").", "",
                  "| corpus | epochs (steps) | tokenizer | bytes/token (train) | context tokens / bytes | bytes seen | "
                  "held-out bits/byte | best val bits/byte (step) | vs BPE (held-out / best val) | train s |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for lm in lms:
            m = lm["models"]
            ref = m["bpe"]
            ep = f"{lm['epochs']:g} ({lm['steps']})" if lm.get("epochs") else f"- ({lm['steps']})"
            for kind, r in m.items():
                vs = "-" if kind == "bpe" else (
                    f"{r['held_out_bpb'] / ref['held_out_bpb'] - 1:+.1%} / "
                    f"{r['best_val_bpb'] / ref['best_val_bpb'] - 1:+.1%}")
                lines.append(
                    f"| {lm['corpus']} | {ep} | {kind} | {r['train_bytes_per_token']:.3f} | {r['context_tokens']} / "
                    f"{r['context_bytes']:.0f} | {r['bytes_seen'] / 1e6:.1f} M | {r['held_out_bpb']:.4f} | "
                    f"{_fmt(r['best_val_bpb'], '.4f')} ({r['best_val_step']}) | {vs} | {r['train_seconds']:.0f} |")
        lines.append("")
    lines += [f"![bytes per token and LM curves]({png_name})", ""]
    found = findings(results)
    if found:
        lines += ["## Findings (read off the tables above)", "", *found, ""]
    if results.get("claims"):
        lines += ["## Verdicts", "", "| claim | our number | verdict | why |", "|---|---|---|---|",
                  *[f"| {c['claim']} | {c['number']} | **{c['verdict']}** | {c['why']} |" for c in results["claims"]], ""]
    if notes:
        lines += ["## Notes", ""] + [x for n in notes for x in (n, "")]
    return "\n".join(lines) + "\n"


def write_report(results: dict, doc, commands: list[str] = (), notes: list[str] = ()) -> Path:
    """The markdown page at `doc` and its PNG beside it (same name, .png)."""
    doc = Path(doc)
    doc.parent.mkdir(parents=True, exist_ok=True)
    png = doc.with_suffix(".png")
    plot(results, png)
    return common.write_text(doc, report(results, png.name, list(commands), list(notes)))


# --- verdicts -----------------------------------------------------------------------------------
PAPER = "SuperBPE: Space Travel for Language Models"
REPORT = "docs/experiments/superbpe.md"


def claims_of(results: dict, commands: list[str] = ()) -> list[dict]:
    """The paper's two headline claims, each decided by a stated rule on the measured numbers."""
    from .claims import claim

    command = commands[-1] if commands else "lmlab experiment superbpe --doc docs/experiments/superbpe.md"
    out = []
    sweeps = results.get("sweeps", [])
    if sweeps:
        rows = sweeps[0]["rows"]
        matched = [r for r in rows if r["kind"] == "superbpe" and r["vocab_reached"] == next(
            b["vocab_reached"] for b in rows if b["kind"] == "bpe" and b["vocab"] == r["vocab"])]
        best = {}
        for r in matched:
            if r["token_reduction"] > best.get(r["vocab"], {"token_reduction": -1})["token_reduction"]:
                best[r["vocab"]] = r
        if best:
            red = [b["token_reduction"] for b in best.values()]
            out.append(claim(
                PAPER, "At a fixed vocabulary size SuperBPE encodes text in fewer tokens than BPE (the paper: up to "
                "33% fewer at 200k ids).",
                f"tokenizers trained on {sweeps[0]['train']} ({sweeps[0]['train_bytes']:,} bytes), held-out tail "
                f"measured, vocabularies {', '.join(map(str, sorted(best)))} (both tokenizers at the same ids)",
                ", ".join(f"{v} ids: {b['token_reduction']:.1%} fewer tokens (t = {b['transition']})"
                          for v, b in sorted(best.items())),
                "holds" if min(red) > 0 else "mixed" if max(red) > 0 else "does not hold at this scale",
                "rule: fewer tokens at every vocabulary-matched size; the paper's sizes are far larger",
                REPORT, command))
    lms = results.get("lm", [])
    diffs = [(lm, kind, r["held_out_bpb"] - lm["models"]["bpe"]["held_out_bpb"])
             for lm in lms for kind, r in lm["models"].items() if kind != "bpe"]
    if diffs:
        lm0 = lms[0]
        out.append(claim(
            PAPER, "With model size, vocabulary size and training compute fixed, a SuperBPE LM beats a BPE LM (the "
            "paper: +4.0% averaged over 30 tasks at 8B parameters).",
            f"{results.get('lm_setup', '')}; {lm0['steps']} steps, contexts matched in bytes, one seed",
            "; ".join(f"{lm['corpus']} {kind}: held-out {lm['models'][kind]['held_out_bpb']:.4f} vs BPE "
                      f"{lm['models']['bpe']['held_out_bpb']:.4f} bits/byte" for lm, kind, _ in diffs),
            "holds" if all(d < 0 for *_, d in diffs) else "does not hold at this scale" if all(d > 0 for *_, d in diffs)
            else "mixed",
            "rule: lower held-out bits/byte for every SuperBPE model (does not hold: higher for every one)",
            REPORT, command))
    return out
