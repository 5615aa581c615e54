"""Inference-time options for `lmlab generate` and `lmlab eval` (LM-Infinite, kNN-LM, layer voids,
beam and conditional beam search, in-context navigation, hidden-state optimisation, long-context and
passkey evals).

The verbs call `add_*_options` when building their parser and `run_*_options` before their
default path; a run function returns None when none of these options was given.
"""
from __future__ import annotations

import argparse
import sys

from ..config import Range
from ..errors import LmlabError
from ..jsonio import dumps
from .common import COUNT, NONNEG_FLOAT, NONNEG_INT, POSITIVE_FLOAT, existing, ranged

HSO_LR = 30.0  # --hso-lr default: the middle of the step sizes docs/experiments/hso.md compares


def _add_lminfinite(p) -> None:
    p.add_argument("--n-global", type=NONNEG_INT, default=10, help="LM-Infinite: starting tokens every query sees")
    p.add_argument("--n-local", type=NONNEG_INT, default=0, help="LM-Infinite: recent tokens every query sees (0 = context)")


def _add_knn(p) -> None:
    p.add_argument("--knn", metavar="STORE", type=existing("kNN datastore", directory=True),
                   help="interpolate with a kNN-LM datastore (`lmlab knn build`)")
    p.add_argument("--lmbda", type=ranged(float, Range(0, 1)), default=0.25, help="kNN-LM interpolation weight")
    p.add_argument("--k", type=COUNT, default=1024, help="kNN-LM neighbours")
    p.add_argument("--knn-temperature", type=POSITIVE_FLOAT, default=1.0, help="kNN-LM softmax temperature on -distance")


def _add_voids(p) -> None:
    p.add_argument("--voids", type=NONNEG_FLOAT, metavar="ALPHA", help="layer voids (L2 adaptive computation) with this alpha")
    p.add_argument("--void-mode", default="last", choices=["detect", "last", "skip"],
                   help="detect only, answer from the last non-void layer, or drop void layers' updates")


def _add_hso(p) -> None:
    p.add_argument("--hso", type=NONNEG_INT, metavar="STEPS", help="hidden-state optimisation: this many gradient "
                   "steps on the KV cache of the text seen so far before predicting (0 = off)")
    p.add_argument("--hso-lr", type=POSITIVE_FLOAT, default=HSO_LR, help="--hso: step size on the cache")


def _hso_setting(args):
    from ..infer.hso import Setting

    return Setting(args.hso, args.hso_lr)


def add_generate_options(p) -> None:
    g = p.add_argument_group("inference methods")
    g.add_argument("--beam", type=COUNT, help="beam search with this many beams (prints the best beam)")
    g.add_argument("--length-penalty", type=NONNEG_FLOAT, default=0.0, help="beam: divide log-prob by length**this")
    g.add_argument("--degeneracy", metavar="CLASSIFIER.json", type=existing("classifier file"),
                   help="conditional beam search: add log P(not degenerate | prefix) from this classifier")
    g.add_argument("--attribute-weight", type=NONNEG_FLOAT, default=1.0, help="conditional beam: weight of the classifier")
    g.add_argument("--icn", type=COUNT, metavar="N", help="in-context navigation: N different answers")
    g.add_argument("--lm-infinite", action="store_true", help="LM-Infinite attention (prompts and text of any length)")
    _add_lminfinite(g)
    _add_knn(g)
    _add_voids(g)
    _add_hso(g)


def _chosen(args, names) -> list[str]:
    return [n for n in names if getattr(args, n.lstrip("-").replace("-", "_"), None) not in (None, False)]


def run_generate_options(args, model, tokenizer, prompt: str, kw: dict) -> int | None:
    picked = _chosen(args, ["--beam", "--icn", "--lm-infinite", "--knn", "--voids", "--hso"])
    if args.degeneracy and not args.beam:
        raise LmlabError("--degeneracy needs --beam N (it steers beam search)")
    if not picked:
        return None
    if len(picked) > 1:
        raise LmlabError(f"choose one of {', '.join(picked)} per run")
    out = sys.stdout.write
    if args.beam:
        from ..infer.beam import beam_generate

        attribute = None
        if args.degeneracy:
            from ..infer.degeneracy import DegeneracyClassifier, attribute_fn

            attribute = attribute_fn(DegeneracyClassifier.load(args.degeneracy), tokenizer)
        out(prompt + beam_generate(model, tokenizer, prompt, kw["max_new_tokens"], args.beam,
                                   length_penalty=args.length_penalty, attribute=attribute,
                                   attribute_weight=args.attribute_weight) + "\n")
    elif args.icn:
        from ..infer.icn import navigate

        for i, a in enumerate(navigate(model, tokenizer, prompt, args.icn, kw["max_new_tokens"],
                                       stop=kw["stop"] or ("\n",))):
            out(f"{i + 1}. {a.text}\n")
    elif args.lm_infinite:
        from ..infer import lminfinite

        ids = list(lminfinite.sample_ids(model, tokenizer.encode(prompt), kw["max_new_tokens"], kw["temperature"],
                                         kw["top_k"], kw["top_p"], kw["seed"], args.n_global, args.n_local or None))
        out(prompt + tokenizer.decode(_until_eot(ids, tokenizer)) + "\n")
    elif args.knn:
        from ..infer import knnlm
        from ..infer.generate import generate

        step = knnlm.knn_step(model, knnlm.Datastore.load(args.knn), args.lmbda, args.k, args.knn_temperature)
        out(prompt + generate(model, tokenizer, prompt, **kw, step=step) + "\n")  # top-k/p, penalty, stop: as plain
    elif args.hso:
        from ..infer import hso
        from ..infer.generate import generate

        out(prompt + generate(model, tokenizer, prompt, **kw, prefill=hso.prefill(_hso_setting(args))) + "\n")
    else:
        from ..infer.generate import generate
        from ..infer.voids import LayerVoids

        with LayerVoids(model, args.voids, args.void_mode) as lv:
            out(prompt + generate(model, tokenizer, prompt, **kw) + "\n")
        print(dumps({"active_rate": lv.rates()}), file=sys.stderr)
    return 0


def _until_eot(ids, tokenizer):
    return ids[:ids.index(tokenizer.eot_id)] if tokenizer.eot_id in ids else ids


def add_eval_options(p) -> None:
    g = p.add_argument_group("inference methods")
    g.add_argument("--long", action="store_true", help="bits per byte in windows at 1x,2x,4x,8x the context, "
                   "vanilla and LM-Infinite")
    g.add_argument("--multipliers", default="1,2,4,8", help="--long: window lengths as multiples of the context")
    g.add_argument("--n-windows", type=COUNT, default=4, help="--long: windows per length")
    g.add_argument("--task", help="a task instead of perplexity: passkey (by length and depth), a task directory "
                   "(`lmlab task make`), or a task name (its default test split)")
    g.add_argument("--lengths", default="", help="--task passkey: prompt lengths in tokens (default 1x,2x,4x,8x context)")
    g.add_argument("--examples", type=COUNT, default=5, help="--task passkey: examples per length and depth")
    g.add_argument("--method", default="both", choices=["vanilla", "lminfinite", "both"],
                   help="--long / --task passkey: which attention to run")
    _add_lminfinite(g)
    _add_knn(g)
    g.add_argument("--temperature", dest="knn_temperature", type=POSITIVE_FLOAT, help=argparse.SUPPRESS)  # old name
    _add_voids(g)
    _add_hso(g)
    g.add_argument("--hso-chunk", type=NONNEG_INT, default=0, help="--hso: tokens predicted per optimisation "
                   "(0 = a quarter of the context)")


def _ints(text: str, name: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise LmlabError(f"{name} must be comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise LmlabError(f"{name} must list positive integers, got {text!r}")
    return vals


def run_eval_options(args, model, tokenizer, cfg, ids) -> dict | None:
    picked = _chosen(args, ["--long", "--task", "--knn", "--voids", "--hso"])
    if not picked:
        return None
    if len(picked) > 1:
        raise LmlabError(f"choose one of {', '.join(picked)} per run")
    methods = ("vanilla", "lminfinite") if args.method == "both" else (args.method,)
    n_local = args.n_local or None
    if args.long:
        from ..eval.long import evaluate_long

        return evaluate_long(model, ids, tokenizer.token_nbytes(), _ints(args.multipliers, "--multipliers"),
                             args.n_windows, methods, args.n_global, n_local)
    if args.task == "passkey":
        from ..eval import passkey

        ctx = model.cfg.context
        lengths = _ints(args.lengths, "--lengths") if args.lengths else [ctx, 2 * ctx, 4 * ctx, 8 * ctx]
        rows = []
        for m in methods:
            rows += passkey.evaluate(model, tokenizer, lengths, args.examples, method=m, n_global=args.n_global,
                                     n_local=n_local)
        return {"task": "passkey", "rows": rows}
    if args.task:
        from ..eval.tasks import score

        info, examples = score.load(args.task)
        limit = getattr(args, "limit", None)
        return score.evaluate(model, tokenizer, info, examples[:limit] if limit else examples, args.batch_size)
    if args.knn:
        from ..infer import knnlm

        return knnlm.evaluate(model, knnlm.Datastore.load(args.knn), ids, tokenizer.token_nbytes(), args.lmbda,
                              args.k, args.knn_temperature)
    if args.hso:
        from ..infer import hso

        return hso.evaluate(model, ids, tokenizer.token_nbytes(), args.hso_chunk or model.cfg.context // 4,
                            _hso_setting(args), args.batch_size)
    from ..eval.perplexity import evaluate_ids
    from ..infer.voids import LayerVoids

    with LayerVoids(model, args.voids, args.void_mode) as lv:
        result = evaluate_ids(model, ids, tokenizer.token_nbytes(), args.batch_size)
    return {**result, "voids": {"alpha": args.voids, "mode": args.void_mode, "active_rate": lv.rates()["prompt"]}}
