"""Selective copying (Mamba, Gu & Dao 2023): copy the data symbols, skipping the noise.

`tokens` data symbols sit at random places among `length - tokens` noise marks `.`; after `=`
the target is the data symbols in order:

    input  "c . . a . b . . ="      target "c a b"
"""
from __future__ import annotations

from ...data.task_files import Example
from ...errors import LmlabError
from .generator import Generator
from .spec import Param, Spec
from .symbols import symbols

NOISE, END = ".", "="


def draw(rng, s: dict, split: str) -> Example:
    vocab = symbols(s["vocab"])
    length = rng.choice(s["lengths"])
    places = sorted(rng.sample(range(length), s["tokens"]))
    data = [rng.choice(vocab) for _ in places]
    seq = [NOISE] * length
    for p, d in zip(places, data):
        seq[p] = d
    return Example(" ".join(seq + [END]), " ".join(data))


def check(s: dict) -> None:
    if min(s["lengths"]) < s["tokens"]:
        raise LmlabError(f"selective_copy: every length must be at least tokens={s['tokens']}")


GENERATOR = Generator(
    name="selective_copy",
    summary="data symbols scattered among noise; target the data symbols in order",
    spec=Spec(params=(
        Param("vocab", 16, 1, 100_000, help="data symbols"),
        Param("tokens", 8, 1, 100_000, help="data symbols per example"),
        Param("lengths", (32, 64), 1, 1_000_000, help="sequence lengths (data + noise), each example draws one"),
    )),
    draw=draw, length_of=lambda text: len(text.split()) - 1, check=check,
)
