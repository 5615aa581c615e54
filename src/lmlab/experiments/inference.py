"""Inference-time methods, measured: LM-Infinite, kNN-LM, layer voids, beam / conditional beam / ICN.

    lmlab experiment inference [--out runs/infer] [--docs docs] [--parts lminfinite,knn,voids,decoding]

Trains (or reuses) two small char-level models: one on tinyshakespeare (context 128) and one on
synthetic passkey text; measures each part, saves the numbers as JSON under --out, and writes
docs/inference.md with tables and PNG figures (docs/inference/*.png). `--render-only` redraws the
report from saved JSON without measuring again.
"""
from __future__ import annotations

import contextlib
import random
import time
from pathlib import Path

import numpy as np
import torch

from .. import config
from . import common
from ..options import COUNT, NONNEG_INT

NAME = "inference"
HELP = "LM-Infinite, kNN-LM, layer voids, beam / conditional beam / in-context navigation, measured"

PARTS = ("lminfinite", "knn", "voids", "decoding")
MODEL = config.Config(
    model=config.ModelConfig(n_layers=4, d_model=128, n_heads=4, context=128),
    tokenizer=config.TokenizerConfig(kind="char"),
    data=config.DataConfig(corpus="tinyshakespeare"),
    train=config.TrainConfig(max_steps=2000, batch_size=16, lr=3e-3, warmup_steps=100, dtype="float32",
                             eval_every=500, ckpt_every=1000, progress=False, device="cpu"))
PASSKEY_MODEL = config.Config(  # data.corpus: the passkey documents written under --out
    model=config.ModelConfig(n_layers=2, d_model=128, n_heads=4, context=128),
    tokenizer=config.TokenizerConfig(kind="char"),
    train=config.TrainConfig(max_steps=3000, batch_size=16, lr=2e-3, warmup_steps=100, dtype="float32",
                             eval_every=500, ckpt_every=500, progress=False, device="cpu"))
# --quick: both models tiny, and every measurement on a fraction of its data
QUICK_MODEL = {"model": {"n_layers": 2, "d_model": 64}, "train": {"max_steps": 30, "eval_batches": 2}}
QUICK_PASSKEY_MODEL = {"model": {"d_model": 64}, "train": {"max_steps": 10, "eval_batches": 2}}
QUICK_TOKENS = {"eval_tokens": 1000, "knn_tokens": 5000}
PASSKEY_RUN = "passkey-char"
RESULTS_COPY = "inference-results.json"  # beside inference.md
PASSKEY_DEPTHS = (0.1, 0.5, 0.9, 1.0)   # 1.0: the key right before the question, within n_local at any length
# Decoding speed: the trained model above and a randomly initialised larger one (speed does not
# depend on the weights); the trained one at batch 1 and 16, the larger one at batch 1.
SPEED_MODELS = {"medium": dict(n_layers=6, d_model=384, n_heads=6, context=128, vocab_size=256)}
SPEED_MULTIPLIERS = (1, 2, 4, 8, 16, 32, 64)
SPEED_BATCH16_UP_TO = 32   # longest length at batch 16: beyond it 16 copied vanilla caches outgrow a small machine
LONG_WINDOWS = 4           # perplexity windows per length: each vanilla window at the longest length is one long forward
LONG_MULTIPLIERS = (1, 2, 4, 8, 16, 32, 64, 128)   # perplexity windows, in training contexts
PASSKEY_MULTIPLIERS = (1, 2, 4, 8)
QUICK_LONG = (1, 2, 4)
VOID_ITEMS, VOID_ITEMS_QUICK = 200, 8   # multiple-choice items from the held-out text


def add_arguments(p) -> None:
    p.add_argument("--out", default="runs/infer", help="models, datastores and JSON results (default runs/infer)")
    p.add_argument("--docs", default="docs", help="where inference.md and inference/*.png go")
    p.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of: " + ", ".join(PARTS))
    p.add_argument("--threads", type=COUNT, default=1, help="torch threads (default 1: fair on a shared CPU)")
    p.add_argument("--steps", type=COUNT, default=MODEL.train.max_steps,
                   help=f"training steps of the tinyshakespeare model (default {MODEL.train.max_steps})")
    p.add_argument("--passkey-steps", type=COUNT, default=PASSKEY_MODEL.train.max_steps,
                   help=f"training steps of the passkey model (default {PASSKEY_MODEL.train.max_steps})")
    p.add_argument("--eval-tokens", type=COUNT, default=20000, help="held-out tokens for perplexity-type figures")
    p.add_argument("--knn-tokens", type=NONNEG_INT, default=0, help="cap on datastore tokens (0 = the whole train split)")
    p.add_argument("--render-only", action="store_true", help="write the report from saved JSON only")
    p.add_argument("--quick", action="store_true", help="a smoke run: tiny models and a fraction of every measurement"
                                                            " (" + ", ".join(f"--{k.replace('_', '-')} {v}"
                                                                             for k, v in QUICK_TOKENS.items()) + ")")


# --- parts -----------------------------------------------------------------------------------
def measure_lminfinite(model, tokenizer, cfg, out: Path, args) -> dict:
    from ..eval import passkey
    from ..eval.long import evaluate_long

    val = common.token_split(cfg, tokenizer)[1]
    res = {"long": evaluate_long(model, val, tokenizer.token_nbytes(), QUICK_LONG if args.quick else LONG_MULTIPLIERS,
                                 n_windows=2 if args.quick else LONG_WINDOWS, n_global=10)}
    res["speed"] = measure_speed(model, args)
    corpus = out / "passkey.txt"
    if not corpus.is_file():
        corpus.write_text(passkey.corpus(4000, 200, seed=0, answers=3), encoding="utf-8")
    t0 = time.perf_counter()
    pk_cfg = common.configured(PASSKEY_MODEL, data=dict(corpus=str(corpus)),
                             train=dict(threads=args.threads, max_steps=args.passkey_steps))
    if args.quick:
        pk_cfg = common.configured(pk_cfg, **QUICK_PASSKEY_MODEL)
    pk_model, pk_tok, pk_cfg = common.train_or_reuse(pk_cfg, out / PASSKEY_RUN)
    ctx = pk_model.cfg.context
    res["passkey_model"] = {"layers": pk_model.cfg.n_layers, "d_model": pk_model.cfg.d_model, "context": ctx,
                            "params": pk_model.num_params(), "steps": trained_steps(out / PASSKEY_RUN),
                            "batch": pk_cfg.train.batch_size, "train_or_load_s": time.perf_counter() - t0,
                            "corpus": "passkey.corpus(4000, 200, seed=0, answers=3)",
                            **_last_val(out / PASSKEY_RUN)}
    rows = []
    for method in ("vanilla", "lminfinite"):
        rows += passkey.evaluate(pk_model, pk_tok, [m * ctx for m in (QUICK_LONG if args.quick else PASSKEY_MULTIPLIERS)],
                                 n_per_length=1 if args.quick else 20, depths=PASSKEY_DEPTHS,
                                 method=method, n_global=10, seed=1)
    res["passkey"] = rows
    return res


def measure_speed(model, args) -> list[dict]:
    """Decoding tok/s, vanilla vs LM-Infinite, per model x batch x prompt length (see decode_speed_table)."""
    from ..config import ModelConfig
    from ..eval.long import decode_speed_table
    from ..model import Transformer

    models = {"trained": model}
    for name, kw in {} if args.quick else SPEED_MODELS.items():
        torch.manual_seed(0)
        models[name] = Transformer(ModelConfig(**kw)).eval()
    # the larger model at batch 1 only: its long batch-16 prefills would dominate the part's time
    cells = {"trained": [((1, 8), (1, 16))] if args.quick else [
        (SPEED_MULTIPLIERS, (1,)), (tuple(m for m in SPEED_MULTIPLIERS if m <= SPEED_BATCH16_UP_TO), (16,))],
        **{name: [(SPEED_MULTIPLIERS, (1,))] for name in SPEED_MODELS}}
    rows = []
    for name, m in models.items():
        for mults, batches in cells[name]:
            for r in decode_speed_table(m, mults, batches, n_new=8 if args.quick else 32, repeats=1 if args.quick else 5,
                                        n_global=10):
                rows.append({"model": name, "params": m.num_params(), "layers": m.cfg.n_layers, "d_model": m.cfg.d_model,
                             **r})
    return rows


def trained_steps(run: Path) -> int:
    """The step of the checkpoint a run is loaded from (a run stopped early has fewer than max_steps)."""
    from ..checkpoint import read_state, resolve

    return int(read_state(resolve(run))["step"])


def _last_val(run: Path) -> dict:
    rec = common.last_record(run, "val_loss")
    return {"val_loss": rec["val_loss"], "train_minutes": rec.get("elapsed_s", 0) / 60} if rec else {}


def measure_knn(model, tokenizer, cfg, out: Path, args) -> dict:
    from ..infer import knnlm

    res = {}
    nbytes = tokenizer.token_nbytes()
    for name, corpus in (("in-domain (tinyshakespeare)", None), ("new domain (english-prose)", "english-prose")):
        store_dir = out / ("knn-shakespeare" if corpus is None else "knn-prose")
        train, val = common.token_split(cfg, tokenizer, corpus)
        if args.knn_tokens:
            train = train[: args.knn_tokens + 1]
        t0 = time.perf_counter()
        if not store_dir.exists():
            knnlm.build(model, train, store_dir, meta={"data": corpus or cfg.data.corpus, "split": "train"})
        build_s = time.perf_counter() - t0
        store = knnlm.Datastore.load(store_dir)
        val = val[: args.eval_tokens + 1]
        t0 = time.perf_counter()
        nb = knnlm.target_neighbours(model, store, val, k=1024)
        search_s = time.perf_counter() - t0
        byte_total = float(nbytes[val[1:]].sum())
        grid = []
        for temp in (1.0, 3.0, 10.0, 30.0):
            for lmbda in (0.1, 0.25, 0.5):
                mixed = knnlm.mix_target_logprobs(nb, lmbda, temp).numpy()
                r = knnlm.per_token_report(nb["base"].numpy(), mixed, byte_total)
                grid.append({"temperature": temp, "lmbda": lmbda, **r})
        res[name] = {"entries": len(store), "index": store.meta["index"], "eval_tokens": len(val) - 1,
                     "build_s": build_s, "search_s": search_s, "grid": grid}
    # The critique's third measurement: entropy of p_kNN and p_LM as generated text grows.
    store = knnlm.Datastore.load(out / "knn-shakespeare")
    best = min(res["in-domain (tinyshakespeare)"]["grid"], key=lambda r: r["knn"]["loss"])
    val = common.token_split(cfg, tokenizer)[1]
    rng = random.Random(0)
    traces = []
    for i in range(2 if args.quick else 6):
        s = rng.randrange(0, len(val) - 64)
        rec: list = []
        knnlm.generate_ids(model, store, val[s:s + 32].tolist(), 64 if args.quick else 384, best["lmbda"], 1024, best["temperature"],
                           temperature=1.0, seed=i, record=rec)
        traces.append(rec)
    res["entropy"] = {"lmbda": best["lmbda"], "temperature": best["temperature"], "samples": len(traces),
                      "h_lm": np.mean([[r["h_lm"] for r in t] for t in traces], 0).tolist(),
                      "h_knn": np.mean([[r["h_knn"] for r in t] for t in traces], 0).tolist()}
    return res


def _prompts(tokenizer, ids: np.ndarray, n: int, length: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = rng.randrange(0, len(ids) - length)
        out.append(tokenizer.decode(ids[s:s + length].tolist()))
    return out


VOID_ALPHAS = (0.2, 0.5, 0.8)   # 0.8: the paper's; lower alphas mark fewer layers void


def measure_voids(model, tokenizer, cfg, out: Path, args) -> dict:
    """bpb and a multiple-choice score with voids detected / answered from the last active layer /
    skipped, per alpha; the share of layer updates skipped and the wall time of each evaluation;
    the first-k-layers models as the compute-saving baseline at the same depth."""
    from ..eval.choice import items_from_documents, score_items
    from ..eval.perplexity import evaluate_ids
    from ..infer.generate import generate
    from ..infer.voids import LayerVoids, first_layers

    val = common.token_split(cfg, tokenizer)[1][: args.eval_tokens + 1]
    nbytes = tokenizer.token_nbytes()
    held = tokenizer.decode(common.token_split(cfg, tokenizer)[1].tolist())
    items = items_from_documents([held], n_items=VOID_ITEMS_QUICK if args.quick else VOID_ITEMS, n_choices=4,
                                 context_chars=64, continuation_chars=32, seed=0)

    def scored(make_context):
        seconds = []
        for _ in range(2):  # the faster of two passes: other jobs on a shared CPU only ever add time
            t0 = time.perf_counter()
            with make_context() as lv:
                r = evaluate_ids(model, val, nbytes)
            seconds.append(time.perf_counter() - t0)
        seconds = min(seconds)
        with make_context():
            mc = score_items(model, tokenizer, items, batch_size=16)
        row = {"bpb": r["bpb"], "ppl": r["ppl"], "eval_s": seconds, "mc_acc": mc["acc"], "mc_acc_norm": mc["acc_norm"]}
        if isinstance(lv, LayerVoids):
            row.update(void_share=lv.void_share(), active_rate=lv.rates()["prompt"])
        return row

    plain = scored(contextlib.nullcontext)
    res = {"alpha": 0.8, "items": len(items), "eval_tokens": len(val) - 1, "plain": plain, "quality": [],
           "first_layers": []}
    for alpha in VOID_ALPHAS:
        for mode in ("detect", "last", "skip"):
            res["quality"].append({"alpha": alpha, "mode": mode, **scored(lambda: LayerVoids(model, alpha, mode))})
    for k in range(1, model.cfg.n_layers):
        res["first_layers"].append({"layers": k, **scored(lambda: first_layers(model, k))})
    # 32 + 96 tokens fit the context: no sliding re-encode, so every later call is one generated token.
    prompts = _prompts(tokenizer, val, 4, 32, seed=3)
    new = 96
    rates, speeds = [], {"plain": [], "voids": []}
    for i, p in enumerate(prompts):
        t0 = time.perf_counter()
        n = len(tokenizer.encode(generate(model, tokenizer, p, max_new_tokens=new, temperature=0.8, seed=i)))
        speeds["plain"].append(n / (time.perf_counter() - t0))
        with LayerVoids(model, 0.8, "last") as lv:
            t0 = time.perf_counter()
            generate(model, tokenizer, p, max_new_tokens=new, temperature=0.8, seed=i)
            speeds["voids"].append(n / (time.perf_counter() - t0))
        rates.append(lv.rates())
        if i == 0:  # one example for the heat map: tokens x layers, prompt then generation
            res["heatmap"] = {"prompt_tokens": int(lv.records[0][1].shape[1]),
                              "active": torch.cat([m[0] for _, m in lv.records]).int().tolist()}
    res["rates"] = {ph: np.mean([r[ph] for r in rates], 0).tolist() for ph in ("prompt", "generation")}
    res["speed"] = {k: float(np.median(v)) for k, v in speeds.items()}
    return res


def measure_decoding(model, tokenizer, cfg, out: Path, args) -> dict:
    from ..eval import diversity
    from ..infer import degeneracy
    from ..infer.beam import beam_search
    from ..infer.generate import generate
    from ..infer.icn import navigate

    train, val = common.token_split(cfg, tokenizer)
    clf, clf_stats = degeneracy.train_on_samples(model, tokenizer,
                                                 _prompts(tokenizer, train, 3 if args.quick else 12, 48, seed=5),
                                                 max_new_tokens=30 if args.quick else 100)
    clf.save(out / "degeneracy.json")
    attribute = degeneracy.attribute_fn(clf, tokenizer)
    prompts = _prompts(tokenizer, val, 2 if args.quick else 12, 48, seed=7)
    n, new = 4, 20 if args.quick else 100

    def lp_per_token(prompt: str, text: str) -> float:
        ids, cont = tokenizer.encode(prompt), tokenizer.encode(text)
        if not cont:
            return float("nan")
        x = torch.tensor([(ids + cont)[-model.cfg.context:]])
        with torch.no_grad():
            lp = torch.log_softmax(model(x)[0][0].float(), -1)
        k = min(len(cont), x.shape[1] - 1)
        tgt = x[0, -k:]
        return float(lp[-k - 1:-1].gather(-1, tgt[:, None]).mean())

    methods = {
        "sampling (T=0.8)": lambda p: [generate(model, tokenizer, p, new, temperature=0.8, seed=s) for s in range(n)],
        "greedy": lambda p: [generate(model, tokenizer, p, new, temperature=0)],
        "beam 4": lambda p: [tokenizer.decode(h.ids) for h in beam_search(
            model, tokenizer.encode(p), new, 4, eot_id=tokenizer.eot_id)[:n]],
        "conditional beam 4": lambda p: [tokenizer.decode(h.ids) for h in beam_search(
            model, tokenizer.encode(p), new, 4, eot_id=tokenizer.eot_id, attribute=attribute)[:n]],
        "in-context navigation (4)": lambda p: [a.text for a in navigate(
            model, tokenizer, p, n, new, stop=("\n\n",), explored_format="{answer}\n\n", ask_format="{question}")],
    }
    rows = []
    for name, fn in methods.items():
        t0 = time.perf_counter()
        outs = [fn(p) for p in prompts]
        secs = time.perf_counter() - t0
        texts = [t for o in outs for t in o]
        per_prompt = [diversity.summary(o) for o in outs]
        rows.append({"method": name, "outputs": len(texts),
                     "distinct_2_within_prompt": float(np.mean([s["distinct_2"] for s in per_prompt])),
                     **{k: v for k, v in diversity.summary(texts).items() if k != "n"},
                     "logprob_per_token": float(np.nanmean([lp_per_token(p, t) for p, o in zip(prompts, outs) for t in o])),
                     "seconds": secs, "example": outs[0][0][:160]})
    return {"classifier": clf_stats, "rows": rows, "prompt_example": prompts[0], "prompts": len(prompts),
            "new_tokens": new}


MEASURE = {"lminfinite": measure_lminfinite, "knn": measure_knn, "voids": measure_voids, "decoding": measure_decoding}


def run(args) -> int:
    from .inference_report import claims_of, write_report

    parts = common.names(args.parts, PARTS, "--parts", "part")
    out = Path(args.out)
    results_path = out / "results.json"
    committed = Path(args.docs) / RESULTS_COPY
    # Parts not measured now keep their numbers: from --out's results, else from the committed copy.
    seed = results_path if results_path.is_file() or args.render_only else committed if committed.is_file() else None
    results = common.read_json(seed) if seed else {}
    if not args.render_only:
        out.mkdir(parents=True, exist_ok=True)
        common.use_quick(args, QUICK_TOKENS)
        torch.set_num_threads(args.threads)
        cfg = common.configured(MODEL, train=dict(threads=args.threads, max_steps=args.steps))
        if args.quick:
            cfg = common.configured(cfg, **QUICK_MODEL)
        model, tokenizer, cfg = common.train_or_reuse(cfg, out / "shakespeare-char")
        machine = {**common.machine(), "threads": args.threads, "params": model.num_params()}
        for part in PARTS:  # parts measured before parts carried their own model record
            if part in results and "model" not in results[part]:
                results[part]["model"], results[part]["machine"] = results.get("model", {}), results.get("machine", {})
        described = {"layers": cfg.model.n_layers, "d_model": cfg.model.d_model, "heads": cfg.model.n_heads,
                     "context": cfg.model.context, "steps": trained_steps(out / "shakespeare-char"),
                     "batch": cfg.train.batch_size}
        for part in parts:
            print(f"measuring {part} ...")
            t0 = time.perf_counter()
            torch.manual_seed(0)
            results[part] = MEASURE[part](model, tokenizer, cfg, out, args)
            results[part]["wall_s"] = time.perf_counter() - t0
            # each part records the model and command it was measured with: parts may come from different runs
            results[part]["model"], results[part]["machine"] = described, machine
            results[part]["command"] = " ".join(
                ["nice lmlab experiment inference --parts", args.parts]
                + [f"--{k.replace('_', '-')} {getattr(args, k)}" for k, d in
                   (("steps", MODEL.train.max_steps), ("passkey_steps", PASSKEY_MODEL.train.max_steps))
                   if getattr(args, k) != d and not args.quick] + (["--quick"] if args.quick else []))
            results["machine"], results["model"] = machine, described
            results["command"] = results[part]["command"]
            results["claims"] = claims_of(results)
            common.write_json(results_path, results)
    results["claims"] = claims_of(results)  # the rules of the current code, also for --render-only
    common.write_json(committed, results)  # the committed copy the claims index reads
    path = write_report(results, Path(args.docs))
    print(f"wrote {path}")
    return 0
