"""lm-evaluation-harness backend: any lmlab run as lm-eval model type `lmlab`.

    lmlab eval RUN --harness lmlab_continuation,lmlab_rolling [--num-fewshot N] [--limit N]
    lm_eval.simple_evaluate(model=LmlabLM("runs/sc"), tasks=[...])
    python -m lmlab.eval.harness run --model lmlab --model_args run=runs/sc --tasks lmlab_rolling

lm-eval (0.4.x) finds models only in its own registry, never through entry points, so this
module must be imported before lm-eval resolves `--model lmlab`; `python -m lmlab.eval.harness`
does that and then runs lm-eval's own command line.

Choices, each the same as lm-eval's own HF backend unless said:
- An empty context is the tokenizer's end-of-text id (every lmlab tokenizer has one, and
  training puts it between documents, so "start of a document" is what it means to the model).
- Rolling log-likelihood: lm_eval.utils.get_rolling_token_windows with context_len=1 and the
  model's context as window, each made disjoint: window k predicts tokens kC..kC+C-1 from the
  token before them. These are exactly the windows `lmlab eval --data` scores (lmlab.eval.
  perplexity tiles [end-of-text] + the text's ids the same way), and the byte count lm-eval
  divides by, the UTF-8 bytes of the document, is the bytes of the predicted tokens that
  lmlab eval divides by. The windows are also batched as lmlab eval batches them, so with the
  same batch size (`lmlab eval --harness` passes its --batch-size) the bits per byte of a
  one-document text are the same, up to the order of the float64 sums (tests/test_harness.py).
- generate_until decodes greedily (do_sample is refused), stops at any `until` string or at
  the end-of-text id, and slides the window past the context instead of cutting the prompt.
- Nothing reaches a hub: HF_DATASETS_OFFLINE / HF_HUB_OFFLINE are set before lm-eval loads,
  and a task whose data is not local fails with one line.
"""
from __future__ import annotations

import os

os.environ["HF_DATASETS_OFFLINE"] = "1"   # before `datasets` reads them, at lm_eval's import
os.environ["HF_HUB_OFFLINE"] = "1"

from ..errors import LmlabError  # noqa: E402

try:
    from lm_eval.api.model import TemplateLM
    from lm_eval.api.registry import register_model
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
except ImportError:
    raise LmlabError("the harness needs lm-evaluation-harness: pip install 'lmlab[eval]' "
                     "(or pip install lm-eval)") from None

import torch  # noqa: E402

from .likelihood import continuation_scores, greedy_tokens  # noqa: E402

DEFAULT_MAX_GEN_TOKS = 256


@register_model("lmlab")
class LmlabLM(TemplateLM):
    """An lmlab model for lm-eval. Give a run (or checkpoint) directory, or a loaded model and
    its tokenizer (model= and tokenizer=, e.g. a stub in tests)."""

    def __init__(self, run: str | None = None, model=None, tokenizer=None, device: str | None = "auto",
                 dtype: str = "float32", batch_size=16, max_gen_toks: int = DEFAULT_MAX_GEN_TOKS, **unused):
        super().__init__()
        if model is None:
            if not run:
                raise LmlabError("the lmlab model needs run=RUN_OR_CKPT (--model_args run=runs/NAME)")
            from ..checkpoint import load_model
            from ..device import pick_device
            from ..infer.prepare import for_inference

            if str(device).startswith("cuda") and not torch.cuda.is_available():
                device = "cpu"  # lm-eval's command line asks for cuda unless told otherwise
            model, tokenizer, _ = load_model(run, pick_device(device or "auto"))
            for_inference(model, dtype, next(model.parameters()).device)
        elif tokenizer is None:
            raise LmlabError("LmlabLM(model=...) needs its tokenizer too")
        self.model, self.tokenizer = model, tokenizer
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 16  # "auto" -> 16
        self.max_gen_toks = int(max_gen_toks)

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eot_id

    @property
    def max_length(self) -> int:
        return self.model.cfg.context

    def tok_encode(self, string: str, add_special_tokens=None, **kwargs) -> list[int]:
        return self.tokenizer.encode(string)

    def tok_decode(self, tokens) -> str:
        return self.tokenizer.decode(tokens)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        results = continuation_scores(self.model, [(ctx, cont) for _, ctx, cont in requests], self.batch_size)
        for (key, _, _), result in zip(requests, results):
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, result)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        totals = []
        for req in requests:
            windows = [make_disjoint_window(w) for w in
                       get_rolling_token_windows(self.tok_encode(req.args[0]), self.eot_token_id, self.max_length, 1)]
            # batched as lmlab.eval.perplexity batches them (full windows in order, the short last
            # one alone), so the logits are the very same numbers `lmlab eval` computes
            full = [w for w in windows if len(w[1]) == self.max_length]
            rest = [w for w in windows if len(w[1]) != self.max_length]
            scores = continuation_scores(self.model, full, self.batch_size) + continuation_scores(self.model, rest, 1)
            totals.append(sum(ll for ll, _ in scores))
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, totals[-1])
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        prompts, budgets, stops = [], [], []
        for context, gen_kwargs in (req.args for req in requests):
            kw = dict(gen_kwargs or {})
            if kw.get("do_sample") and float(kw.get("temperature", 1.0)) > 0:
                raise LmlabError("the lmlab backend decodes greedily; do_sample=true is not supported")
            until = kw.get("until") or []
            stops.append([until] if isinstance(until, str) else list(until))
            budgets.append(int(kw.get("max_gen_toks", self.max_gen_toks)))
            prompts.append(self.tok_encode(context) or [self.eot_token_id])

        def cut(i: int, tokens: list[int]) -> tuple[str, bool]:
            """The text before the first stop (end-of-text or an `until` string), and whether one came."""
            ended = self.eot_token_id in tokens
            text = self.tok_decode(tokens[:tokens.index(self.eot_token_id)] if ended else tokens)
            hits = [text.index(s) for s in stops[i] if s and s in text]
            return (text[:min(hits)], True) if hits else (text, ended)

        outs = greedy_tokens(self.model, prompts, budgets, self.batch_size, finished=lambda i, t: cut(i, t)[1])
        texts = []
        for i, (req, tokens) in enumerate(zip(requests, outs)):
            texts.append(cut(i, tokens)[0])
            self.cache_hook.add_partial("generate_until", req.args, texts[-1])
        return texts


def _names(tasks) -> list[str]:
    names = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip()]
    if not names:
        raise LmlabError("--harness needs at least one task name or task YAML path")
    return names


def _is_file_spec(name: str) -> bool:
    return name.endswith((".yaml", ".yml"))


def task_specs(names: list[str], task_manager) -> list:
    """Task names (lm-eval's, or lmlab's shipped ones) and paths to task YAML files, checked."""
    from lm_eval.tasks._yaml_loader import load_yaml

    specs = []
    for name in names:
        if _is_file_spec(name):
            if not os.path.isfile(name):
                raise LmlabError(f"task file {name} not found")
            specs.append(load_yaml(name, resolve_func=True))
        elif task_manager.match_tasks([name]):
            specs.append(name)
        else:
            from .tasks.harness_data import shipped_tasks

            raise LmlabError(f"unknown harness task {name!r}; lmlab's own: {', '.join(shipped_tasks())} "
                             f"(lm-eval's: `lm-eval ls tasks`), or give a path to a task YAML file")
    return specs


def evaluate(lm, tasks, num_fewshot: int | None = None, limit: int | None = None, **kwargs) -> dict:
    """lm_eval.simple_evaluate over lmlab's shipped tasks (their data made on first use) and any
    task names or YAML paths; returns lm-eval's output unchanged. lm-eval's own task index
    (slow to build: docs/evaluation.md) is read only when a name is neither lmlab's nor a file."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from .tasks.harness_data import prepare, shipped_tasks

    names = _names(tasks)
    ours = shipped_tasks()
    defaults = any(not _is_file_spec(n) and n not in ours for n in names)
    task_manager = TaskManager(include_path=str(prepare()), include_defaults=defaults)
    specs = task_specs(names, task_manager)
    try:
        return simple_evaluate(model=lm, tasks=specs, num_fewshot=num_fewshot, limit=limit,
                               task_manager=task_manager, log_samples=False, **kwargs)
    except (ConnectionError, OSError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise LmlabError(f"a task could not load its data offline (lmlab's harness never reaches a hub): "
                         f"{first}") from None


def run_cli(args) -> dict:
    """`lmlab eval RUN --harness TASKS`: lm-eval's `results` dict, unchanged, with what ran."""
    import json

    if args.limit is not None and args.limit < 1:
        raise LmlabError("--limit must be at least 1")
    if args.num_fewshot is not None and args.num_fewshot < 0:
        raise LmlabError("--num-fewshot must be 0 or more")
    lm = LmlabLM(args.run, device=args.device, dtype=args.dtype, batch_size=args.batch_size)
    out = evaluate(lm, args.harness, args.num_fewshot, args.limit)
    results = json.loads(json.dumps(out["results"], default=str))  # numpy scalars and the like -> JSON
    return {"run": args.run, "harness": args.harness, "num_fewshot": args.num_fewshot, "limit": args.limit,
            "results": results}


def main(argv=None) -> None:
    """lm-eval's own command line, with `--model lmlab` registered and lmlab's tasks included."""
    import sys

    from lm_eval.__main__ import cli_evaluate

    from .tasks.harness_data import prepare

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in ("-h", "--help") and "--include_path" not in argv:
        argv += ["--include_path", str(prepare())]
    sys.argv = ["lm-eval"] + argv
    cli_evaluate()


if __name__ == "__main__":
    main()
