"""SuperBPE vs BPE (PAPERS.md section 2): tokens per byte, then two LMs compared in bits per byte.

1. Sweep: on a corpus split into a training part and a held-out part (the tail of every document),
   train byte-level BPE and SuperBPE at each vocabulary size and transition point t, and measure
   bytes per token on the held-out part (plus the stage-2 training time next to HF's BPE time).
2. LMs: two identical small Transformers, one per tokenizer (same vocabulary size), trained on the
   same training text for the same steps and batch, with contexts matched in bytes (the SuperBPE
   model's context in tokens is scaled by the ratio of bytes per token), then scored on the
   held-out text in bits per byte.

Writes OUT/results.json; with --doc, a markdown report and a PNG beside it.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from .. import jsonio
from ..errors import LmlabError

NAME = "superbpe"
HELP = "SuperBPE vs BPE: bytes/token over vocab sizes and transition points, then two LMs in bits/byte"


def add_arguments(p) -> None:
    p.add_argument("--corpus", default="english-prose", help="sweep corpus (default english-prose)")
    p.add_argument("--held-out", type=float, default=0.15,
                   help="tail fraction of every document held out for measuring (default 0.15)")
    p.add_argument("--vocabs", default="8192,16384,32768", help="vocabulary sizes of the sweep")
    p.add_argument("--transitions", default="0.25,0.5,0.75,0.9",
                   help="transition points t as fractions of the vocabulary size")
    p.add_argument("--sweep-extra", action="append", default=[], metavar="CORPUS",
                   help="repeat the sweep with all of CORPUS added to the training text (repeatable)")
    p.add_argument("--lm-corpus", action="append", default=[], metavar="CORPUS[:EPOCHS,...]",
                   help="corpus for the LM comparison, optionally with its own epoch counts "
                        "(repeatable; default: --corpus)")
    p.add_argument("--lm-vocab", type=int, default=8192, help="vocabulary size of both LMs' tokenizers")
    p.add_argument("--lm-transition", default="",
                   help="SuperBPE t values for the LMs, fractions of --lm-vocab (default: best of the sweep)")
    p.add_argument("--lm-context", type=int, default=128, help="BPE model context in tokens")
    p.add_argument("--lm-steps", type=int, default=400)
    p.add_argument("--lm-epochs", default="",
                   help="instead of --lm-steps: as many steps as this many passes over the training text "
                        "(comma-separated: one pair of runs per value)")
    p.add_argument("--lm-batch", type=int, default=16)
    p.add_argument("--lm-layers", type=int, default=4)
    p.add_argument("--lm-d", type=int, default=128)
    p.add_argument("--lm-lr", type=float, default=2e-3)
    p.add_argument("--device", default="auto", help="device for the LMs (auto, cpu, cuda)")
    p.add_argument("--skip-sweep", action="store_true")
    p.add_argument("--skip-lm", action="store_true")
    p.add_argument("--reuse", action="store_true",
                   help="keep the sweeps (with --skip-sweep) or LMs (with --skip-lm) of OUT/results.json")
    p.add_argument("--merge", action="append", default=[], metavar="RESULTS_JSON",
                   help="like --reuse, from another results.json (e.g. LMs trained on a GPU machine)")
    p.add_argument("--out", default="runs/superbpe", help="output directory (default runs/superbpe)")
    p.add_argument("--doc", default="", help="write the markdown report here (PNG beside it)")
    p.add_argument("--command", action="append", default=[],
                   help="regenerating command(s) quoted in the report (repeatable)")
    p.add_argument("--note", action="append", default=[], help="a paragraph appended to the report (repeatable)")


# --- data -------------------------------------------------------------------------------------
def split_document(text: str, held_out: float) -> tuple[str, str]:
    """Training head and held-out tail of one document, cut at a line start."""
    cut = int(len(text) * (1 - held_out))
    nl = text.find("\n", cut)
    cut = len(text) if nl < 0 else nl + 1
    return text[:cut], text[cut:]


def split_corpus(spec: str, held_out: float) -> tuple[str, str]:
    from ..data.corpora import read_corpus

    if not 0 < held_out < 1:
        raise LmlabError(f"--held-out must be between 0 and 1, not {held_out}")
    parts = [split_document(d.text, held_out) for d in read_corpus(spec)]
    return "".join(p[0] for p in parts), "".join(p[1] for p in parts)


def parse_list(text: str, kind, name: str) -> list:
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise LmlabError(f"{name} must be a comma-separated list of numbers, not {text!r}") from None


# --- 1. sweep ---------------------------------------------------------------------------------
def bytes_per_token(tok, text: str) -> float:
    return len(text.encode("utf-8")) / max(len(tok.encode(text)), 1)


def superword_share(tok, text: str) -> float:
    from ..tokenizers.superbpe_trainer import n_words

    ids = tok.encode(text)
    multi = np.array([n_words(tok.token_bytes(i)) >= 2 for i in range(tok.vocab_size)])
    return float(multi[ids].mean()) if ids else 0.0


def sweep(train_text: str, held_text: str, vocabs: list[int], fractions: list[float], log=print) -> list[dict]:
    """One row per tokenizer: kind, vocab, t, bytes/token on held-out text, training seconds."""
    from ..tokenizers import bpe, superbpe

    rows = []
    for vocab in vocabs:
        t0 = time.perf_counter()
        base = bpe.train(train_text, vocab)
        hf_seconds = time.perf_counter() - t0
        base_bpt = bytes_per_token(base, held_text)
        rows.append({"kind": "bpe", "vocab": vocab, "vocab_reached": base.vocab_size, "transition": None,
                     "bytes_per_token": base_bpt, "token_reduction": 0.0, "superword_share": 0.0,
                     "train_seconds": hf_seconds})
        log(f"bpe {vocab}: {base.vocab_size} ids, {base_bpt:.3f} bytes/token ({hf_seconds:.1f} s)")
        for frac in fractions:
            t = max(bpe.N_BYTES + 1, int(round(vocab * frac)))
            tok = superbpe.train(train_text, vocab, t)
            bpt = bytes_per_token(tok, held_text)
            rows.append({
                "kind": "superbpe", "vocab": vocab, "vocab_reached": tok.vocab_size, "transition": t,
                "transition_reached": tok.transition, "bytes_per_token": bpt,
                "token_reduction": 1 - base_bpt / bpt, "superword_share": superword_share(tok, held_text),
                "stage1_seconds": tok.train_seconds["stage1"], "stage2_seconds": tok.train_seconds["stage2"],
                "stage2_vs_hf_bpe": tok.train_seconds["stage2"] / hf_seconds,
            })
            log(f"superbpe {vocab} t={t}: {bpt:.3f} bytes/token, {rows[-1]['token_reduction']:.1%} fewer tokens")
    return rows


def best_fraction(rows: list[dict], vocab: int) -> float | None:
    cands = [r for r in rows if r["kind"] == "superbpe" and r["vocab"] == vocab]
    if not cands:
        return None
    best = max(cands, key=lambda r: r["bytes_per_token"])
    return best["transition"] / vocab


# --- 2. LMs -----------------------------------------------------------------------------------
def lm_overrides(args, tok_dir: Path, corpus_file: Path, context: int, steps: int) -> list[str]:
    return [
        f"model.n_layers={args.lm_layers}", f"model.d_model={args.lm_d}", f"model.n_heads={max(1, args.lm_d // 32)}",
        f"model.context={context}", f"tokenizer.path={tok_dir}", f"data.corpus={corpus_file}",
        "data.val_fraction=0.05", f"train.max_steps={steps}", f"train.batch_size={args.lm_batch}",
        f"train.lr={args.lm_lr}", f"train.min_lr={args.lm_lr / 10}", f"train.warmup_steps={max(1, steps // 20)}",
        f"train.eval_every={max(1, steps // 10)}", "train.eval_batches=8",
        f"train.ckpt_every={steps}", f"train.device={args.device}", "train.progress=false",
        "train.seed=1337",
    ]


def held_out_bpb(run_dir: Path, text: str, device: str) -> dict:
    """Bits per byte of every byte of `text` (an <|endoftext|> first, so token one is predicted too)."""
    from ..eval.perplexity import evaluate_ids
    from ..checkpoint import load_model
    from ..device import pick_device

    model, tok, cfg = load_model(run_dir, pick_device(device))
    ids = np.asarray([tok.eot_id] + tok.encode(text), dtype=np.int64)
    out = evaluate_ids(model, ids, tok.token_nbytes(), batch_size=16)
    out["context"] = cfg.model.context
    return out


def train_and_score(args, name: str, tok, tok_dir: Path, run_dir: Path, corpus_file: Path, context: int,
                    steps: int, bpt: float, held_text: str, log=print) -> dict:
    from .. import config as config_mod
    from ..train.loop import train

    cfg = config_mod.load("tiny", lm_overrides(args, tok_dir, corpus_file, context, steps))
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    log(f"  {name}: context {context} tokens (~{context * bpt:.0f} bytes), {steps} steps")
    t0 = time.perf_counter()
    final = train(cfg, run_dir, echo=lambda *a: None)
    seconds = time.perf_counter() - t0
    held = held_out_bpb(run_dir, held_text, args.device)
    curve = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    curve = [{"step": m["step"], "val_bpb": m["val_bpb"]} for m in curve if "val_bpb" in m]
    best = min(curve, key=lambda c: c["val_bpb"]) if curve else {"step": None, "val_bpb": None}
    log(f"    held-out {held['bpb']:.4f} bits/byte, best validation {best['val_bpb']} at step {best['step']}")
    return {
        "vocab": tok.vocab_size, "transition": getattr(tok, "transition", None), "train_bytes_per_token": bpt,
        "context_tokens": context, "context_bytes": context * bpt, "params": final.get("params"),
        "held_out_bpb": held["bpb"], "held_out_tokens": held["tokens"], "held_out_bytes": held["bytes"],
        "best_val_bpb": best["val_bpb"], "best_val_step": best["step"], "train_seconds": seconds,
        "curve": curve, "bytes_seen": steps * args.lm_batch * context * bpt,
    }


def compare_lms(args, spec: str, rows: list[dict], out: Path, log=print) -> list[dict]:
    """BPE and SuperBPE (one per t) LMs on one corpus, for each epoch count; one entry per count."""
    from ..tokenizers import bpe, superbpe

    corpus, _, epochs_text = spec.partition(":")
    epochs = parse_list(epochs_text or args.lm_epochs, float, "--lm-epochs") or [0.0]
    fracs = parse_list(args.lm_transition, float, "--lm-transition")
    if not fracs:
        fracs = [(best_fraction(rows, args.lm_vocab) if corpus == args.corpus else None) or 0.5]
    train_text, held_text = split_corpus(corpus, args.held_out)
    base = out / ("lm-" + "".join(c if c.isalnum() else "-" for c in corpus))
    base.mkdir(parents=True, exist_ok=True)
    corpus_file = base / "train.txt"
    corpus_file.write_text(train_text, encoding="utf-8")
    toks = {"bpe": bpe.train(train_text, args.lm_vocab)}
    for f in fracs:
        t = max(bpe.N_BYTES + 1, int(round(args.lm_vocab * f)))
        toks[f"superbpe t={t}"] = superbpe.train(train_text, args.lm_vocab, t)
    bpt = {k: bytes_per_token(tok, train_text) for k, tok in toks.items()}
    contexts = {k: max(8, int(round(args.lm_context * bpt["bpe"] / b))) for k, b in bpt.items()}
    train_bytes = len(train_text.encode())
    entries = []
    for ep in epochs:
        bytes_per_step = args.lm_batch * args.lm_context * bpt["bpe"]
        steps = args.lm_steps if ep <= 0 else max(1, math.ceil(ep * train_bytes / bytes_per_step))
        log(f"LMs on {corpus}: {steps} steps" + (f" ({ep:g} epochs)" if ep > 0 else ""))
        entry = {"corpus": corpus, "epochs": ep or None, "steps": steps, "train_bytes": train_bytes,
                 "held_out_bytes": len(held_text.encode()), "models": {}}
        for k, tok in toks.items():
            slug = k.replace(" ", "-").replace("=", "")
            tok_dir = base / f"tokenizer-{slug}"
            tok.save(tok_dir)
            entry["models"][k] = train_and_score(args, k, tok, tok_dir, base / f"run-{slug}-{steps}", corpus_file,
                                                 contexts[k], steps, bpt[k], held_text, log)
        entries.append(entry)
    return entries


# --- report -----------------------------------------------------------------------------------
def plot(results: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
            short = "" if base["vocab_reached"] == vocab else (
                f" (BPE ran out of pairs seen twice at {base['vocab_reached']} ids; SuperBPE reached "
                f"{best['vocab_reached']})")
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
                lines.append(f"| {r['vocab']} | BPE | - | {r['vocab_reached']} | {r['bytes_per_token']:.3f} | - | - | "
                             f"{r['train_seconds']:.1f} | - |")
            else:
                lines.append(
                    f"| {r['vocab']} | SuperBPE | {r['transition']} | {r['vocab_reached']} "
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
    if notes:
        lines += ["## Notes", ""] + [x for n in notes for x in (n, "")]
    return "\n".join(lines) + "\n"


def machine() -> str:
    import os
    import platform

    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()} with {os.cpu_count()} CPUs, {gpu}"


def run(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    vocabs = parse_list(args.vocabs, int, "--vocabs")
    fractions = parse_list(args.transitions, float, "--transitions")
    if any(not 0 < f <= 1 for f in fractions):
        raise LmlabError("--transitions are fractions of the vocabulary size, in (0, 1]")
    results = {"corpus": args.corpus, "held_out": args.held_out, "machine": machine(),
               "lm_setup": f"{args.lm_layers} layers, d_model {args.lm_d}, vocab {args.lm_vocab}, "
                           f"BPE context {args.lm_context} tokens, batch {args.lm_batch}, lr {args.lm_lr}"}
    train_text, held_text = split_corpus(args.corpus, args.held_out)
    results["train_bytes"], results["held_out_bytes"] = len(train_text.encode()), len(held_text.encode())
    sources = [out / "results.json"] if args.reuse else []
    sources += [Path(f) for f in args.merge]
    previous: dict = {}
    for src in sources:
        if not src.is_file():
            raise LmlabError(f"{src}: no results to reuse")
        data = json.loads(src.read_text())
        if data.get("sweeps") and "sweeps" not in previous:
            previous.update({k: data[k] for k in ("sweeps", "machine", "train_bytes", "held_out_bytes") if k in data})
        if data.get("lm") and "lm" not in previous:
            previous.update({k: data[k] for k in ("lm", "lm_setup", "lm_machine") if k in data})
    if args.skip_sweep:
        results["sweeps"] = previous.get("sweeps", [])
    else:
        results["sweeps"] = [{"train": f"{args.corpus} (training part)", "train_bytes": results["train_bytes"],
                              "rows": sweep(train_text, held_text, vocabs, fractions)}]
        for extra in args.sweep_extra:
            from ..data.corpora import read_corpus

            text = train_text + "".join(d.text for d in read_corpus(extra))
            results["sweeps"].append({"train": f"{args.corpus} (training part) + all of {extra}",
                                      "train_bytes": len(text.encode()),
                                      "rows": sweep(text, held_text, vocabs, fractions)})
    if args.skip_lm:
        results["lm"] = previous.get("lm", [])
        if previous.get("lm_setup"):
            results["lm_setup"] = previous["lm_setup"]
        results["lm_machine"] = previous.get("lm_machine", results["machine"])
    else:
        rows = results["sweeps"][0]["rows"] if results["sweeps"] else []
        results["lm"], results["lm_machine"] = [], results["machine"]
        for corpus in args.lm_corpus or [args.corpus]:
            results["lm"].extend(compare_lms(args, corpus, rows, out))
            (out / "results.json").write_text(jsonio.dumps(results, indent=1))  # keep what is done
    if args.skip_sweep and previous.get("machine"):
        results["machine"] = previous["machine"]
    (out / "results.json").write_text(jsonio.dumps(results, indent=1))
    if args.doc:
        doc = Path(args.doc)
        doc.parent.mkdir(parents=True, exist_ok=True)
        png = doc.with_suffix(".png")
        plot(results, png)
        doc.write_text(report(results, png.name, args.command, args.note), encoding="utf-8")
        print(f"wrote {doc} and {png}")
    print(out / "results.json")
    return 0
