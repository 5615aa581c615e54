"""`lmlab task make NAME [--set key=value ...] -o DIR` and `lmlab task list`: the synthetic tasks."""
from __future__ import annotations

from pathlib import Path

from ..errors import LmlabError
from .common import print_json


def register(sub) -> None:
    p = sub.add_parser("task", help="generate a synthetic task (ListOps, recall, copying, passkey, text "
                       "classification, ...) as train/validation/test JSONL")
    verbs = p.add_subparsers(dest="task_verb", metavar="{make,list}")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    m = verbs.add_parser("make", help="write DIR/{train,validation,test}.jsonl and DIR/task.json")
    m.add_argument("name", metavar="NAME", help="a task (`lmlab task list`)")
    m.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a generator setting, or preset=NAME (repeatable)")
    m.add_argument("-o", "--out", required=True, metavar="DIR")
    m.add_argument("--force", action="store_true", help="write into a directory that is not empty")
    m.set_defaults(func=run_make)

    ls = verbs.add_parser("list", help="the tasks, their settings (defaults and ranges) and presets")
    ls.set_defaults(func=run_list)


def run_make(args) -> int:
    from ..eval import tasks

    gen = tasks.get(args.name)
    gen.settings(args.overrides)  # every setting checked before anything is touched
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise LmlabError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise LmlabError(f"{out} is not empty; choose another -o or pass --force")
    print_json(tasks.make(args.name, args.overrides, out))
    return 0


def run_list(args) -> int:
    from ..eval import tasks
    from ..eval.tasks.spec import COMMON

    rows = {}
    for name, gen in tasks.GENERATORS.items():
        params = {}
        for p in COMMON + gen.spec.params:
            params[p.name] = {"default": list(p.default) if isinstance(p.default, tuple) else p.default,
                              "help": p.help}
            if p.choices:
                params[p.name]["choices"] = list(p.choices)
            elif p.lo is not None:
                params[p.name]["range"] = [p.lo, p.hi]
        rows[name] = {"summary": gen.summary, "scoring": gen.scoring, "settings": params,
                      "presets": gen.spec.presets}
    print_json(rows)
    return 0
