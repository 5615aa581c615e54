"""`lmlab experiment knnlm`: the kNN-LM generation critique (Wang et al. 2023), measured in full.

Parts, all on one char-level tinyshakespeare model (the inference experiment's shape):
- tokens: the share of held-out tokens whose probability interpolation raises or lowers, on
  in-domain (tinyshakespeare) and out-of-domain (english-prose) text, with the datastore built from
  the model's training data (the critique's setting) or from other text; lambda, k and the kNN
  temperature tuned on a validation half of the held-out text, reported on the other half.
- generation: held-out prompts continued by the plain model and by the kNN-LM (tuned, and the
  paper's default), several sampling seeds; MAUVE against the true continuations (sentence-encoder
  and/or the model's own features), plus repetition and diversity.
- entropy: entropy of p_kNN and p_LM at each generated position (the exposure-bias measurement),
  and the same along the true continuations (teacher forcing) as the control.

Results go to knnlm-results.json beside the doc; the doc and its PNGs are drawn from it alone.
"""
from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import torch

from . import common
from ..errors import LmlabError
from ..options import COUNT, NONNEG_INT

NAME = "knnlm"
HELP = "kNN-LM's critique: generation quality (MAUVE) with and without retrieval, per-token gains, retrieval entropy"
PAPER = "KNN-LM Does Not Improve Open-ended Text Generation"
TEXTS = {"in-domain (tinyshakespeare)": None, "out-of-domain (english-prose)": "english-prose"}
STORES = {"training data (tinyshakespeare train)": None, "other text (english-prose train)": "english-prose"}
MAIN_TEXT, MAIN_STORE = next(iter(TEXTS)), next(iter(STORES))  # the critique's setting
LAMBDAS = (0.05, 0.1, 0.25, 0.5, 0.75)
KS = (8, 64, 256, 1024)
KNN_TEMPERATURES = (1.0, 3.0, 10.0)
PAPER_DEFAULT = {"lmbda": 0.25, "k": 1024, "temperature": 1.0}
CONFIDENCE_EDGES = (0.0, 0.1, 0.5, 0.9, 1.0)  # bins of p_LM(target) for the per-token breakdown
FEATURES = ("minilm", "lm")
DEFAULT_STEPS = 1200
QUICK_MODEL = {"model": {"n_layers": 2, "d_model": 64}, "train": {"eval_batches": 2}}
QUICK_FLAGS = dict(steps=30, store_tokens=3000, val_tokens=300, test_tokens=300, prompts=8, prompt_tokens=16,
                   new_tokens=24, seeds="0,1", features="lm")


def add_arguments(p) -> None:
    p.add_argument("--work", default="runs/knnlm", help="the model, datastores and results JSON (default runs/knnlm)")
    p.add_argument("--doc", default="docs/experiments/knnlm.md")
    p.add_argument("--steps", type=COUNT, default=DEFAULT_STEPS, help="training steps of the model")
    p.add_argument("--store-tokens", type=NONNEG_INT, default=0, help="cap on each datastore's tokens (0 = whole train split)")
    p.add_argument("--val-tokens", type=COUNT, default=4000, help="held-out tokens for tuning lambda, k, temperature")
    p.add_argument("--test-tokens", type=COUNT, default=8000, help="other held-out tokens the per-token figures are on")
    p.add_argument("--prompts", type=COUNT, default=80, help="held-out prompts continued per setting and seed")
    p.add_argument("--prompt-tokens", type=COUNT, default=64)
    p.add_argument("--new-tokens", type=COUNT, default=160, help="tokens generated per prompt (and true ones compared)")
    p.add_argument("--seeds", default="0,1,2", help="sampling seeds (comma-separated)")
    p.add_argument("--features", default=",".join(FEATURES),
                   help="MAUVE features: minilm (all-MiniLM-L6-v2 sentence encoder), lm (the model's own states)")
    p.add_argument("--threads", type=COUNT, default=1, help="torch and faiss threads (default 1: fair on a shared CPU)")
    p.add_argument("--render-only", action="store_true", help="rewrite the doc from the results JSON beside it")
    p.add_argument("--quick", action="store_true", help="a smoke run: a tiny model, a few prompts and tokens")


def results_path(doc: Path) -> Path:
    return doc.parent / "knnlm-results.json"


def settings(args) -> dict:
    keys = ("work", "steps", "store_tokens", "val_tokens", "test_tokens", "prompts", "prompt_tokens", "new_tokens",
            "seeds", "features", "threads", "quick")
    return {k: getattr(args, k) for k in keys}


def model_config(args):
    from .inference import MODEL

    cfg = common.configured(MODEL, train=dict(max_steps=args.steps, threads=args.threads,
                                              eval_every=max(1, args.steps // 4), ckpt_every=args.steps))
    return common.configured(cfg, **QUICK_MODEL) if args.quick else cfg


# --- data and stores --------------------------------------------------------------------------
def held_out_halves(cfg, tokenizer, corpus, args) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(training ids, validation ids, test ids): the held-out split cut in two, tuning never sees the test half."""
    train, held = common.token_split(cfg, tokenizer, corpus)
    half = len(held) // 2
    return train, held[:half], held[half:]


def build_store(model, ids, path: Path, corpus: str, echo):
    from ..infer import knnlm

    if not (path / "meta.json").is_file():
        echo(f"building datastore {path.name} ({len(ids) - 1:,} entries) ...")
        knnlm.build(model, ids, path, meta={"data": corpus, "split": "train"})
    return knnlm.Datastore.load(path)


# --- per-token picture and tuning --------------------------------------------------------------
def first_k(nb: dict, k: int) -> dict:
    """`target_neighbours` output as if searched with k neighbours (the index returns them nearest first)."""
    return {"base": nb["base"], "dist": nb["dist"][:, :k], "hit": nb["hit"][:, :k]}


def knn_target_logprobs(nb: dict, temperature: float) -> torch.Tensor:
    """log p_kNN(target) per token."""
    w = (-nb["dist"] / temperature).softmax(-1).nan_to_num(0.0).double()
    return (w * nb["hit"]).sum(-1).log()


def tune(nb_val: dict) -> tuple[dict, list[dict]]:
    """(the lowest-loss setting, the whole grid) of lambda x k x temperature on validation tokens."""
    from ..infer import knnlm

    grid = []
    for k in KS:
        sub = first_k(nb_val, k)
        for temp in KNN_TEMPERATURES:
            for lmbda in LAMBDAS:
                loss = float(-knnlm.mix_target_logprobs(sub, lmbda, temp).mean())
                grid.append({"lmbda": lmbda, "k": k, "temperature": temp, "val_loss": loss})
    best = min(grid, key=lambda r: r["val_loss"])
    return {key: best[key] for key in ("lmbda", "k", "temperature")}, grid


def breakdown(nb: dict, setting: dict) -> dict:
    """Why tokens rise or fall: p_kNN vs p_LM per token, by the LM's confidence in the target."""
    from ..infer import knnlm

    sub = first_k(nb, setting["k"])
    base = sub["base"].numpy()
    knn = knn_target_logprobs(sub, setting["temperature"]).numpy()
    delta = knnlm.mix_target_logprobs(sub, setting["lmbda"], setting["temperature"]).numpy() - base
    p_lm = np.exp(base)
    bins = []
    for lo, hi in zip(CONFIDENCE_EDGES[:-1], CONFIDENCE_EDGES[1:]):
        m = (p_lm > lo) & (p_lm <= hi) if lo > 0 else (p_lm <= hi)
        bins.append({"lo": lo, "hi": hi, "share": float(m.mean()),
                     "raised": float((delta[m] > 0).mean()) if m.any() else None,
                     "mean_delta": float(delta[m].mean()) if m.any() else None})
    gains = np.sort(delta)[::-1]
    top = max(1, len(gains) // 10)
    return {"knn_above_lm": float((knn > base).mean()),  # = the raised share for any lambda in (0, 1)
            "nearest_holds_target": float(sub["hit"][:, 0].double().mean()),
            "target_in_k": float(sub["hit"].any(-1).double().mean()),
            "p_knn_target_mean": float(np.exp(knn).mean()), "p_lm_target_mean": float(p_lm.mean()),
            "top_decile_gain": float(gains[:top].sum()), "net_gain": float(delta.sum()),
            "by_confidence": bins}


def measure_tokens(model, tokenizer, data: dict, stores: dict, echo) -> dict:
    from ..infer import knnlm

    nbytes = tokenizer.token_nbytes()
    kmax = max(KS)
    out = {}
    for sname, store in stores.items():
        for tname, (val, test) in data.items():
            t0 = time.perf_counter()
            nb_val = knnlm.target_neighbours(model, store, val, k=kmax)
            nb_test = knnlm.target_neighbours(model, store, test, k=kmax)
            tuned, grid = tune(nb_val)
            rows = {}
            for label, setting in (("paper default", PAPER_DEFAULT), ("tuned on validation", tuned)):
                sub = first_k(nb_test, setting["k"])
                mixed = knnlm.mix_target_logprobs(sub, setting["lmbda"], setting["temperature"]).numpy()
                report = knnlm.per_token_report(sub["base"].numpy(), mixed, float(nbytes[test[1:]].sum()))
                rows[label] = {**setting, **report, "why": breakdown(nb_test, setting)}
            out[f"{sname} | {tname}"] = {"store": sname, "text": tname, "entries": len(store),
                                         "index": store.meta["index"], "val_tokens": len(val) - 1,
                                         "test_tokens": len(test) - 1, "tuned": tuned, "grid": grid, "rows": rows,
                                         "seconds": time.perf_counter() - t0}
            r = rows["tuned on validation"]
            echo(f"{sname} | {tname}: tuned {tuned}, ppl {r['base']['ppl']:.3f} -> {r['knn']['ppl']:.3f}, "
                 f"raised {r['frac_better']:.3f}, lowered {r['frac_worse']:.3f}")
    return out


# --- generation --------------------------------------------------------------------------------
def prompts_and_truths(ids: np.ndarray, n: int, prompt_len: int, new: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prompts [n, P], their true continuations [n, new], n other true continuations) from `ids`, non-overlapping."""
    span = prompt_len + new
    slots = len(ids) // span
    if slots < 2 * n:
        raise LmlabError(f"the held-out text holds {slots} spans of {span} tokens; "
                                f"{2 * n} are needed (lower --prompts, --prompt-tokens or --new-tokens)")
    chosen = random.Random(seed).sample(range(slots), 2 * n)
    spans = np.stack([ids[s * span:(s + 1) * span] for s in chosen])
    return spans[:n, :prompt_len], spans[:n, prompt_len:], spans[n:, prompt_len:]


def sample(model, store, prompts: np.ndarray, new: int, setting: dict, seed: int,
           forced: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """(ids [B, new], {"h_lm", "h_knn"} [new] entropies averaged over the batch), sampled at temperature 1
    from the mixture of `setting` (lambda 0: the plain model), or along `forced` ids."""
    from ..infer import knnlm
    from ..infer.generate import decode_steps

    record: list = []
    step = knnlm.knn_step(model, store, setting["lmbda"], setting["k"], setting["temperature"], record)
    x = torch.from_numpy(prompts)
    f = None if forced is None else torch.from_numpy(forced)
    ids = torch.stack(list(decode_steps(model, x, new, temperature=1.0, seed=seed, step=step, forced=f)), 1)
    ent = {name: [float(r[name].mean()) for r in record[:new]] for name in ("h_lm", "h_knn")}
    return ids.numpy(), ent


def decode_all(tokenizer, rows: np.ndarray) -> list[str]:
    eot = getattr(tokenizer, "eot_id", None)
    texts = []
    for r in rows.tolist():
        texts.append(tokenizer.decode(r[:r.index(eot)] if eot in r else r))
    return texts


def lm_features(model, tokenizer, texts: list[str]) -> np.ndarray:
    """Mean over positions of the model's final-norm hidden states, one vector per text."""
    from ..analysis.hooks import capture

    out = []
    ctx = model.cfg.context
    with torch.no_grad():
        for t in texts:
            ids = tokenizer.encode(t)[-ctx:] or [0]
            with capture(model, ["final"]) as acts:
                model(torch.tensor([ids]))
            out.append(acts["final"][0].float().mean(0).numpy())
    return np.stack(out)


def featurize(kind: str, model, tokenizer, texts: list[str]) -> np.ndarray:
    if kind == "lm":
        return lm_features(model, tokenizer, texts)
    from ..eval.text_features import sentence_features

    return sentence_features(texts)


def measure_generation(model, tokenizer, store, test: np.ndarray, tuned: dict, args, echo) -> dict:
    from ..eval import diversity
    from ..eval.text_features import mauve

    seeds = common.numbers(args.seeds, int, "--seeds")
    kinds = common.names(args.features, FEATURES, "--features", "feature kind")
    prompts, truths, others = prompts_and_truths(test, args.prompts, args.prompt_tokens, args.new_tokens, seed=0)
    true_texts, other_texts = decode_all(tokenizer, truths), decode_all(tokenizer, others)
    feats = {kind: featurize(kind, model, tokenizer, true_texts) for kind in kinds}
    reference = {kind: mauve(featurize(kind, model, tokenizer, other_texts), feats[kind], seed=0) for kind in kinds}
    setups = {"plain LM": {**tuned, "lmbda": 0.0}, "kNN-LM, tuned on validation": tuned,
              "kNN-LM, paper default": PAPER_DEFAULT}
    out = {"prompts": len(prompts), "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens,
           "seeds": seeds, "features": kinds, "reference_mauve": reference,
           "true_diversity": diversity.summary(true_texts), "settings": {}, "examples": {}}
    for label, setting in setups.items():
        runs = []
        for seed in seeds:
            t0 = time.perf_counter()
            ids, ent = sample(model, store, prompts, args.new_tokens, setting, seed)
            texts = decode_all(tokenizer, ids)
            scores = {kind: mauve(featurize(kind, model, tokenizer, texts), feats[kind], seed=seed) for kind in kinds}
            runs.append({"seed": seed, "mauve": scores, "diversity": diversity.summary(texts), "entropy": ent,
                         "seconds": time.perf_counter() - t0})
            if seed == seeds[0]:
                out["examples"][label] = texts[:2]
            echo(f"{label} seed {seed}: MAUVE {scores}, rep-4 {runs[-1]['diversity']['rep_4']:.3f}")
        out["settings"][label] = {**setting, "runs": runs}
    _, forced = sample(model, store, prompts, args.new_tokens, tuned, seeds[0], forced=truths)
    out["true_entropy"] = forced
    out["prompt_examples"] = decode_all(tokenizer, prompts[:2])
    out["true_examples"] = true_texts[:2]
    return out


# --- the whole run -----------------------------------------------------------------------------
def measure(args, echo=print) -> dict:
    work = Path(args.work)
    torch.set_num_threads(args.threads)
    from ..infer import knnlm

    knnlm.faiss_module().omp_set_num_threads(args.threads)
    t0 = time.perf_counter()
    cfg = model_config(args)
    model, tokenizer, cfg = common.train_or_reuse(cfg, work / "model", echo)
    model.eval()
    rec = common.last_record(work / "model", "val_loss")
    results = {"settings": settings(args), "machine": common.machine(),
               "model": {"layers": model.cfg.n_layers, "d_model": model.cfg.d_model, "context": model.cfg.context,
                         "params": model.num_params(), "steps": cfg.train.max_steps, "batch": cfg.train.batch_size,
                         "tokenizer": cfg.tokenizer.kind, "val_loss": rec.get("val_loss"),
                         "val_bpb": rec.get("val_bpb")}}
    data, stores = {}, {}
    for tname, corpus in TEXTS.items():
        _, val, test = held_out_halves(cfg, tokenizer, corpus, args)
        data[tname] = (val[: args.val_tokens + 1], test[: args.test_tokens + 1])
    for sname, corpus in STORES.items():
        train = common.token_split(cfg, tokenizer, corpus)[0]
        train = train[: args.store_tokens + 1] if args.store_tokens else train
        stores[sname] = build_store(model, train, work / f"store-{common.slug(corpus or cfg.data.corpus)}",
                                    corpus or cfg.data.corpus, echo)
    results["train_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    results["tokens"] = measure_tokens(model, tokenizer, data, stores, echo)
    results["tokens_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tuned = results["tokens"][f"{MAIN_STORE} | {MAIN_TEXT}"]["tuned"]
    test = held_out_halves(cfg, tokenizer, TEXTS[MAIN_TEXT], args)[2]
    results["generation"] = measure_generation(model, tokenizer, stores[MAIN_STORE], test, tuned, args, echo)
    results["generation_s"] = time.perf_counter() - t0
    from .knnlm_report import claims

    results["claims"] = claims(results)
    return results


def run(args) -> int:
    from .knnlm_report import claims, write_report

    common.use_quick(args, QUICK_FLAGS)
    common.names(args.features, FEATURES, "--features", "feature kind")
    if not common.numbers(args.seeds, int, "--seeds"):
        raise LmlabError("--seeds: give at least one sampling seed")
    doc = Path(args.doc)
    return common.measure_or_reread(args, doc, results_path(doc), measure, write_report, claims)
