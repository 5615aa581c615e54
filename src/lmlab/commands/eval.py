"""`lmlab eval RUN_OR_CKPT [--data PATH]`: one JSON object with loss, ppl, bpb, tokens."""
from __future__ import annotations

from .common import COUNT, NONNEG_INT, add_run_args, load_model_arg, print_json
from .inference_options import add_eval_options, run_eval_options


def register(sub) -> None:
    p = sub.add_parser("eval", help="loss, perplexity and bits per byte on a text or the validation split")
    add_run_args(p, dtype="weights/compute for the plain evaluation: float32 (default), bfloat16, int8, w8a8 (what "
                          "`lmlab generate --dtype` samples with), auto", dtype_default="float32")
    p.add_argument("--data", help="a UTF-8 text file, or a corpus spec (default: the run's validation split)")
    p.add_argument("--batch-size", type=COUNT, default=8)
    p.add_argument("--max-tokens", type=NONNEG_INT, default=0, help="evaluate at most this many tokens (0 = all)")
    p.add_argument("--calibration", action="store_true", help="add next-token expected calibration error (ECE)")
    p.add_argument("--calibration-png", metavar="PNG", help="--calibration: also draw the reliability diagram here")
    p.add_argument("--harness", metavar="TASKS", help="lm-evaluation-harness tasks (names or task YAML paths, "
                   "comma-separated); prints lm-eval's results")
    p.add_argument("--num-fewshot", type=NONNEG_INT, help="--harness: few-shot examples per prompt")
    p.add_argument("--limit", type=COUNT, help="--harness / --task: score at most this many examples per task")
    add_eval_options(p)
    p.set_defaults(func=run)


def eval_ids(args, tokenizer, cfg):
    """The ids to score: a given file/corpus, or the run's validation split."""
    import numpy as np

    from ..data.corpora import read_corpus
    from ..data.shards import encode_documents, token_splits

    if args.data:  # a text starts after an end-of-text, so its first token is scored too (as lm-eval does)
        ids = np.concatenate([[tokenizer.eot_id], encode_documents(
            read_corpus(args.data, cfg.data.text_field, cfg.data.cache_dir), tokenizer)])
    else:
        _, ids = token_splits(cfg, tokenizer)
    ids = np.asarray(ids, dtype=np.int64)
    return ids[: args.max_tokens + 1] if args.max_tokens else ids


def run(args) -> int:
    from ..eval.perplexity import evaluate_ids

    if args.harness:
        from ..eval.harness import run_cli

        print_json(run_cli(args))
        return 0
    model, tokenizer, cfg = load_model_arg(args.run, args.device)
    ids = eval_ids(args, tokenizer, cfg)
    if cfg.train.objective == "mlm":  # masked-token accuracy and pseudo-perplexity instead
        from ..eval.mlm import evaluate_mlm

        print_json({"data": args.data or "validation split",
                    **evaluate_mlm(model, tokenizer, ids, args.batch_size, rate=cfg.train.mask_rate)})
        return 0
    special = run_eval_options(args, model, tokenizer, cfg, ids)  # --long, --task, --knn, --voids
    if special is not None:
        print_json({"data": args.data or "validation split", **special})
        return 0
    from ..infer.prepare import for_inference

    for_inference(model, args.dtype, next(model.parameters()).device)
    result = evaluate_ids(model, ids, tokenizer.token_nbytes(), args.batch_size)
    if args.calibration:
        from ..eval.calibration import evaluate

        result["calibration"] = evaluate(model, ids, args.batch_size, png=args.calibration_png)
    print_json({"data": args.data or "validation split", **result, "dtype": args.dtype})
    return 0
