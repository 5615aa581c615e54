"""Byte-level retrieval (after LRA's document-matching task): do two passages come from the same
source (language or author)? Half the pairs do; a same-source pair comes from two disjoint parts
of one text's region, so the passages never overlap. Scored as a choice between "no" and "yes".

    input  "Document 1:\\n<passage>\\n\\nDocument 2:\\n<passage>\\n\\nSame source?"      target "no"
"""
from __future__ import annotations

from functools import partial

from ...data.task_files import Example
from .classify import PARAMS
from .generator import Generator
from .sources import boundary, byte_range, check, passage, regions
from .spec import Spec


def prepare(s: dict) -> dict:
    return {"s": s, "regions": regions(s, passages=2)}


def draw(rng, state: dict, split: str) -> Example:
    s, region = state["s"], state["regions"][split]
    labels = sorted(region)
    a = rng.choice(labels)
    same = rng.random() < 0.5
    lo, hi = s["min_bytes"], s["max_bytes"]
    if same:
        data = region[a]
        cut = boundary(data, rng.randint(lo, len(data) - lo))
        first, second = passage(rng, data[:cut], lo, hi), passage(rng, data[cut:], lo, hi)
        if rng.random() < 0.5:
            first, second = second, first
    else:
        b = rng.choice([x for x in labels if x != a])
        first, second = passage(rng, region[a], lo, hi), passage(rng, region[b], lo, hi)
    return Example(f"Document 1:\n{first}\n\nDocument 2:\n{second}\n\nSame source?", "yes" if same else "no")


GENERATOR = Generator(
    name="retrieval",
    summary="whether two passages come from the same language or author",
    spec=Spec(params=PARAMS + byte_range(500, 2000)),
    draw=draw, scoring="choice", choices=lambda s: ["no", "yes"],
    check=partial(check, name="retrieval"), prepare=prepare,
)
