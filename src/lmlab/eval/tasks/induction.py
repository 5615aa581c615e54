"""Induction heads (as in H3, Fu et al. 2023): copy what followed a trigger the first time.

A sequence of `length` random symbols holds the trigger `@` once, followed by some symbol x; the
sequence ends with `@` again, and the target is x:

    input  "d a @ c b e d @"      target "c"
"""
from __future__ import annotations

from ...data.task_files import Example
from ...errors import LmlabError
from .generator import Generator
from .spec import Param, Spec
from .symbols import symbols

TRIGGER = "@"


def draw(rng, s: dict, split: str) -> Example:
    vocab = symbols(s["vocab"])
    length = rng.choice(s["lengths"])
    seq = [rng.choice(vocab) for _ in range(length - 1)]
    at = rng.randrange(length - 2)  # the trigger's first place; its successor is still in seq
    seq[at] = TRIGGER
    return Example(" ".join(seq + [TRIGGER]), seq[at + 1])


def check(s: dict) -> None:
    if min(s["lengths"]) < 3:
        raise LmlabError("induction: every length must be at least 3 (trigger, answer, trigger)")


GENERATOR = Generator(
    name="induction",
    summary="random symbols with a trigger seen once; target what followed it",
    spec=Spec(params=(
        Param("vocab", 20, 2, 100_000, help="symbols besides the trigger"),
        Param("lengths", (16, 32, 64), 3, 1_000_000, help="sequence lengths in symbols, the final trigger included"),
    )),
    draw=draw, length_of=lambda text: len(text.split()), check=check,
)
