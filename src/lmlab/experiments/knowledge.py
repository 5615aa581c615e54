"""`lmlab experiment knowledge`: what a small model memorises, knows and forgets.

Parts (any subset with --parts):
- curvature: a byte-level model trained on English prose with planted random word sequences
  repeated many times; K-FAC curvature edits of its FFN weights at several masses rho, against a
  random mask keeping as many components; recitation of the planted sequences and held-out bits
  per byte before and after (Merullo et al. 2025, memorisation in the flat directions of curvature).
- calibration: next-token expected calibration error of that model on held-out prose.
- hallucination: a model trained on invented people's birth facts, each seen 1, 2, 5 or 20 times,
  mixed with real text; hallucination rate against the monofact rate minus miscalibration
  (Kalai & Vempala 2024).
- probes: linear probes per layer for the language of a line of text (the multilingual corpus).
- forgetting: fine-tune the curvature part's model on three label tasks, then on one task's
  training split with random labels; accuracy on the forget set, held out, on the other tasks,
  and probes per layer before and after (knowledge_parts.py).
- moral: the first principal component of sentence embeddings of normative / non-normative
  phrases, from a packaged sentence encoder and from the model's states; re-ranking generations.
- icl: in-context softmax regression against one gradient step on the pairs (knowledge_icl.py).

Results go to results.json beside the doc; the doc and its PNGs are drawn from it alone.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from . import common
from ..options import COUNT, POSITIVE_FLOAT

NAME = "knowledge"
HELP = "memorisation vs curvature, calibration, hallucination of rare facts, linear probes"
PARTS = ("curvature", "calibration", "hallucination", "probes", "forgetting", "moral", "icl")
PROBE_LANGUAGES = ("de", "en", "es", "fr", "pl", "tr")  # one script: the bytes alone do not give it away
DEFAULT_STEPS = 1200
MODEL = dict(n_layers=2, d_model=96, n_heads=4, context=128, ffn="mlp")
QUICK_MODEL = dict(n_layers=1, d_model=32, n_heads=2, context=32, ffn="mlp")


def add_arguments(p) -> None:
    p.add_argument("--work", default="runs/knowledge", help="where the runs and corpora go")
    p.add_argument("--doc", default="docs/experiments/knowledge.md")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated: {', '.join(PARTS)}")
    p.add_argument("--seeds", default="0,1", help="training seeds (comma-separated)")
    p.add_argument("--steps", type=COUNT, default=DEFAULT_STEPS, help="training steps of each model")
    p.add_argument("--n-layers", type=COUNT, default=MODEL["n_layers"])
    p.add_argument("--d-model", type=COUNT, default=MODEL["d_model"])
    p.add_argument("--rhos", default="0.99,0.95,0.9,0.8,0.7,0.6", help="curvature masses to edit at")
    p.add_argument("--planted", type=COUNT, default=16, help="planted sequences (and as many held-out look-alikes)")
    p.add_argument("--planted-repeats", type=COUNT, default=50)
    p.add_argument("--prose-chars", type=COUNT, default=300_000, help="characters of real training prose")
    p.add_argument("--facts-per-repeat", type=COUNT, default=25)
    p.add_argument("--curvature-tokens", type=COUNT, default=16384)
    p.add_argument("--forget-task", default="author", choices=("language", "author", "shuffled"),
                   help="the task forgotten by random-label fine-tuning")
    p.add_argument("--task-train", type=COUNT, default=300, help="training examples per label task")
    p.add_argument("--task-test", type=COUNT, default=100, help="held-out examples per label task")
    p.add_argument("--finetune-steps", type=COUNT, default=200, help="steps to solve the three tasks")
    p.add_argument("--forget-steps", type=COUNT, default=200, help="steps of random-label fine-tuning")
    p.add_argument("--finetune-lr", type=POSITIVE_FLOAT, default=1e-3)
    p.add_argument("--moral-splits", type=COUNT, default=10, help="random held-out splits of the phrases")
    p.add_argument("--moral-candidates", type=COUNT, default=8, help="sampled continuations per steering prompt")
    p.add_argument("--icl-steps", type=COUNT, default=600, help="training steps of the in-context regressor")
    p.add_argument("--icl-dim", type=COUNT, default=6)
    p.add_argument("--icl-classes", type=COUNT, default=4)
    p.add_argument("--icl-max-pairs", type=COUNT, default=32, help="most in-context pairs (also the training length)")
    p.add_argument("--device", default="auto")
    p.add_argument("--render-only", dest="render_only", action="store_true",
                   help="rewrite the doc from the results JSON beside it (nothing is trained)")
    p.add_argument("--quick", action="store_true", help="a smoke run: tiny models, a few steps")


QUICK_FLAGS = dict(steps=6, n_layers=QUICK_MODEL["n_layers"], d_model=QUICK_MODEL["d_model"], rhos="0.8", planted=4, planted_repeats=3, prose_chars=6000, facts_per_repeat=2,
                   curvature_tokens=256, seeds="0", task_train=20, task_test=8, finetune_steps=3, forget_steps=3,
                   moral_splits=2, moral_candidates=1, icl_steps=3, icl_dim=3, icl_classes=2, icl_max_pairs=4)


def results_path(doc: Path) -> Path:
    return doc.parent / "knowledge-results.json"


def settings(args) -> dict:
    keys = ("work", "parts", "seeds", "steps", "n_layers", "d_model", "rhos", "planted", "planted_repeats", "prose_chars",
            "facts_per_repeat", "curvature_tokens", "forget_task", "task_train", "task_test", "finetune_steps",
            "forget_steps", "finetune_lr", "moral_splits", "moral_candidates", "icl_steps", "icl_dim", "icl_classes",
            "icl_max_pairs", "quick")
    return {k: getattr(args, k) for k in keys}


# --- corpora ----------------------------------------------------------------------------------
def prose(chars: int) -> tuple[str, str]:
    """(training prose, held-out prose): the English novels, the held-out part the end of each."""
    from ..data.corpora import read_corpus

    heads, tails = [], []
    for doc in read_corpus("english-prose"):
        head, tail = common.split_text(doc.text, 0.1, at="line")
        heads.append(head)
        tails.append(tail)
    per = chars // len(heads)
    return "".join(h[:per] for h in heads), "".join(t[: max(per // 8, 2000)] for t in tails)


def word_sequences(text: str, n: int, length: int, rng: random.Random) -> list[str]:
    """`n` sequences of `length` words drawn at random from the words of `text`: memorisable only by rote."""
    words = sorted({w for w in text.lower().split() if w.isalpha() and 3 <= len(w) <= 8})
    return [" ".join(rng.choice(words) for _ in range(length)) for _ in range(n)]


def planted_corpus(train_text: str, planted: list[str], repeats: int, rng: random.Random) -> str:
    """Training prose with each planted sequence inserted `repeats` times at random line breaks."""
    lines = train_text.split("\n")
    inserts = [s for s in planted for _ in range(repeats)]
    at = sorted(rng.randrange(len(lines)) for _ in inserts)
    rng.shuffle(inserts)
    out, k = [], 0
    for i, line in enumerate(lines):
        while k < len(at) and at[k] == i:
            out.append(inserts[k])
            k += 1
        out.append(line)
    return "\n".join(out)


# --- training ---------------------------------------------------------------------------------
def epochs(cfg, corpus: Path) -> float:
    """How many times training read its corpus (byte tokens: one per UTF-8 byte)."""
    t = cfg.train
    return t.max_steps * t.batch_size * t.grad_accum * cfg.model.context / corpus.stat().st_size


def base_config(args, corpus: Path, seed: int):
    from .. import config

    return common.configured(
        config.load("tiny"),
        model={**(QUICK_MODEL if args.quick else MODEL), "n_layers": args.n_layers, "d_model": args.d_model},
        tokenizer=dict(kind="byte"), data=dict(corpus=str(corpus), val_fraction=0.02),
        train=dict(max_steps=args.steps, batch_size=4 if args.quick else 16, lr=3e-3, min_lr=3e-4,
                   warmup_steps=min(50, args.steps // 4), eval_every=args.steps, eval_batches=1 if args.quick else 4,
                   ckpt_every=args.steps, dtype="float32", seed=seed, device=args.device, progress=False,
                   weight_decay=0.0))


# --- measures ---------------------------------------------------------------------------------
def recitation(model, tokenizer, sequences: list[str], prefix_words: int = 3) -> dict:
    """Share of sequences whose greedy continuation of the first words reproduces the rest exactly,
    and the per-byte share of the rest the model predicts right.

    Both from one teacher-forced pass: greedy decoding reproduces the rest exactly if and only if
    the argmax at every position of the rest, given the true bytes before it, is the true byte.
    """
    import torch

    exact, chars = 0, []
    with torch.no_grad():
        for s in sequences:
            words = s.split(" ")
            prefix = tokenizer.encode(" ".join(words[:prefix_words]) + " ")
            ids = (prefix + tokenizer.encode(" ".join(words[prefix_words:])))[-model.cfg.context - 1:]
            n_rest = min(len(ids) - len(prefix), len(ids) - 1)
            logits, _ = model(torch.tensor([ids[:-1]]))
            hits = (logits[0, -n_rest:].argmax(-1) == torch.tensor(ids[-n_rest:])).tolist()
            exact += all(hits)
            chars.append(float(np.mean(hits)))
    return {"exact": exact / len(sequences), "char_accuracy": float(np.mean(chars))}


def bpb(model, tokenizer, text: str) -> float:
    from ..eval.perplexity import evaluate_text

    return evaluate_text(model, tokenizer, text)["bpb"]


def measure_model(model, tokenizer, planted, lookalikes, held_out) -> dict:
    return {"recitation": recitation(model, tokenizer, planted),
            "lookalike_recitation": recitation(model, tokenizer, lookalikes)["exact"],
            "heldout_bpb": bpb(model, tokenizer, held_out),
            "planted_bpb": bpb(model, tokenizer, "\n".join(planted)),
            "lookalike_bpb": bpb(model, tokenizer, "\n".join(lookalikes))}


def planted_model(args, work: Path, seed: int, echo):
    """(model, tokenizer, config, planted, look-alikes, held-out prose, corpus) of the planted-sequence model."""
    rng = random.Random(seed)
    train_text, held_out = prose(args.prose_chars)
    seqs = word_sequences(train_text, 2 * args.planted, 10, rng)
    planted, lookalikes = seqs[: args.planted], seqs[args.planted:]
    corpus = work / f"planted-{seed}.txt"
    common.write_text(corpus, planted_corpus(train_text, planted, args.planted_repeats, rng))
    cfg = base_config(args, corpus, seed)
    model, tok, _ = common.train_or_reuse(cfg, work / f"planted-{seed}", echo)
    return model, tok, cfg, planted, lookalikes, held_out, corpus


def curvature_seed(args, work: Path, seed: int, echo) -> dict:
    """Train the planted-sequence model, then edit it at each rho (curvature and random control)."""
    import copy

    from ..analysis.curvature import edit_model
    from ..eval.calibration import evaluate as calibration

    model, tok, cfg, planted, lookalikes, held_out, corpus = planted_model(args, work, seed, echo)
    held_ids = np.asarray(tok.encode(held_out), dtype=np.int64)
    curv_ids = np.asarray(tok.encode(corpus.read_text(encoding="utf-8")), dtype=np.int64)
    out = {"before": measure_model(model, tok, planted, lookalikes, held_out),
           "calibration": calibration(model, held_ids), "edits": [],
           "examples": planted[:2], "epochs": epochs(cfg, corpus)}
    for rho in common.numbers(args.rhos, float, "--rhos"):
        for control in (False, True):
            edited = copy.deepcopy(model)
            summary = edit_model(edited, curv_ids, rho, ("ffn",), args.curvature_tokens, control=control, seed=seed)
            kept = float(np.mean(list(summary["kept_fraction"].values())))
            row = {"rho": rho, "mask": "random" if control else "curvature", "kept_fraction": kept,
                   **measure_model(edited, tok, planted, lookalikes, held_out)}
            echo(f"seed {seed} rho {rho} {row['mask']}: recite {row['recitation']['exact']:.2f}, "
                 f"held-out bpb {row['heldout_bpb']:.3f}")
            out["edits"].append(row)
    return out


def hallucination_seed(args, work: Path, seed: int, echo) -> dict:
    from ..eval import facts

    fs = facts.make_facts(args.facts_per_repeat, seed)
    train_text, _ = prose(args.prose_chars)
    corpus = work / f"facts-{seed}.txt"
    common.write_text(corpus, facts.mixed_corpus(fs, train_text, seed, lines_per_fact=2))
    cfg = base_config(args, corpus, seed)
    model, tok, _ = common.train_or_reuse(cfg, work / f"facts-{seed}", echo)
    r = {**facts.evaluate_facts(model, tok, fs), "epochs": epochs(cfg, corpus)}
    echo(f"seed {seed} facts: hallucination {r['hallucination_rate']:.3f}, monofact {r['monofact_rate']['of_facts']:.3f}, "
         f"ECE {r['miscalibration_ece']:.3f}")
    return r


def probes_seed(args, work: Path, seed: int, echo) -> dict:
    from ..analysis.probes import language_task, pooled_states, probe_layers
    from ..data.corpora import shared_data_dir

    model, tok = planted_model(args, work, seed, echo)[:2]
    texts, labels, names = language_task(shared_data_dir() / "multilingual", PROBE_LANGUAGES,
                                         10 if args.quick else 100, seed=seed)
    r = probe_layers(pooled_states(model, tok, texts), labels, range(len(model.blocks) + 1), seed=seed)
    echo(f"seed {seed} probes: {r['accuracy']}")
    return {**r, "labels": names}


def forgetting_seed(args, work: Path, seed: int, echo) -> dict:
    from .knowledge_parts import forgetting_seed as measure_forgetting

    planted_model(args, work, seed, echo)
    return measure_forgetting(args, work, seed, work / f"planted-{seed}", echo)


def moral_seed(args, work: Path, seed: int, echo) -> dict:
    from .knowledge_parts import moral_seed as measure_moral

    planted_model(args, work, seed, echo)
    return measure_moral(args, seed, work / f"planted-{seed}", echo)


def icl_settings(args) -> dict:
    quick = args.quick
    return dict(dim=args.icl_dim, classes=args.icl_classes, width=16 if quick else 64, layers=1 if quick else 3,
                max_pairs=args.icl_max_pairs, steps=args.icl_steps, batch=8 if quick else 64,
                ns=[n for n in (1, 2, 4, 8, 16, 32, 64) if n <= args.icl_max_pairs],
                eval_seqs=8 if quick else 256, queries=max(4 * args.icl_dim, 8))


def icl_seed(args, work: Path, seed: int, echo) -> dict:
    from .knowledge_icl import icl_seed as measure_icl

    s = icl_settings(args)
    return {**measure_icl(s, seed, echo), "settings": s}


MEASURES = {"curvature": curvature_seed, "hallucination": hallucination_seed, "probes": probes_seed,
            "forgetting": forgetting_seed, "moral": moral_seed, "icl": icl_seed}


def measure(args, parts: list[str]) -> dict:
    work = Path(args.work)
    seeds = common.numbers(args.seeds, int, "--seeds")
    start = common.timing_start()
    results = {"settings": settings(args), "machine": common.machine(), "parts": {}}
    need_curv = "curvature" in parts or "calibration" in parts
    by_seed = {}
    if need_curv:
        by_seed["curvature"] = {str(s): curvature_seed(args, work, s, print) for s in seeds}
    for part in ("hallucination", "probes", "forgetting", "moral", "icl"):
        if part in parts:
            by_seed[part] = {str(s): MEASURES[part](args, work, s, print) for s in seeds}
    if "curvature" in parts:
        results["parts"]["curvature"] = {s: {k: v for k, v in r.items() if k != "calibration"}
                                         for s, r in by_seed["curvature"].items()}
    if "calibration" in parts:
        results["parts"]["calibration"] = {s: r["calibration"] for s, r in by_seed["curvature"].items()}
    for part in ("hallucination", "probes", "forgetting", "moral", "icl"):
        if part in by_seed:
            results["parts"][part] = by_seed[part]
    results["part_settings"] = {part: results["settings"] for part in results["parts"]}
    # the page states how long the run took and how busy the shared machine was meanwhile
    results["timing"] = common.timing(start)
    return results


def merged(old: dict, new: dict) -> dict:
    """`new`, with the parts of `old` it did not measure kept (each with the settings it was made with)."""
    if old.get("settings", {}).get("quick") != new["settings"]["quick"]:
        return new
    out = {**new, "parts": {}, "part_settings": {}}
    for part in PARTS:  # the report's order
        source = new if part in new["parts"] else old if part in old.get("parts", {}) else None
        if source is not None:
            out["parts"][part] = source["parts"][part]
            out["part_settings"][part] = source.get("part_settings", {}).get(part, source["settings"])
    return out


def run(args) -> int:
    from .knowledge_report import claims, write_report

    common.use_quick(args, QUICK_FLAGS)
    parts = common.names(args.parts, PARTS, "--parts", "part")
    doc = Path(args.doc)
    path = results_path(doc)
    if args.render_only:
        results = common.read_json(path)
    else:
        results = measure(args, parts)
        if path.is_file():
            results = merged(common.read_json(path), results)
    results["claims"] = claims(results, doc)
    common.write_json(path, results)
    write_report(results, doc)
    print(f"wrote {doc}")
    return 0
