"""`lmlab probe RUN --task NAME --layer all`: held-out accuracy of a linear probe per layer.

language reads lines of DIR/LANG.txt; the other tasks are the label tasks of `lmlab finetune`
(eval/tasks/labelled.py), their test-region passages without the prompt."""
from __future__ import annotations

from ..errors import LmlabError
from ..options import COUNT, NONNEG_INT

TASKS = ("language", "author", "shuffled")


def register(sub) -> None:
    p = sub.add_parser("probe", help="linear probes on mean-pooled hidden states, per layer")
    p.add_argument("run", metavar="RUN_OR_CKPT")
    p.add_argument("--task", required=True, choices=TASKS,
                   help="language: which language a line of DIR/LANG.txt is in; author, shuffled: as in lmlab finetune")
    p.add_argument("--data", default="", help="directory of LANG.txt files (default ../shared/data/multilingual)")
    p.add_argument("--languages", default="", help="comma-separated LANG names to use (default: all files)")
    p.add_argument("--layer", default="all", help="'all', or comma-separated layers (0 = embedding, i = after block i)")
    p.add_argument("--per-class", type=COUNT, default=100, help="texts per label")
    p.add_argument("--seed", type=NONNEG_INT, default=0)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def chosen_layers(text: str, n_layers: int) -> list[int]:
    if text == "all":
        return list(range(n_layers + 1))
    try:
        layers = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise LmlabError(f"--layer must be 'all' or comma-separated integers, not {text!r}") from None
    bad = [x for x in layers if not 0 <= x <= n_layers]
    if bad or not layers:
        raise LmlabError(f"--layer: {bad or text!r} out of range; the model has layers 0..{n_layers}")
    return layers


def default_language_dir():
    from ..data.corpora import shared_data_dir

    return shared_data_dir() / "multilingual"


def run(args) -> int:
    from ..analysis.probes import label_task_texts, language_task, pooled_states, probe_layers
    from .common import load_model_arg, print_json

    model, tokenizer, _ = load_model_arg(args.run, args.device)
    layers = chosen_layers(args.layer, len(model.blocks))
    langs = [x.strip() for x in args.languages.split(",") if x.strip()]
    if args.task == "language":
        texts, labels, names = language_task(args.data or default_language_dir(), langs, args.per_class, seed=args.seed)
    else:
        texts, labels, names = label_task_texts(args.task, args.per_class, model.cfg.context, args.seed)
    result = probe_layers(pooled_states(model, tokenizer, texts), labels, layers, seed=args.seed)
    print_json({"task": args.task, "labels": names, **result})
    return 0
