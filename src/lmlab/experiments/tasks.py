"""`lmlab experiment tasks`: the seed claims that live on the synthetic task suite.

Three parts, each a set of tiny char-level models trained on a task directory (the loss on the
answers only) and scored on its test split, per sequence length:
- meta: the same 2-layer attention model with and without learned meta-tokens on multi-query
  associative recall, scored within the training lengths and beyond them (up to 2x);
- archs: attention, the SSM hybrid (`AMF MF`) and the LMU pattern (`LF`) at one parameter
  budget (each variant's FFN width is solved so that its parameter count matches attention's) on
  ListOps, associative recall (MQAR) and selective copying;
- passkey: an attention model trained on short passkey prompts, scored at 1x-4x its context,
  vanilla and under LM-Infinite.
Every model is an independent single-process run (`--jobs` of them at once). Results go to
DOCS/tasks-results.json, one section per part, each with the command and timing of the run that
measured it; a run of some parts keeps the other parts' sections. tasks_report.py writes DOCS/tasks.md
and its PNG.
"""
from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path

from . import common
from ..errors import LmlabError
from ..options import COUNT

NAME = "tasks"
HELP = "meta-tokens, attention vs SSM hybrid vs LMU, and LM-Infinite on the synthetic task suite"
PARTS = ("meta", "archs", "passkey")
ARCHS = {"attention (AF)": "AF", "ssm hybrid (AMF MF)": "AMF MF", "lmu (LF)": "LF"}
META = {"meta_tokens": 4, "meta_rate": 0.1}
STAND_IN_VOCAB = 64
EVAL_CONTEXT = 1 << 14  # scoring reads the whole prompt, even past the training context

# task -> (generator, settings of the training directory, lengths scored beyond them or ())
TASKS = {
    "mqar": ("mqar", ["vocab=16", "pairs=4", "queries=2", "lengths=8,12,16"], (24, 32)),
    "listops": ("listops", ["max_depth=3", "max_args=4", "min_length=5", "max_length=40"], ()),
    "selective_copy": ("selective_copy", ["vocab=8", "tokens=4", "lengths=8,16,32"], ()),
}
LISTOPS_BINS = (5, 11, 21, 41)  # token-count bins [5, 11), [11, 21), [21, 41): ListOps has no length field
PASSKEY = ["digits=5", "lengths=130,140,150,160,170,180,190", "depth=-1"]
PASSKEY_MULTIPLIERS = (1, 2, 4)
PASSKEY_DEPTHS = (0.5, 1.0)
SIZES = {"n_train": 6000, "n_validation": 200, "n_test": 300}
QUICK_SIZES = {"n_train": 200, "n_validation": 40, "n_test": 12}
QUICK = {"steps": 3, "passkey_steps": 3, "seeds": "1", "passkey_examples": 1}


def add_arguments(p) -> None:
    p.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of: " + ", ".join(PARTS))
    p.add_argument("--seeds", default="1,2", help="training seeds, comma-separated (default 1,2)")
    p.add_argument("--steps", type=COUNT, default=1000, help="training steps per model (default 1000)")
    p.add_argument("--d-model", type=COUNT, default=64, help="width of every model (default 64)")
    # its own budget: the passkey model reads 200-char prompts, the others 40-75, so it costs the most
    p.add_argument("--passkey-steps", type=COUNT, default=1000, help="training steps of the passkey models (default 1000)")
    p.add_argument("--passkey-examples", type=COUNT, default=20, help="passkey prompts per length and depth")
    p.add_argument("--threads", type=COUNT, default=1, help="torch threads per model (default 1: robust on a shared CPU)")
    p.add_argument("--jobs", type=COUNT, default=common.default_jobs(),
                   help="models trained and scored at once, each in its own process with --threads threads "
                        "(default min(2, CPUs); the numbers do not depend on it)")
    p.add_argument("--out", default="runs/tasks", help="task directories and runs (default runs/tasks)")
    p.add_argument("--docs", default="docs/experiments", help="where tasks.md, its PNG and tasks-results.json go")
    p.add_argument("--quick", action="store_true", help="a smoke run: one seed, 3 steps, a few examples per task")
    p.add_argument("--render-only", action="store_true", help="write the report from DOCS/tasks-results.json")


# --- configs ----------------------------------------------------------------------------------
def base_config(task_dir, context: int, args, seed: int, pattern: str = "AF", d_ff: int = 0, steps: int = 0,
                **model):
    """A 2-layer char model on a task directory; everything but the pattern, d_ff and seed shared
    (`steps`: 0 for --steps)."""
    from .. import config

    d, steps = args.d_model, steps or args.steps
    return config.Config(
        model=config.ModelConfig(n_layers=2, d_model=d, n_heads=4, context=context, pattern=pattern, d_ff=d_ff,
                                 ssm_head_dim=min(32, 2 * d), **model),
        tokenizer=config.TokenizerConfig(kind="char"),
        data=config.DataConfig(task=str(task_dir)),
        train=config.TrainConfig(max_steps=steps, batch_size=32, lr=3e-3, min_lr=3e-4,
                                 warmup_steps=min(100, steps // 10), weight_decay=0.0, eval_every=0,
                                 ckpt_every=steps, dtype="float32", device="cpu", progress=False, seed=seed,
                                 threads=args.threads))


def params_of(cfg) -> int:
    """Parameters of `cfg`'s model with a stand-in vocabulary (the embedding is the same for every
    variant of a task, so matching with it matches the real counts too)."""
    from ..model import Transformer

    return Transformer(dataclasses.replace(cfg.model, vocab_size=STAND_IN_VOCAB)).num_params()


def matched_d_ff(pattern: str, target: int, args) -> int:
    """The FFN width giving `pattern` about `target` parameters (they grow linearly with d_ff)."""
    def count(d_ff):
        return params_of(base_config("", 64, args, 0, pattern=pattern, d_ff=d_ff))

    a, b = count(16), count(32)
    return max(4, round(16 + (target - a) * 16 / (b - a)))


# --- task directories -------------------------------------------------------------------------
def make_task(name: str, settings: list[str], out: Path, sizes: dict) -> Path:
    """The task directory, written afresh each run: seeded, so the same bytes unless the generator
    changed, in which case a directory left by an earlier run must not be reused."""
    from ..eval.tasks import make

    make(name, settings + [f"{k}={v}" for k, v in sizes.items()] + ["seed=0"], out)
    return out


def longest_example(task_dir: Path, delimiter: str = " ") -> int:
    """Characters of the longest training example with its answer and end-of-text (char tokens)."""
    from ..data.task_files import read_split

    return max(len(ex.input) + len(delimiter) + len(ex.target) + 1 for ex in read_split(task_dir / "train.jsonl"))


# --- scoring ----------------------------------------------------------------------------------
def with_meta(ids: list[int], every: int, vocab: int, count: int) -> list[int]:
    """The prompt with a meta-token before every `every`-th token (ids vocab..vocab+count-1 in turn)."""
    out = []
    for i, t in enumerate(ids):
        if i and i % every == 0:
            out.append(vocab + (i // every - 1) % count)
        out.append(t)
    return out


def hits(model, tokenizer, examples, info, meta_every: int = 0) -> list[bool]:
    from ..eval.likelihood import greedy_tokens
    from ..eval.tasks.score import choice_hits

    if info.scoring == "choice":
        return choice_hits(model, tokenizer, examples, info, 32)[0]
    prompts = [tokenizer.encode(ex.input) for ex in examples]
    if meta_every:
        prompts = [with_meta(p, meta_every, model.cfg.vocab_size, model.cfg.meta_tokens) for p in prompts]
    answers = [info.delimiter + ex.target for ex in examples]
    outs = greedy_tokens(model, prompts, [len(tokenizer.encode(a)) for a in answers], 32)
    return [tokenizer.decode(o) == a for o, a in zip(outs, answers)]


def length_of(task: str, text: str) -> int:
    from ..eval.tasks import GENERATORS

    if task == "listops":
        n = len(text.split())
        return max(lo for lo in LISTOPS_BINS[:-1] if n >= lo)
    return GENERATORS[TASKS[task][0]].length_of(text)


def by_length(task: str, examples, hit: list[bool]) -> dict:
    groups: dict[int, list[bool]] = {}
    for ex, h in zip(examples, hit):
        groups.setdefault(length_of(task, ex.input), []).append(h)
    return {str(n): sum(h) / len(h) for n, h in sorted(groups.items())}


def score(model, tokenizer, task: str, dirs: list[Path], meta_every: int = 0) -> dict:
    """Accuracy overall (the training directory's test split) and per length (all directories)."""
    from ..data.task_files import read_info, read_split

    model.cfg = dataclasses.replace(model.cfg, context=EVAL_CONTEXT)
    out = {"by_length": {}}
    for i, d in enumerate(dirs):
        info, examples = read_info(d), read_split(d / "test.jsonl")
        h = hits(model, tokenizer, examples, info, meta_every)
        if i == 0:
            out["accuracy"], out["n"] = sum(h) / len(h), len(h)
        out["by_length"].update(by_length(task, examples, h))
    return out


# --- the jobs: one model each, trained and scored in whichever worker process is free ------------
@dataclasses.dataclass
class Job:
    """One model: trained from `cfg` into `out`, then scored on `dirs` (or on passkey prompts)."""
    label: str
    task: str
    cfg: object
    out: Path
    dirs: list
    meta_every: int = 0
    passkey_examples: int = 0

    def cost(self) -> float:
        """About its training time: tokens, doubled for the SSM hybrid (half attention's speed here)."""
        m = self.cfg.model
        return self.cfg.train.max_steps * m.context * (2 if "M" in m.pattern else 1)


def run_job(job: Job) -> dict:
    """Train and score one model: a result row. Module-level, so a spawned worker can run it."""
    return passkey_job(job) if job.task == "passkey" else train_and_score(job)


def train_and_score(job: Job) -> dict:
    from ..checkpoint import load_model

    t0 = time.perf_counter()
    summary = common.train_fresh(job.cfg, job.out)
    model, tokenizer, _ = load_model(job.out)
    res = {"label": job.label, "task": job.task, "seed": job.cfg.train.seed, "pattern": job.cfg.model.pattern,
           "d_ff": job.cfg.model.d_ff, "params": model.num_params(), "train_loss": summary.get("loss"),
           "tok_per_s": summary.get("tok_per_s")}
    res["train_s"] = time.perf_counter() - t0
    res["plain"] = score(model, tokenizer, job.task, job.dirs)
    if job.meta_every:
        res["meta_prompt"] = score(model, tokenizer, job.task, job.dirs, job.meta_every)
    res["wall_s"] = time.perf_counter() - t0
    shown = res.get("meta_prompt", res["plain"])["accuracy"]
    print(f"{job.task} {job.label} seed {job.cfg.train.seed}: accuracy {shown:.3f}  params {res['params']:,}"
          f"  (train {res['train_s']:.0f} s, score {res['wall_s'] - res['train_s']:.0f} s)", flush=True)
    return res


def passkey_job(job: Job) -> dict:
    from ..checkpoint import load_model
    from ..eval import passkey

    t0 = time.perf_counter()
    seed, context = job.cfg.train.seed, job.cfg.model.context
    summary = common.train_fresh(job.cfg, job.out)
    model, tokenizer, _ = load_model(job.out)
    train_s = time.perf_counter() - t0
    rows = []
    for method in ("vanilla", "lminfinite"):
        for r in passkey.evaluate(model, tokenizer, [m * context for m in PASSKEY_MULTIPLIERS],
                                  n_per_length=job.passkey_examples, depths=PASSKEY_DEPTHS, method=method,
                                  n_global=10, seed=seed):
            rows.append({**r, "seed": seed, "multiplier": r["length"] // context})
    wall = time.perf_counter() - t0
    print(f"passkey seed {seed}: " + ", ".join(f"{r['method']} {r['multiplier']}x d{r['depth']}: {r['accuracy']:.2f}"
                                               for r in rows) + f"  (train {train_s:.0f} s, score {wall - train_s:.0f} s)",
          flush=True)
    return {"seed": seed, "rows": rows, "params": model.num_params(), "train_loss": summary.get("loss"),
            "train_s": train_s, "wall_s": wall}


def task_dirs(task: str, out: Path, sizes: dict) -> tuple[list[Path], int]:
    """(training directory + beyond-length directory if any, model context for training)."""
    gen, settings, beyond = TASKS[task]
    dirs = [make_task(gen, settings, out / "data" / task, sizes)]
    if beyond:
        lengths = "lengths=" + ",".join(map(str, beyond))
        dirs.append(make_task(gen, [s for s in settings if not s.startswith("lengths=")] + [lengths],
                              out / "data" / f"{task}-beyond", {**sizes, "n_train": 0, "n_validation": 0}))
    return dirs, longest_example(dirs[0])


def task_record(tasks: list[str], out: Path, sizes: dict) -> tuple[dict, dict]:
    """({task: (dirs, context)}, the section's budget and task settings) for the task parts."""
    from ..data.task_files import read_split

    made, budget = {}, {}
    for task in tasks:
        made[task] = task_dirs(task, out, sizes)
        budget[task] = {"context": made[task][1]}
        if TASKS[task][0] == "listops":  # a 10-way choice: the most frequent answer is the floor to beat
            targets = [ex.target for ex in read_split(made[task][0][0] / "test.jsonl")]
            budget[task]["majority"] = Counter(targets).most_common(1)[0][1] / len(targets)
    specs = {t: {"generator": TASKS[t][0], "settings": TASKS[t][1], "beyond": list(TASKS[t][2])} for t in tasks}
    return made, {"budget": budget, "tasks": specs}


def plan(parts: list[str], args, seeds: list[int], out: Path, sizes: dict) -> tuple[dict, dict]:
    """(part -> its section without rows, part -> the keys of its jobs, the jobs by key).

    The meta part's baseline is the archs part's attention model on MQAR (the same config): when
    both parts run, it is trained once and its row goes to both sections."""
    jobs, sections, keys = {}, {}, {}
    target = params_of(base_config("", 64, args, 0))
    for part in [p for p in ("archs", "meta") if p in parts]:
        tasks, variants = (list(TASKS), {label: (ARCHS[label], {}) for label in ARCHS}) if part == "archs" else \
            (["mqar"], {"attention (AF)": ("AF", {}), "attention + meta-tokens": ("AF", META)})
        made, sections[part] = task_record(tasks, out, sizes)
        keys[part] = []
        for task in tasks:
            dirs, context = made[task]
            sections[part]["budget"][task]["d_ff"] = {}
            for label, (pattern, extra) in variants.items():
                d_ff = matched_d_ff(pattern, target, args) if pattern != "AF" else 0
                sections[part]["budget"][task]["d_ff"][label] = d_ff or 4 * args.d_model
                for seed in seeds:
                    key = (task, label, seed)
                    keys[part].append(key)
                    jobs[key] = Job(label, task, base_config(dirs[0], context, args, seed, pattern=pattern, d_ff=d_ff,
                                                             **extra),
                                    out / "runs" / task / f"{common.slug(label)}-{seed}", dirs,
                                    round(1 / extra["meta_rate"]) if extra else 0)
    if "passkey" in parts:
        task_dir = make_task("passkey", PASSKEY, out / "data" / "passkey", sizes)
        context = longest_example(task_dir)
        sections["passkey"] = {"context": context, "task_settings": PASSKEY, "n_local": context, "n_global": 10}
        keys["passkey"] = [("passkey", "attention", s) for s in seeds]
        for seed in seeds:
            jobs[("passkey", "attention", seed)] = Job("attention", "passkey",
                                                       base_config(task_dir, context, args, seed, steps=args.passkey_steps),
                                                       out / "runs" / "passkey" / f"attention-{seed}", [task_dir],
                                                       passkey_examples=args.passkey_examples)
    return sections, keys, jobs


def settings(args) -> dict:
    """The flags the report's regenerating command names."""
    return {k: getattr(args, k) for k in ("parts", "seeds", "steps", "passkey_steps", "d_model", "passkey_examples",
                                          "threads", "jobs", "out", "docs", "quick")}


def command(s: dict) -> str:
    """The command line of a run with settings `s`, naming only what differs from the defaults.
    --jobs is left out: it changes the wall time, never a number (each model is its own process)."""
    import shlex

    default = common.argparse_defaults(add_arguments)
    parts = ["lmlab", "experiment", "tasks"] + (["--quick"] if s.get("quick") else [])
    quick_set = set(QUICK) if s.get("quick") else set()
    for key in ("parts", "seeds", "steps", "passkey_steps", "d_model", "passkey_examples", "threads", "out", "docs"):
        if key in s and key not in quick_set and s[key] != default[key]:
            parts += ["--" + key.replace("_", "-"), str(s[key])]
    return " ".join(shlex.quote(p) for p in parts)


def measure(args) -> dict:
    """The sections of the parts named by --parts, each with its own record of how it was made."""
    parts = common.names(args.parts, PARTS, "--parts", "part")
    seeds = common.numbers(args.seeds, int, "--seeds")
    if not parts:
        raise LmlabError("--parts: name at least one of " + ", ".join(PARTS))
    if not seeds or min(seeds) < 0:
        raise LmlabError("--seeds: give at least one seed, each >= 0")
    if args.d_model % 4:
        raise LmlabError(f"--d-model must be a multiple of 4 (the heads), got {args.d_model}")
    out = Path(args.out)
    sizes = QUICK_SIZES if args.quick else SIZES
    start = common.timing_start()
    sections, keys, jobs = plan(parts, args, seeds, out, sizes)
    order = list(jobs)
    print(f"{len(order)} models, {args.jobs} at a time", flush=True)
    done = dict(zip(order, common.map_jobs(run_job, [jobs[k] for k in order], args.jobs, cost=Job.cost)))
    record = {"command": command(settings(args)), "settings": settings(args), "machine": common.machine(),
              "seeds": seeds, "sizes": sizes, "jobs": args.jobs, "parts_run_together": parts,
              "model": {"n_layers": 2, "d_model": args.d_model, "n_heads": 4, "tokenizer": "char", "batch_size": 32,
                        "steps": args.steps, "lr": 3e-3, "meta": META},
              "timing": common.timing(start)}
    for part, section in sections.items():
        section.update(record)
        if part == "passkey":
            section["model"] = {**record["model"], "steps": args.passkey_steps}
        # single-job seconds of this part's models (the run's wall time covers all its parts at once)
        section["models_s"] = sum(done[k]["wall_s"] for k in keys[part])
        if part == "passkey":
            first = done[keys[part][0]]
            section.update(rows=[r for k in keys[part] for r in done[k]["rows"]], params=first["params"],
                           train_loss=first["train_loss"],
                           per_seed=[{k: done[key][k] for k in ("seed", "train_loss", "train_s", "wall_s")}
                                     for key in keys[part]])
        else:
            section["rows"] = [done[k] for k in keys[part]]
    return sections


def merged(previous: dict, sections: dict) -> dict:
    """The results after a run of some parts: its sections, and the others' as they were (a section
    from before parts carried their own record is dropped: nothing would say how it was made)."""
    kept = {p: previous[p] for p in PARTS if p in previous and p not in sections and "command" in previous[p]}
    return {p: ({**kept, **sections})[p] for p in PARTS if p in kept or p in sections}


def run(args) -> int:
    from .tasks_report import write_report

    path = Path(args.docs) / "tasks-results.json"
    if args.render_only:
        results = common.read_json(path)
    else:
        common.use_quick(args, QUICK)
        sections = measure(args)
        previous = common.read_json(path) if path.is_file() else {}
        results = merged(previous, sections)
        common.write_json(path, results)
    print(f"report: {write_report(results, Path(args.docs))}")
    return 0
