"""The synthetic task suite: seeded generators writing train/validation/test JSONL (see files.py).

`lmlab task make NAME [--set key=value ...] -o DIR` writes one; `lmlab eval RUN --task DIR|NAME`
scores a run on it (score.py); `lmlab train --set data.task=DIR` trains on it, the loss on the
answer only. docs/evaluation.md describes every generator's format.
"""
from __future__ import annotations

from ...errors import LmlabError
from . import classify, continuation, induction, laundry, listops, passkey, recall, retrieval, selective_copy
from .generator import Generator

GENERATORS: dict[str, Generator] = {g.name: g for g in (
    listops.GENERATOR, classify.GENERATOR, retrieval.GENERATOR, recall.ASSOC_RECALL, recall.MQAR,
    induction.GENERATOR, selective_copy.GENERATOR, passkey.GENERATOR, continuation.GENERATOR,
    laundry.GENERATOR,
)}


def get(name: str) -> Generator:
    if name not in GENERATORS:
        raise LmlabError(f"unknown task {name!r}; known tasks: {', '.join(GENERATORS)}")
    return GENERATORS[name]


def make(name: str, overrides: list[str], out) -> dict:
    """Generate task `name` into directory `out`; returns task.json's content."""
    from ...data.task_files import write_task

    gen = get(name)
    settings = gen.settings(overrides)
    info = gen.info(settings)
    write_task(out, gen.make(settings), info)
    return {"task": name, "out": str(out), "settings": settings,
            "sizes": {k: settings[f"n_{k}"] for k in ("train", "validation", "test")}}
