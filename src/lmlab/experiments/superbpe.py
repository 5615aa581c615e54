"""SuperBPE vs BPE (PAPERS.md section 2): tokens per byte, then two LMs compared in bits per byte.

1. Sweep: on a corpus split into a training part and a held-out part (the tail of every document),
   train byte-level BPE and SuperBPE at each vocabulary size and transition point t, and measure
   bytes per token on the held-out part (plus the stage-2 training time next to HF's BPE time).
2. LMs: two identical small Transformers, one per tokenizer (same vocabulary size), trained on the
   same training text for the same steps and batch, with contexts matched in bytes (the SuperBPE
   model's context in tokens is scaled by the ratio of bytes per token), then scored on the
   held-out text in bits per byte.

Writes OUT/results.json; with --doc, a markdown report and a PNG beside it (superbpe_report.py,
which --render-only runs alone on OUT/results.json).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ..errors import LmlabError
from ..tokenizers.training import bytes_per_token, superword_share, train_tokenizer
from . import common
from ..options import COUNT, HELD_OUT, POSITIVE_FLOAT

NAME = "superbpe"
HELP = "SuperBPE vs BPE: bytes/token over vocab sizes and transition points, then two LMs in bits/byte"
# --quick: one small sweep and two tiny LMs, seconds on a CPU
QUICK = {"vocabs": "512", "transitions": "0.75", "lm_vocab": 512, "lm_steps": 3, "lm_batch": 2, "lm_context": 16,
         "lm_layers": 1, "lm_d": 16}


def add_arguments(p) -> None:
    p.add_argument("--corpus", default="english-prose", help="sweep corpus (default english-prose)")
    p.add_argument("--held-out", type=HELD_OUT, default=0.15,
                   help="tail fraction of every document held out for measuring (default 0.15)")
    p.add_argument("--vocabs", default="8192,16384,32768", help="vocabulary sizes of the sweep")
    p.add_argument("--transitions", default="0.25,0.5,0.75,0.9",
                   help="transition points t as fractions of the vocabulary size")
    p.add_argument("--sweep-extra", action="append", default=[], metavar="CORPUS",
                   help="repeat the sweep with all of CORPUS added to the training text (repeatable)")
    p.add_argument("--lm-corpus", action="append", default=[], metavar="CORPUS[:EPOCHS,...]",
                   help="corpus for the LM comparison, optionally with its own epoch counts "
                        "(repeatable; default: --corpus)")
    p.add_argument("--lm-vocab", type=COUNT, default=8192, help="vocabulary size of both LMs' tokenizers")
    p.add_argument("--lm-transition", default="",
                   help="SuperBPE t values for the LMs, fractions of --lm-vocab (default: best of the sweep)")
    p.add_argument("--lm-context", type=COUNT, default=128, help="BPE model context in tokens")
    p.add_argument("--lm-steps", type=COUNT, default=400)
    p.add_argument("--lm-epochs", default="",
                   help="instead of --lm-steps: as many steps as this many passes over the training text "
                        "(comma-separated: one pair of runs per value)")
    p.add_argument("--lm-batch", type=COUNT, default=16)
    p.add_argument("--lm-layers", type=COUNT, default=4)
    p.add_argument("--lm-d", type=COUNT, default=128)
    p.add_argument("--lm-lr", type=POSITIVE_FLOAT, default=2e-3)
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
    p.add_argument("--render-only", action="store_true", help="write --doc from OUT/results.json, measuring nothing")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items()))


# --- data -------------------------------------------------------------------------------------
def split_document(text: str, held_out: float) -> tuple[str, str]:
    """Training head and held-out tail of one document, cut at a line start."""
    return common.split_text(text, held_out, at="line")


def split_corpus(spec: str, held_out: float) -> tuple[str, str]:
    from ..data.corpora import read_corpus

    if not 0 < held_out < 1:
        raise LmlabError(f"--held-out must be between 0 and 1, not {held_out}")
    parts = [split_document(d.text, held_out) for d in read_corpus(spec)]
    return "".join(p[0] for p in parts), "".join(p[1] for p in parts)


# --- 1. sweep ---------------------------------------------------------------------------------
def sweep(train_text: str, held_text: str, vocabs: list[int], fractions: list[float], log=print) -> list[dict]:
    """One row per tokenizer: kind, vocab, t, bytes/token on held-out text, training seconds."""
    from ..tokenizers import bpe

    rows, done = [], set()
    for requested in vocabs:
        t0 = time.perf_counter()
        base = train_tokenizer("bpe", train_text, requested)
        hf_seconds = time.perf_counter() - t0
        # Vocabulary-matched: where BPE runs out of pairs seen twice short of the request, SuperBPE gets the
        # ids BPE reached, so every comparison is at one vocabulary size.
        vocab = base.vocab_size
        if vocab in done:
            log(f"bpe {requested}: {vocab} ids again, the same comparison as before; skipped")
            continue
        done.add(vocab)
        base_bpt = bytes_per_token(base, held_text)
        rows.append({"kind": "bpe", "vocab": vocab, "vocab_requested": requested, "vocab_reached": vocab,
                     "transition": None, "bytes_per_token": base_bpt, "token_reduction": 0.0, "superword_share": 0.0,
                     "train_seconds": hf_seconds})
        log(f"bpe {requested}: {vocab} ids, {base_bpt:.3f} bytes/token ({hf_seconds:.1f} s)")
        for frac in fractions:
            t = max(bpe.N_BYTES + 1, int(round(vocab * frac)))
            tok = train_tokenizer("superbpe", train_text, vocab, t)
            bpt = bytes_per_token(tok, held_text)
            rows.append({
                "kind": "superbpe", "vocab": vocab, "vocab_requested": requested, "vocab_reached": tok.vocab_size,
                "transition": t,
                "transition_reached": tok.transition, "bytes_per_token": bpt,
                "token_reduction": 1 - base_bpt / bpt, "superword_share": superword_share(tok, held_text),
                "stage1_seconds": tok.train_seconds["stage1"], "stage2_seconds": tok.train_seconds["stage2"],
                "stage2_vs_hf_bpe": tok.train_seconds["stage2"] / hf_seconds,
            })
            log(f"superbpe {vocab} t={t}: {bpt:.3f} bytes/token, {rows[-1]['token_reduction']:.1%} fewer tokens")
    return rows


def best_fraction(rows: list[dict], vocab: int) -> float | None:
    """The sweep's best t as a fraction, for the LM at `vocab` ids requested (BPE may have reached fewer)."""
    cands = [r for r in rows if r["kind"] == "superbpe" and vocab in (r["vocab"], r["vocab_requested"])]
    if not cands:
        return None
    best = max(cands, key=lambda r: r["bytes_per_token"])
    return best["transition"] / best["vocab"]


# --- 2. LMs -----------------------------------------------------------------------------------
def lm_config(args, tok_dir: Path, corpus_file: Path, context: int, steps: int):
    """The `tiny` preset at the LM comparison's size; only the tokenizer and context differ between models."""
    from .. import config

    return common.configured(
        config.load("tiny"),
        model=dict(n_layers=args.lm_layers, d_model=args.lm_d, n_heads=max(1, args.lm_d // 32), context=context),
        tokenizer=dict(path=str(tok_dir)),
        data=dict(corpus=str(corpus_file), val_fraction=0.05),
        train=dict(max_steps=steps, batch_size=args.lm_batch, lr=args.lm_lr, min_lr=args.lm_lr / 10,
                   warmup_steps=max(1, steps // 20), eval_every=max(1, steps // 10), eval_batches=8,
                   ckpt_every=steps, device=args.device, progress=False, seed=1337))


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
    cfg = lm_config(args, tok_dir, corpus_file, context, steps)
    log(f"  {name}: context {context} tokens (~{context * bpt:.0f} bytes), {steps} steps")
    t0 = time.perf_counter()
    final = common.train_fresh(cfg, run_dir)
    seconds = time.perf_counter() - t0
    held = held_out_bpb(run_dir, held_text, args.device)
    curve = [{"step": step, "val_bpb": v} for step, v in common.curve(run_dir, "val_bpb")]
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
    from ..tokenizers import bpe

    corpus, _, epochs_text = spec.partition(":")
    epochs = common.numbers(epochs_text or args.lm_epochs, float, "--lm-epochs") or [0.0]
    fracs = common.numbers(args.lm_transition, float, "--lm-transition")
    if not fracs:
        fracs = [(best_fraction(rows, args.lm_vocab) if corpus == args.corpus else None) or 0.5]
    train_text, held_text = split_corpus(corpus, args.held_out)
    base = out / ("lm-" + common.slug(corpus))
    base.mkdir(parents=True, exist_ok=True)
    corpus_file = base / "train.txt"
    corpus_file.write_text(train_text, encoding="utf-8")
    toks = {"bpe": train_tokenizer("bpe", train_text, args.lm_vocab)}
    vocab = toks["bpe"].vocab_size  # vocabulary-matched, as in the sweep
    for f in fracs:
        t = max(bpe.N_BYTES + 1, int(round(vocab * f)))
        toks[f"superbpe t={t}"] = train_tokenizer("superbpe", train_text, vocab, t)
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


def results_copy(doc) -> Path:
    """docs/experiments/superbpe.md -> docs/experiments/superbpe-results.json."""
    doc = Path(doc)
    return doc.with_name(doc.stem + "-results.json")


def read_previous(paths: list[Path]) -> dict:
    """The sweeps (and their machine) and the LMs (and theirs) from the first files that have them."""
    previous: dict = {}
    for src in paths:
        if not src.is_file():
            raise LmlabError(f"{src}: no results to reuse")
        data = common.read_json(src)
        if data.get("sweeps") and "sweeps" not in previous:
            previous.update({k: data[k] for k in ("sweeps", "machine", "train_bytes", "held_out_bytes") if k in data})
        if data.get("lm") and "lm" not in previous:
            previous.update({k: data[k] for k in ("lm", "lm_setup", "lm_machine") if k in data})
    return previous


def run(args) -> int:
    from .superbpe_report import claims_of, write_report

    common.use_quick(args, QUICK)
    out = Path(args.out)
    if args.render_only:
        if not args.doc:
            raise LmlabError("--render-only writes --doc: name the page to write")
        doc = write_report(common.read_json(out / "results.json"), args.doc, args.command, args.note)
        print(f"wrote {doc} and {doc.with_suffix('.png')}")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    vocabs = common.numbers(args.vocabs, int, "--vocabs")
    fractions = common.numbers(args.transitions, float, "--transitions")
    if any(not 0 < f <= 1 for f in fractions):
        raise LmlabError("--transitions are fractions of the vocabulary size, in (0, 1]")
    results = {"corpus": args.corpus, "held_out": args.held_out, "machine": common.describe(common.machine()),
               "lm_setup": f"{args.lm_layers} layers, d_model {args.lm_d}, vocab {args.lm_vocab}, "
                           f"BPE context {args.lm_context} tokens, batch {args.lm_batch}, lr {args.lm_lr}"}
    train_text, held_text = split_corpus(args.corpus, args.held_out)
    results["train_bytes"], results["held_out_bytes"] = len(train_text.encode()), len(held_text.encode())
    previous = read_previous(([out / "results.json"] if args.reuse else []) + [Path(f) for f in args.merge])
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
            common.write_json(out / "results.json", results)  # keep what is done
    if args.skip_sweep and previous.get("machine"):
        results["machine"] = previous["machine"]
    results["claims"] = claims_of(results, args.command)
    common.write_json(out / "results.json", results)
    if args.doc:
        common.write_json(results_copy(args.doc), results)  # beside the page: the committed copy
        doc = write_report(results, args.doc, args.command, args.note)
        print(f"wrote {doc} and {doc.with_suffix('.png')}")
    print(out / "results.json")
    return 0
