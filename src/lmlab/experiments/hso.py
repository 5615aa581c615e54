"""`lmlab experiment hso`: hidden-state optimisation ("Making the most of your model"), measured.

A byte-level model is trained on the English novels (all but the last tenth of each). Then, on
held-out text of three corpora (the novels' last tenths: in domain; Shakespeare's last tenth and the
German UDHR: out of domain), each split into a tuning part and a test part:
- bits per byte of every next chunk, with HSO (infer/hso.py) on the tokens of its window before it
  and without, for each step count x step size on the tuning part; the setting with the lowest
  mean bits per byte there is then run on the test part, paired with the plain model chunk by chunk
  (bootstrap over chunks);
- multiple choice (eval/choice.py: a passage, its true continuation among three from elsewhere in
  the same text), HSO on the passage before scoring every choice; the setting is chosen on tuning
  items by the log-loss of the true choice, reported on test items (paired bootstrap over items);
- the cost: FLOPs per chunk counted from the model's shape, and the wall time, both against the
  same chunking without HSO.

Results go to hso-results.json beside the doc, with its `claims`; the doc is drawn from it alone.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from . import common
from ..errors import LmlabError
from ..options import COUNT, NONNEG_INT

NAME = "hso"
HELP = "hidden-state optimisation: next-chunk bits per byte and multiple choice, with and without, and its cost"
MODEL = dict(n_layers=4, d_model=128, n_heads=4, context=128, ffn="mlp")
QUICK_MODEL = dict(n_layers=1, d_model=32, n_heads=2, context=64, ffn="mlp")  # choices take up to 48 bytes
CORPORA = ("english-prose", "tinyshakespeare", "german")  # the first is the training domain
MC_CORPORA = ("english-prose", "tinyshakespeare")
CHOICE_SHAPE = dict(n_choices=4, context_chars=72, continuation_chars=24)  # fits a context of 128 bytes


def add_arguments(p) -> None:
    p.add_argument("--work", default="runs/hso", help="where the trained model goes")
    p.add_argument("--doc", default="docs/experiments/hso.md")
    p.add_argument("--steps", type=COUNT, default=1000, help="training steps of the model")
    p.add_argument("--hso-steps", default="1,3", help="HSO step counts to compare (comma-separated)")
    p.add_argument("--hso-lrs", default="10,30,100", help="HSO step sizes to compare (comma-separated)")
    p.add_argument("--chunk", type=NONNEG_INT, default=0, help="tokens predicted per optimisation (0 = context / 4)")
    p.add_argument("--tune-tokens", type=COUNT, default=512, help="held-out tokens per corpus to choose the setting on")
    p.add_argument("--test-tokens", type=COUNT, default=2048, help="held-out tokens per corpus to report on")
    p.add_argument("--mc-tune", type=COUNT, default=30, help="multiple-choice items per corpus to choose the setting on")
    p.add_argument("--mc-items", type=COUNT, default=120, help="multiple-choice items per corpus to report on")
    p.add_argument("--batch-size", type=COUNT, default=16)
    p.add_argument("--seed", type=NONNEG_INT, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--render-only", dest="render_only", action="store_true",
                   help="rewrite the doc from the results JSON beside it (nothing is trained or measured)")
    p.add_argument("--quick", action="store_true", help="a smoke run: a tiny model, a few steps, a few chunks")


QUICK_FLAGS = dict(steps=6, hso_steps="1,2", hso_lrs="1", tune_tokens=48, test_tokens=64, mc_tune=3, mc_items=4,
                   batch_size=4)
SETTINGS = ("work", "steps", "hso_steps", "hso_lrs", "chunk", "tune_tokens", "test_tokens", "mc_tune", "mc_items",
            "batch_size", "seed", "quick")


def results_path(doc: Path) -> Path:
    return doc.parent / "hso-results.json"


# --- text -------------------------------------------------------------------------------------
def texts() -> tuple[str, dict[str, list[str]]]:
    """(training text, {corpus: held-out documents}): the novels' heads train; their tails, the tail of
    tinyshakespeare and the German UDHR are held out."""
    from ..data.corpora import read_corpus, shared_data_dir

    heads, tails = [], []
    for doc in read_corpus("english-prose"):
        head, tail = common.split_text(doc.text, 0.1, at="line")
        heads.append(head)
        tails.append(tail)
    shakespeare = common.split_text(read_corpus("tinyshakespeare")[0].text, 0.1, at="line")[1]
    german = (shared_data_dir() / "multilingual" / "de.txt").read_text(encoding="utf-8")
    return "".join(heads), {"english-prose": tails, "tinyshakespeare": [shakespeare], "german": [german]}


def token_parts(tokenizer, docs: list[str], tune: int, test: int) -> tuple[np.ndarray, np.ndarray]:
    """(tuning ids, test ids): the start of every document, each after an end-of-text id, joined and cut
    into the first `tune` tokens and the `test` tokens after them (each part led by an end-of-text id)."""
    eot = [tokenizer.eot_id]
    ids = np.asarray(sum((eot + tokenizer.encode(d[: (tune + test) * 2 // len(docs) + 1]) for d in docs), []),
                     dtype=np.int64)
    return ids[:tune + 1], np.concatenate([np.asarray(eot, dtype=np.int64), ids[tune + 1:tune + 1 + test]])


def base_config(args, corpus: Path):
    from .. import config

    return common.configured(
        config.load("tiny"), model=dict(QUICK_MODEL if args.quick else MODEL),
        tokenizer=dict(kind="byte"), data=dict(corpus=str(corpus), val_fraction=0.02),
        train=dict(max_steps=args.steps, batch_size=4 if args.quick else 16, lr=3e-3, min_lr=3e-4,
                   warmup_steps=min(50, args.steps // 4), eval_every=args.steps, eval_batches=1 if args.quick else 4,
                   ckpt_every=args.steps, dtype="float32", seed=args.seed, device=args.device, progress=False,
                   weight_decay=0.0))


# --- cost -------------------------------------------------------------------------------------
def chunk_flops(model, seen: int, chunk: int, steps: int) -> dict:
    """Forward-pass FLOPs of one chunk (model.flops_per_token's count): plain = the window of
    seen + chunk - 1 tokens; HSO = steps x (forward + backward = 3 forwards) over the seen - 1
    optimised positions, then the chunk's tokens over the cache."""
    fwd = lambda tokens, keys: tokens * model.flops_per_token(max(keys, 1))["forward"]
    plain = fwd(seen + chunk - 1, seen + chunk - 1)
    with_hso = steps * 3 * fwd(seen - 1, seen - 1) + fwd(chunk, 2 * (seen - 1) + chunk) if steps else plain
    return {"plain": plain, "hso": with_hso, "ratio": with_hso / plain}


# --- bits per byte ----------------------------------------------------------------------------
def chunk_sums(losses: np.ndarray, nbytes: np.ndarray, windows) -> tuple[np.ndarray, np.ndarray]:
    """(nats, bytes) per chunk."""
    nats = np.array([losses[a - 1:a - 1 + c].sum() for _, a, c in windows])
    bts = np.array([nbytes[a - 1:a - 1 + c].sum() for _, a, c in windows])
    return nats, bts


def bpb_of(model, ids, nbytes, chunk, setting, batch_size) -> dict:
    from ..infer import hso

    r = hso.token_losses(model, ids, chunk, setting, batch_size)
    nats, bts = chunk_sums(r["losses"], nbytes, r["windows"])
    return {"bpb": float(nats.sum() / math.log(2) / bts.sum()), "seconds": r["seconds"],
            "chunk_nats": nats.tolist(), "chunk_bytes": bts.tolist()}


def paired_bootstrap(a_nats, b_nats, nbytes, n: int, seed: int) -> list[float]:
    """95% interval of bpb(b) - bpb(a) over resampled chunks."""
    rng = np.random.default_rng(seed)
    a, b, w = (np.asarray(x, dtype=float) for x in (a_nats, b_nats, nbytes))
    idx = rng.integers(0, len(w), size=(n, len(w)))
    diffs = (b[idx].sum(1) - a[idx].sum(1)) / math.log(2) / w[idx].sum(1)
    return [float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975))]


def lm_part(args, model, tokenizer, held: dict, grid: list, echo) -> dict:
    from ..infer.hso import Setting

    chunk = args.chunk or model.cfg.context // 4
    nbytes_of = tokenizer.token_nbytes()
    parts = {name: token_parts(tokenizer, docs, args.tune_tokens, args.test_tokens) for name, docs in held.items()}
    tune = {}
    for name, (ids, _) in parts.items():
        rows = {"plain": bpb_of(model, ids, nbytes_of[ids[1:]], chunk, Setting(0, 1.0), args.batch_size)}
        for s in grid:
            rows[key(s)] = bpb_of(model, ids, nbytes_of[ids[1:]], chunk, s, args.batch_size)
            echo(f"tune {name} {key(s)}: {rows[key(s)]['bpb']:.4f} (plain {rows['plain']['bpb']:.4f})")
        tune[name] = {k: {"bpb": v["bpb"], "seconds": v["seconds"]} for k, v in rows.items()}
    best = min(grid, key=lambda s: np.mean([tune[n][key(s)]["bpb"] - tune[n]["plain"]["bpb"] for n in tune]))
    test = {}
    for name, (_, ids) in parts.items():
        nb = nbytes_of[ids[1:]]
        plain = bpb_of(model, ids, nb, chunk, Setting(0, 1.0), args.batch_size)
        chosen = bpb_of(model, ids, nb, chunk, best, args.batch_size)
        test[name] = {"plain": plain["bpb"], "hso": chosen["bpb"], "tokens": int(len(ids) - 1),
                      "chunks": len(plain["chunk_nats"]), "plain_seconds": plain["seconds"],
                      "hso_seconds": chosen["seconds"],
                      "ci95": paired_bootstrap(plain["chunk_nats"], chosen["chunk_nats"], plain["chunk_bytes"],
                                               1000, args.seed),
                      "chunks_better": float(np.mean(np.array(chosen["chunk_nats"]) < np.array(plain["chunk_nats"])))}
        echo(f"test {name} {key(best)}: {chosen['bpb']:.4f} (plain {plain['bpb']:.4f}) CI {test[name]['ci95']}")
    seen = model.cfg.context - chunk + 1
    cost = {key(s): chunk_flops(model, seen, chunk, s.steps) for s in grid}
    return {"chunk": chunk, "seen": seen, "tune": tune, "chosen": key(best), "test": test, "flops": cost}


def key(setting) -> str:
    return f"{setting.steps} steps, lr {setting.lr:g}"


# --- multiple choice --------------------------------------------------------------------------
def choice_scores(model, tokenizer, items, setting) -> dict:
    """Per item: correct by total log-likelihood, correct per byte, and log-loss of the true choice."""
    from ..infer.hso import choice_loglikelihoods

    hits, hits_norm, logloss = [], [], []
    started = time.perf_counter()
    for it in items:
        ll = np.array(choice_loglikelihoods(model, tokenizer.encode(it.context) or [tokenizer.eot_id],
                                            [tokenizer.encode(c) for c in it.choices], setting))
        per_byte = ll / np.array([len(c.encode("utf-8")) for c in it.choices])
        hits.append(bool(ll.argmax() == it.label))
        hits_norm.append(bool(per_byte.argmax() == it.label))
        logloss.append(float(np.logaddexp.reduce(ll) - ll[it.label]))
    return {"hits": hits, "hits_norm": hits_norm, "logloss": logloss, "seconds": time.perf_counter() - started}


def bootstrap_mean_diff(a, b, n: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    means = d[rng.integers(0, len(d), size=(n, len(d)))].mean(1)
    return [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]


def mc_part(args, model, tokenizer, held: dict, grid: list, echo) -> dict:
    from ..eval.choice import items_from_documents
    from ..infer.hso import Setting

    out = {}
    for name in MC_CORPORA:
        items = items_from_documents(held[name], args.mc_tune + args.mc_items, seed=args.seed, **CHOICE_SHAPE)
        tune_items, test_items = items[:args.mc_tune], items[args.mc_tune:]
        plain_tune = choice_scores(model, tokenizer, tune_items, Setting(0, 1.0))
        tune = {"plain": float(np.mean(plain_tune["logloss"]))}
        for s in grid:
            tune[key(s)] = float(np.mean(choice_scores(model, tokenizer, tune_items, s)["logloss"]))
        best = min(grid, key=lambda s: tune[key(s)])
        plain = choice_scores(model, tokenizer, test_items, Setting(0, 1.0))
        chosen = choice_scores(model, tokenizer, test_items, best)
        row = {"tune_logloss": tune, "chosen": key(best), "n": len(test_items), "chance": 1 / CHOICE_SHAPE["n_choices"],
               "plain_seconds": plain["seconds"], "hso_seconds": chosen["seconds"]}
        for metric in ("hits", "hits_norm"):
            name_ = "acc" if metric == "hits" else "acc_norm"
            row[name_] = {"plain": float(np.mean(plain[metric])), "hso": float(np.mean(chosen[metric])),
                          "ci95": bootstrap_mean_diff(plain[metric], chosen[metric], 1000, args.seed)}
        row["logloss"] = {"plain": float(np.mean(plain["logloss"])), "hso": float(np.mean(chosen["logloss"]))}
        echo(f"choice {name} {key(best)}: acc {row['acc']['hso']:.3f} (plain {row['acc']['plain']:.3f})")
        out[name] = row
    return out


def measure(args) -> dict:
    from ..infer.hso import Setting
    from .hso_report import claims

    steps = common.numbers(args.hso_steps, int, "--hso-steps")
    lrs = common.numbers(args.hso_lrs, float, "--hso-lrs")
    context = (QUICK_MODEL if args.quick else MODEL)["context"]
    if not steps or not lrs or min(steps) < 1 or not all(0 < lr < math.inf for lr in lrs):
        raise LmlabError("--hso-steps must list step counts >= 1 and --hso-lrs step sizes > 0")
    if args.chunk >= context:
        raise LmlabError(f"--chunk must be below the model's context of {context}, got {args.chunk}")
    grid = [Setting(s, lr) for s in steps for lr in lrs]
    work = Path(args.work)
    train_text, held = texts()
    corpus = common.write_text(work / "train.txt", train_text)
    started = time.perf_counter()
    model, tokenizer, cfg = common.train_or_reuse(base_config(args, corpus), work / "model")
    model.eval()
    results = {"settings": {k: getattr(args, k) for k in SETTINGS}, "machine": common.machine(),
               "model": {**{k: getattr(cfg.model, k) for k in ("n_layers", "d_model", "n_heads", "context")},
                         "params": model.num_params(), "val_bpb": common.last_record(work / "model", "val_bpb").get("val_bpb")},
               "lm": lm_part(args, model, tokenizer, held, grid, print),
               "choice": mc_part(args, model, tokenizer, held, grid, print)}
    results["seconds"] = time.perf_counter() - started
    results["claims"] = claims(results)
    return results


def run(args) -> int:
    from .hso_report import write_report

    common.use_quick(args, QUICK_FLAGS)
    doc = Path(args.doc)
    return common.measure_or_reread(args, doc, results_path(doc), measure, write_report)
