"""`lmlab finetune RUN --task NAME[,NAME...]|DIR [--random-labels] -o OUT`: a new run fine-tuned
from RUN's weights on a classification task (loss on the label word only), e.g. to solve a task or,
with --random-labels, to make the model "forget" it. OUT/task holds the examples it trained on."""
from __future__ import annotations

from pathlib import Path

from ..errors import LmlabError
from ..options import COUNT, NONNEG_INT, POSITIVE_FLOAT


def register(sub) -> None:
    from ..eval.tasks.labelled import TASKS

    p = sub.add_parser("finetune", help="fine-tune a run on a classification task (optionally random labels); "
                       "writes a new run")
    p.add_argument("run", metavar="RUN_OR_CKPT")
    p.add_argument("--task", required=True,
                   help=f"comma-separated task names ({', '.join(TASKS)}), or a task directory (lmlab task make)")
    p.add_argument("-o", "--out", required=True, help="the new run directory (must not hold a run)")
    p.add_argument("--random-labels", action="store_true",
                   help="train on labels drawn uniformly at random (seeded by --seed) instead of the true ones")
    p.add_argument("--steps", type=NONNEG_INT, default=300, help="optimizer steps (0: the weights unchanged)")
    p.add_argument("--lr", type=POSITIVE_FLOAT, default=1e-3)
    p.add_argument("--batch-size", type=COUNT, default=16)
    p.add_argument("--n-train", type=COUNT, default=500, help="training examples per named task")
    p.add_argument("--n-test", type=COUNT, default=200, help="validation and test examples per named task")
    p.add_argument("--max-bytes", type=COUNT, default=None,
                   help="longest passage in bytes (default: what fits the model's context, at most 100)")
    p.add_argument("--seed", type=NONNEG_INT, default=0, help="seed of the examples, the random labels and training")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..checkpoint import CKPT_DIR, read_state, resolve
    from ..eval.tasks import labelled
    from ..train.finetune import finetune
    from .common import print_json

    task_dir = Path(args.task)
    names = [] if task_dir.is_dir() else [n.strip() for n in args.task.split(",") if n.strip()]
    tasks = [labelled.get(n) for n in names] if names or not task_dir.is_dir() else []
    if not task_dir.is_dir() and not tasks:
        raise LmlabError("--task names no task")
    if task_dir.is_dir() and args.random_labels:
        raise LmlabError("--random-labels needs named tasks (a task directory's labels are used as they are)")
    out = Path(args.out)
    if (out / CKPT_DIR).exists() or (out / "config.toml").exists():
        raise LmlabError(f"{out} already holds a run; choose a new directory")
    context = read_state(resolve(args.run))["config"]["model"]["context"]
    note = {"task": args.task, "random_labels": args.random_labels, "seed": args.seed}
    if tasks:
        max_bytes = args.max_bytes or labelled.fitting_bytes(tasks, context)
        task_dir = labelled.write_mixture(out / "task", tasks, args.n_train, args.n_test, args.seed, max_bytes,
                                          randomise=args.random_labels)
        note["max_bytes"] = max_bytes
    summary = finetune(args.run, out, task_dir, args.steps, args.lr, args.batch_size, args.seed, args.device,
                       echo=lambda *a: None, note=note)
    print_json({"out": str(out), "task_dir": str(task_dir), **note, "step": summary["step"], "loss": summary["loss"]})
    return 0
