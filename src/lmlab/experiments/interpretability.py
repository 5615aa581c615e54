"""`lmlab experiment interpretability`: four papers' claims measured on models trained here.

Two runs, both on `--corpus` (default tinyshakespeare from ../shared/data), character tokens:
- the text model (`--text-layers` blocks): on the held-out last 10% of the corpus, the vocabulary
  key space and the ICN query shift (analysis/keys.py), trajectories through embedding space
  (analysis/lens.py), attention sinks, massive activations and the redistribution experiment with
  its control (analysis/sinks.py);
- the Laundry List model (two blocks): trained on the task's training examples with the loss on
  the answers only (`--laundry-data task`, data.task) after a warm-up on short lists (a curriculum:
  `--laundry-warmup-steps` on `--laundry-warmup-lengths`, then `lmlab finetune`'s machinery carries
  the weights on to all lengths; mixing long lists in from the start leaves the task unlearned),
  or on the corpus's training part *mixed*
  with the examples (`mix`: one example line after every `--mix-chars` characters of text, the
  loss on every token); then scored on
  the task's test split by list length, its mover and inhibition heads found by composition score
  and the channel scaled against a random-direction control (analysis/laundry.py).
Numbers go to docs/experiments/interpretability-results.json (with the `claims` list), the page
and its figures are drawn from it (interpretability_report.py). Finished runs are reused.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from . import common
from ..options import COUNT, NONNEG_FLOAT, NONNEG_INT, POSITIVE_FLOAT

NAME = "interpretability"
HELP = "Talking Heads / Laundry List, trajectories, vocabulary key space, attention sinks, measured here"
QUICK = dict(text_steps=4, laundry_steps=4, text_layers=2, d_model=32, context=64, laundry_d_model=32,
             laundry_context=32, batch_size=4, laundry_batch_size=8, laundry_examples=200, laundry_test=40,
             laundry_warmup_steps=4, laundry_warmup_examples=100, laundry_warmup_batch_size=8,
             eval_tokens=256, icn_prompts=2, icn_answers=2, controls=1)
LAUNDRY_DATA = ("task", "mix")


def add_arguments(p) -> None:
    p.add_argument("--work", default="runs/interpretability", help="where the runs and raw analyses go")
    p.add_argument("--doc", default="docs/experiments/interpretability.md")
    p.add_argument("--corpus", default="tinyshakespeare", help="data.corpus of both runs")
    p.add_argument("--text-steps", type=COUNT, default=600)
    p.add_argument("--text-layers", type=COUNT, default=4)
    p.add_argument("--laundry-data", choices=LAUNDRY_DATA, default="task",
                   help="task: the examples alone, the loss on the answers; mix: text mixed with them, loss on all")
    p.add_argument("--laundry-steps", type=COUNT, default=400, help="steps on all the lengths (after the warm-up)")
    p.add_argument("--laundry-warmup-steps", type=NONNEG_INT, default=600,
                   help="--laundry-data task: steps on short lists first (0: none, all lengths from the start)")
    p.add_argument("--laundry-warmup-lengths", default="2,3", help="list lengths of the warm-up")
    p.add_argument("--laundry-warmup-examples", type=COUNT, default=3500,
                   help="warm-up training examples (short lists have few distinct inputs: 2,3 of 10 items, ~4480)")
    p.add_argument("--laundry-warmup-batch-size", type=COUNT, default=64)
    p.add_argument("--laundry-examples", type=COUNT, default=40000, help="Laundry List training examples")
    p.add_argument("--laundry-test", type=COUNT, default=600, help="test examples (validation: half as many)")
    p.add_argument("--laundry-d-model", type=COUNT, default=64)
    p.add_argument("--laundry-context", type=COUNT, default=32)
    p.add_argument("--laundry-batch-size", type=COUNT, default=128)
    p.add_argument("--laundry-lr", type=POSITIVE_FLOAT, default=3e-3)
    p.add_argument("--mix-chars", type=COUNT, default=60, help="--laundry-data mix: characters of text between two examples")
    p.add_argument("--d-model", type=COUNT, default=128)
    p.add_argument("--context", type=COUNT, default=256)
    p.add_argument("--batch-size", type=COUNT, default=16)
    p.add_argument("--eval-tokens", type=COUNT, default=4096, help="held-out tokens the text analyses read")
    p.add_argument("--icn-prompts", type=COUNT, default=16)
    p.add_argument("--icn-answers", type=COUNT, default=4)
    p.add_argument("--controls", type=COUNT, default=4, help="random directions in the intervention's control")
    p.add_argument("--max-minutes", type=NONNEG_FLOAT, default=0.0,
                   help="wall-clock budget of each training run (0 = none); the steps reached are reported")
    p.add_argument("--laundry-vocab", type=COUNT, default=10, help="item symbols of the task")
    p.add_argument("--laundry-lengths", default="2,3,4,5,6", help="list lengths of the task")
    p.add_argument("--seed", type=NONNEG_INT, default=1337)
    p.add_argument("--threads", type=NONNEG_INT, default=0, help="torch threads (0 = default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="a smoke run: tiny models, a few steps each")
    p.add_argument("--render-only", action="store_true", help="rewrite the page from the results JSON beside it")


def results_path(doc: Path) -> Path:
    return doc.parent / "interpretability-results.json"


def settings(args) -> dict:
    keys = ("work", "corpus", "text_steps", "text_layers", "laundry_data", "laundry_steps", "laundry_examples",
            "laundry_test", "laundry_warmup_steps", "laundry_warmup_lengths",
            "laundry_warmup_examples", "laundry_warmup_batch_size", "laundry_d_model", "laundry_context", "laundry_batch_size", "laundry_lr", "mix_chars", "d_model", "context", "batch_size", "eval_tokens", "icn_prompts", "icn_answers", "controls", "seed",
            "max_minutes", "laundry_vocab", "laundry_lengths", "quick")
    return {k: getattr(args, k) for k in keys}


def run_config(args, corpus: str, layers: int, steps: int, d_model: int, context: int, task: str = "",
               batch_size: int | None = None, lr: float = 2e-3):
    from .. import config

    return common.configured(
        config.load("tiny"),
        model=dict(n_layers=layers, d_model=d_model, n_heads=4, context=context),
        data=dict(corpus=corpus, task=task),
        train=dict(max_steps=steps, batch_size=batch_size or args.batch_size, lr=lr, warmup_steps=min(100, steps // 10 + 1),
                   eval_every=max(1, steps // 4), eval_batches=8, ckpt_every=steps, seed=args.seed, max_minutes=args.max_minutes,
                   device=args.device, threads=args.threads, dtype="float32", progress=False))


def laundry_overrides(args, lengths: str | None = None, n_train: int | None = None) -> list[str]:
    """The task generator's settings of the main task, or with other lengths / size (the warm-up's)."""
    return [f"n_train={n_train or args.laundry_examples}", f"n_validation={max(1, args.laundry_test // 2)}",
            f"n_test={args.laundry_test}", f"vocab={args.laundry_vocab}",
            f"lengths={lengths or args.laundry_lengths}", f"seed={args.seed}"]


def laundry_task(work: Path, args, name: str = "laundry-task", lengths: str | None = None,
                 n_train: int | None = None) -> Path:
    """The task directory (train / validation / test), made once."""
    from ..eval import tasks

    out = work / name
    if not (out / "test.jsonl").is_file():
        tasks.make("laundry", laundry_overrides(args, lengths, n_train), out)
    return out


def check_laundry(args) -> None:
    """Refuse bad Laundry List settings before anything is written or trained."""
    from ..errors import LmlabError
    from ..eval import tasks

    if args.laundry_data == "mix" and args.laundry_warmup_steps:
        raise LmlabError("--laundry-data mix trains on the mixed text from scratch, without the short-list "
                         "warm-up: add --laundry-warmup-steps 0")
    gen = tasks.get("laundry")
    gen.settings(laundry_overrides(args))
    if args.laundry_warmup_steps:
        try:
            gen.settings(laundry_overrides(args, args.laundry_warmup_lengths, args.laundry_warmup_examples))
        except LmlabError as e:
            raise LmlabError(f"--laundry-warmup-lengths {args.laundry_warmup_lengths}: {e}") from None


def train_laundry(args, work: Path, task_dir: Path, corpus: str, task: str):
    """(model, tokenizer, config) of the Laundry List run in work/laundry: with a warm-up, a run on
    short lists (work/laundry-warmup) fine-tuned on all lengths for --laundry-steps (the finetune
    machinery: the same loop resumed from the warm-up's weights, the loss on the answers only);
    without one, --laundry-steps from scratch. Finished runs are reused."""
    from ..checkpoint import load_model
    from ..train.finetune import finetune

    out = work / "laundry"
    if not args.laundry_warmup_steps:
        return common.train_or_reuse(
            run_config(args, corpus, 2, args.laundry_steps, args.laundry_d_model, args.laundry_context, task=task,
                       batch_size=args.laundry_batch_size, lr=args.laundry_lr), out)
    short = laundry_task(work, args, "laundry-warmup-task", args.laundry_warmup_lengths, args.laundry_warmup_examples)
    common.train_or_reuse(
        run_config(args, corpus, 2, args.laundry_warmup_steps, args.laundry_d_model, args.laundry_context,
                   task=str(short.resolve()), batch_size=args.laundry_warmup_batch_size, lr=args.laundry_lr),
        work / "laundry-warmup")
    if (_last(out, "step") or 0) < args.laundry_steps:  # finetune writes its step-0 checkpoint first
        shutil.rmtree(out, ignore_errors=True)
        finetune(work / "laundry-warmup", out, task_dir, args.laundry_steps, args.laundry_lr,
                 args.laundry_batch_size, args.seed, args.device, echo=common.quiet)
    return load_model(out)


def mixed_corpus(text: str, task_dir: Path, path: Path, every: int) -> Path:
    """Text with one task example line (input, delimiter, target) after every `every` characters
    (to the next line end); examples left over when the text runs out follow at the end, text left
    over when the examples run out is not used."""
    from ..data.task_files import read_info, read_split

    if path.is_file():
        return path
    delimiter = read_info(task_dir).delimiter
    lines = [f"{ex.input}{delimiter}{ex.target}\n" for ex in read_split(task_dir / "train.jsonl")]
    pieces, at = [], 0
    for line in lines:
        if at < len(text):
            cut = text.find("\n", at + every)
            cut = len(text) if cut < 0 else cut + 1
            pieces.append(text[at:cut])
            at = cut
        pieces.append(line)
    common.write_text(path, "".join(pieces))
    return path


def text_measures(model, tokenizer, ids, out: Path, args) -> dict:
    from ..analysis import report

    results = {}
    for what, call in (
        ("keys", lambda d: report.keys_report(model, tokenizer, ids, d, icn_answers=args.icn_answers,
                                              icn_prompts=args.icn_prompts)),
        ("trajectory", lambda d: report.trajectory_report(model, ids[:args.context], tokenizer.token_text, d)),
        ("sinks", lambda d: report.sinks_report(model, ids, tokenizer.token_nbytes(), tokenizer.token_text, d)),
        ("lens", lambda d: report.lens_report(model, ids, tokenizer.token_nbytes(), d)),
    ):
        d = out / what
        d.mkdir(parents=True, exist_ok=True)
        summary = call(d)
        results[what] = {"data": common.read_json(summary["json"]), "png": summary["png"]}
    return results


def copy_figures(measures: dict, img: Path) -> dict:
    """The analyses' PNGs next to the doc, as interpretability-WHAT-NAME.png; {what: [paths relative to the doc]}."""
    img.mkdir(parents=True, exist_ok=True)
    out = {}
    for what, m in measures.items():
        out[what] = []
        for png in m.pop("png"):
            target = img / f"interpretability-{what}-{Path(png).name}"
            shutil.copyfile(png, target)
            out[what].append(f"img/{target.name}")
    return out


def _last(run: Path, key: str):
    """The run's last logged `key` (None for a run without metrics.jsonl)."""
    return common.last_record(run, key).get(key) if (run / "metrics.jsonl").is_file() else None


def measure(args, doc: Path) -> dict:
    import torch

    from ..analysis import report
    from ..data.corpora import read_corpus

    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work)
    check_laundry(args)  # first: bad task settings are refused before anything is written or trained
    task_dir = laundry_task(work, args)
    if args.laundry_warmup_steps:
        laundry_task(work, args, "laundry-warmup-task", args.laundry_warmup_lengths, args.laundry_warmup_examples)
    text_cfg = run_config(args, args.corpus, args.text_layers, args.text_steps, args.d_model, args.context)
    model, tokenizer, cfg = common.train_or_reuse(text_cfg, work / "text")
    model.eval()
    _, held_out = common.token_split(cfg, tokenizer)
    measures = text_measures(model, tokenizer, held_out[:args.eval_tokens + 1], work / "analysis", args)

    if args.laundry_data == "mix":
        corpus_text = "".join(d.text for d in read_corpus(args.corpus, "text", ""))
        train_text, _ = common.split_text(corpus_text, cfg.data.val_fraction, at="line")
        corpus, task = str(mixed_corpus(train_text, task_dir, work / "laundry-mix.txt", args.mix_chars)), ""
    else:
        corpus, task = args.corpus, str(task_dir.resolve())
    lmodel, ltok, _ = train_laundry(args, work, task_dir, corpus, task)
    lmodel.eval()
    d = work / "analysis" / "laundry"
    d.mkdir(parents=True, exist_ok=True)
    summary = report.laundry_report(lmodel, ltok, report.load_laundry(str(task_dir)), d,
                                    scales=(0.0, 0.5, 1.5, 2.0, 3.0, 5.0), controls=args.controls)
    measures["laundry"] = {"data": common.read_json(summary["json"]), "png": summary["png"]}
    figures = copy_figures(measures, doc.parent / "img")
    return {"settings": settings(args), "machine": common.machine(), "figures": figures,
            "text_run": {"val_bpb": _last(work / "text", "val_bpb"),
                         "steps": _last(work / "text", "step"),
                         "params": model.num_params(), "held_out_tokens": min(len(held_out), args.eval_tokens + 1)},
            "laundry_run": {"val_bpb": _last(work / "laundry", "val_bpb"),
                            "steps": _last(work / "laundry", "step"),
                            "params": lmodel.num_params()},
            **{what: m["data"] for what, m in measures.items()}}


def run(args) -> int:
    import json

    from .interpretability_report import claims, write_report

    common.use_quick(args, QUICK)
    doc = Path(args.doc)
    if args.render_only:
        results = common.read_json(results_path(doc))
    else:
        start = common.timing_start()
        results = measure(args, doc)
        results["timing"] = common.timing(start)  # the issue bounds the default run's wall time
    results["claims"] = claims(results, doc)
    common.write_json(results_path(doc), results)
    write_report(results, doc)
    print(json.dumps([{k: c[k] for k in ("paper", "number", "verdict")} for c in results["claims"]], indent=1))
    return 0
