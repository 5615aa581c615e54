"""What every experiment needs besides its own measurement.

Configs built as objects, a run trained (or a finished one reused), the held-out split, a record of
the machine, curves from metrics.jsonl, results JSON that is strict JSON, figures, and the
comma-separated lists the experiments take on the command line.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import platform
import shutil
from pathlib import Path

import numpy as np

from ..errors import LmlabError


# --- configs ----------------------------------------------------------------------------------
def configured(base, **sections: dict):
    """A copy of the Config `base` with fields of its sections replaced, e.g. `train=dict(seed=1)`."""
    cfg = copy.deepcopy(base)
    for name, fields in sections.items():
        setattr(cfg, name, dataclasses.replace(getattr(cfg, name), **fields))
    return cfg


def as_settings(sections: dict) -> list[str]:
    """`section.key=value` for each field of configured()'s arguments: how reports show a change."""
    def spell(v):
        return ("true" if v else "false") if isinstance(v, bool) else str(v)

    return [f"{section}.{key}={spell(v)}" for section, fields in sections.items() for key, v in fields.items()]


# --- runs -------------------------------------------------------------------------------------
def quiet(*args, **kwargs) -> None:
    """An `echo` for train() that prints nothing: the experiment prints its own summary lines."""


def train_fresh(cfg, out) -> dict:
    """Train `cfg` into `out` from scratch (a run already there is removed); train()'s summary."""
    from ..train.loop import train

    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    return train(cfg, out, progress=False, echo=quiet)


def has_checkpoint(out) -> bool:
    from ..checkpoint import CKPT_DIR, LATEST

    return (Path(out) / CKPT_DIR / LATEST).is_file()


def train_or_reuse(cfg, out, echo=print):
    """(model, tokenizer, config) of the run in `out`, trained from `cfg` first unless it has a checkpoint."""
    from ..checkpoint import load_model
    from ..train.loop import train

    if not has_checkpoint(out):
        echo(f"training {out} ...")
        train(cfg, out, progress=False, echo=quiet)
    return load_model(out)


# --- the held-out split -----------------------------------------------------------------------
def split_text(text: str, held_out: float, at: str) -> tuple[str, str]:
    """(head, tail) of one document, the tail about its last `held_out` fraction.

    The cut moves to a boundary: at="space", back to the last space in the 200 characters
    before it (if any); at="line", forward to the next line start (the end if there is none).
    """
    cut = int(len(text) * (1 - held_out))
    if at == "space":
        space = text.rfind(" ", max(0, cut - 200), cut)
        cut = space if space > 0 else cut
    elif at == "line":
        nl = text.find("\n", cut)
        cut = len(text) if nl < 0 else nl + 1
    else:
        raise ValueError(f"at must be 'space' or 'line', not {at!r}")
    return text[:cut], text[cut:]


def token_split(cfg, tokenizer, corpus: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(training ids, validation ids) of `corpus` (default: the config's) as training splits them."""
    from ..data.corpora import read_corpus
    from ..data.shards import token_splits

    docs = read_corpus(corpus, cfg.data.text_field, cfg.data.cache_dir) if corpus else None
    train, val = token_splits(cfg, tokenizer, docs)
    return np.asarray(train, dtype=np.int64), np.asarray(val, dtype=np.int64)


# --- the machine ------------------------------------------------------------------------------
def machine() -> dict:
    """What the numbers were measured on, for the results JSON."""
    import torch

    return {"cpu": platform.processor() or platform.machine(), "arch": platform.machine(), "cpus": os.cpu_count(),
            "cpu_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "platform": platform.platform(), "torch": torch.__version__, "load_avg_1min": os.getloadavg()[0]}


def describe(m: dict) -> str:
    """One line: 'x86_64 with 2 CPUs, no GPU'."""
    return f"{m['arch']} with {m['cpus']} CPUs, {m['cuda'] or 'no GPU'}"


# --- metrics.jsonl ----------------------------------------------------------------------------
def curve(run, key: str) -> list[tuple[int, float]]:
    """(step, value) for every line of the run's metrics.jsonl that has `key` (e.g. val_bpb, loss)."""
    from ..train.metrics import read

    return [(r["step"], r[key]) for r in read(run) if key in r]


def last_record(run, key: str) -> dict:
    """The last line of the run's metrics.jsonl that has `key` ({} if none)."""
    from ..train.metrics import read

    return next((r for r in reversed(read(run)) if key in r), {})


# --- results JSON -----------------------------------------------------------------------------
from ..jsonio import finite  # noqa: E402  (strict JSON: NaN -> null)


def write_json(path, data) -> Path:
    """Write `data` as strict JSON (NaN -> null), whole or not at all (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(finite(data), indent=1, ensure_ascii=False, allow_nan=False), encoding="utf-8")
    os.replace(tmp, path)
    return path


def measure_or_reread(args, doc, results_file, measure, write_report, claims=None) -> int:
    """The run of an experiment with one page: measure (and save the results) unless --render-only,
    then write the page `doc` from the results alone. With `claims` (results -> list), --render-only
    also re-decides the verdicts from the saved numbers, so a changed rule reaches the JSON too."""
    if args.render_only:
        results = read_json(results_file)
        if claims is not None:
            results["claims"] = claims(results)
            write_json(results_file, results)
    else:
        results = measure(args)
        write_json(results_file, results)
    write_report(results, doc)
    print(f"wrote {doc}")
    return 0


def read_json(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise LmlabError(f"{path}: no results (run the experiment without --render-only first)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise LmlabError(f"{path}: not valid JSON ({e})") from None


# --- figures and text -------------------------------------------------------------------------
def pyplot():
    """matplotlib.pyplot drawing to files only (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_text(path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def fill_regions(text: str, name: str, parts: dict, where="the page") -> str:
    """`text` with each region `<!-- NAME:PART -->` ... `<!-- /NAME:PART -->` replaced by parts[PART].

    For pages that are prose around generated tables: the prose stays as written, the numbers are
    always the results'. A missing marker is an error rather than a page silently left stale.
    """
    import re

    for part, body in parts.items():
        begin, end = f"<!-- {name}:{part} -->", f"<!-- /{name}:{part} -->"
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
        if len(pattern.findall(text)) != 1:
            raise LmlabError(f"{where}: needs exactly one '{begin}' ... '{end}' region")
        text = pattern.sub(lambda _: f"{begin}\n{body.rstrip()}\n{end}", text)
    return text


def slug(name: str) -> str:
    """A file name from a label: 'lmu (LF)' -> 'lmu-LF'."""
    return "".join(c if c.isalnum() else "-" for c in name).strip("-").replace("--", "-")


# --- command line -----------------------------------------------------------------------------
def use_quick(args, flags: dict) -> None:
    """With --quick, the flags it stands for replace the given ones (argparse names: lm_vocab, ...)."""
    if args.quick:
        for name, value in flags.items():
            setattr(args, name, value)


def names(text: str, valid, flag: str, what: str) -> list[str]:
    """The comma-separated names of `text`, each one of `valid` (else a one-line error naming them)."""
    chosen = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in chosen if x not in valid]
    if bad:
        raise LmlabError(f"{flag}: unknown {what} {', '.join(map(repr, bad))}; valid: {', '.join(valid)}")
    return chosen


def numbers(text: str, kind, flag: str) -> list:
    """The comma-separated numbers of `text` as `kind` (int or float)."""
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise LmlabError(f"{flag} must be a comma-separated list of numbers, not {text!r}") from None


# --- the wall time of a measuring run, and its command's defaults ------------------------------
def timing_start() -> tuple[float, float]:
    """(wall clock, 1-minute load) at the start of a measuring run."""
    import time

    return time.time(), os.getloadavg()[0]


def timing(start: tuple[float, float]) -> dict:
    """The `timing` record of a results JSON: how long the run took, how busy the shared machine was."""
    import time

    return {"wall_s": time.time() - start[0], "load_1min_start": start[1], "load_1min_end": os.getloadavg()[0]}


def timing_note(results: dict, what: str = "the run") -> str:
    """The page's line on the `timing` record ('' for results that predate it)."""
    t = results.get("timing")
    if not t:
        return ""
    return (f"Wall time of {what}: {t['wall_s'] / 60:.1f} min with {results['machine']['cpu_threads']} torch "
            f"thread(s); 1-minute load average {t['load_1min_start']:.2f} at its start and "
            f"{t['load_1min_end']:.2f} at its end (the machine is shared).\n")


def argparse_defaults(add_arguments) -> dict:
    """What an experiment's options default to, so a page made by the default run can say so."""
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return vars(parser.parse_args([]))


# --- independent models in worker processes ---------------------------------------------------
def default_jobs() -> int:
    """Worker processes an experiment uses by default: two where the machine has two cores."""
    return min(2, os.cpu_count() or 1)


def map_jobs(fn, items: list, jobs: int, cost=None) -> list:
    """[fn(item) for item in items], with up to `jobs` items at once in spawned worker processes.

    Each item is a whole deterministic run (its own seed and thread count), so its result does not
    depend on `jobs`: the workers only share out the list. `cost(item)` orders the submissions,
    dearest first, so the last item to finish is a cheap one; results keep the order of `items`.
    With jobs == 1 everything runs here, in order. `fn` must be importable (a module-level function).
    """
    if jobs <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    order = sorted(range(len(items)), key=lambda i: -cost(items[i])) if cost else list(range(len(items)))
    out: list = [None] * len(items)
    # spawn, not fork: a forked child would inherit torch's thread pools and any state of this process
    ex = ProcessPoolExecutor(max_workers=min(jobs, len(items)), mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = {i: ex.submit(fn, items[i]) for i in order}
        for i, f in futures.items():
            out[i] = f.result()
    finally:  # on an error (or Ctrl-C) the items not begun are dropped, not run to the end
        ex.shutdown(wait=True, cancel_futures=True)
    return out
