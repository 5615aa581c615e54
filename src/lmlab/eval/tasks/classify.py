"""Byte-level text classification (as LRA's byte-level IMDb task): which language, or which
author, a passage of 1-4K bytes is from. Scored as a choice among the labels.

    input  "<passage>\\nlanguage:"      target "de"
"""
from __future__ import annotations

from functools import partial

from ...data.task_files import Example
from .generator import Generator
from .sources import SOURCES, byte_range, check, labelled_texts, passage, regions
from .spec import Param, Spec

PARAMS = (
    Param("source", "language", choices=SOURCES, help="language: the UDHR translations; author: the novels "
          "and Shakespeare"),
    Param("train_fraction", 0.6, 0.01, 0.98, help="leading fraction of each text for train passages"),
    Param("validation_fraction", 0.2, 0.01, 0.98, help="the next fraction, for validation (the rest is test)"),
)


def prepare(s: dict) -> dict:
    return {"s": s, "regions": regions(s)}


def draw(rng, state: dict, split: str) -> Example:
    s, region = state["s"], state["regions"][split]
    label = rng.choice(sorted(region))
    text = passage(rng, region[label], s["min_bytes"], s["max_bytes"])
    return Example(f"{text}\n{s['source']}:", label)


GENERATOR = Generator(
    name="classify",
    summary="which language or author a passage of text is from",
    spec=Spec(params=PARAMS + byte_range(1000, 4000)),
    draw=draw, scoring="choice", choices=lambda s: sorted(labelled_texts(s["source"])),
    check=partial(check, name="classify"), prepare=prepare,
)
