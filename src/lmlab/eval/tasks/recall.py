"""Associative recall and multi-query associative recall (Zoology, Arora et al. 2023).

An example binds `pairs` distinct keys (from the first half of the vocabulary) to distinct values
(from the second half) and writes a context of `length` symbols: every pair once, then further
pairs drawn from the same bindings, all shuffled. After `?` come the queried keys (one for
associative recall, `queries` distinct ones for MQAR); the target is their values in order:

    input  "c k a m c k b n ? a b"      target "m n"

`lengths` lists context lengths; each example draws one, and `lmlab eval --task` reports
accuracy per length.
"""
from __future__ import annotations

from functools import partial

from ...data.task_files import Example
from ...errors import LmlabError
from .generator import Generator
from .spec import Param, Spec
from .symbols import symbols


def draw(rng, s: dict, split: str) -> Example:
    vocab = symbols(s["vocab"])
    half = s["vocab"] // 2
    keys = rng.sample(vocab[:half], s["pairs"])
    values = rng.sample(vocab[half:2 * half], s["pairs"])
    binding = dict(zip(keys, values))
    length = rng.choice(s["lengths"])
    order = keys + [rng.choice(keys) for _ in range(length // 2 - s["pairs"])]
    rng.shuffle(order)
    context = [w for k in order for w in (k, binding[k])]
    asked = rng.sample(keys, s["queries"])
    return Example(" ".join(context + ["?"] + asked), " ".join(binding[k] for k in asked))


def context_length(text: str) -> int:
    return text.split().index("?")


def check(name: str, s: dict) -> None:
    if s["pairs"] > s["vocab"] // 2:
        raise LmlabError(f"{name}: pairs={s['pairs']} needs vocab >= {2 * s['pairs']} (keys and values are "
                         f"distinct halves of the vocabulary)")
    if s["queries"] > s["pairs"]:
        raise LmlabError(f"{name}: queries={s['queries']} is more than pairs={s['pairs']}")
    for n in s["lengths"]:
        if n < 2 * s["pairs"] or n % 2:
            raise LmlabError(f"{name}: every length must be even and at least 2 * pairs = {2 * s['pairs']}, got {n}")


COMMON = (
    Param("vocab", 40, 4, 100_000, help="symbols: keys are the first half, values the second"),
    Param("pairs", 8, 1, 50_000, help="distinct key-value bindings per example"),
    Param("lengths", (16, 32, 64), 2, 1_000_000, help="context lengths in symbols (each example draws one)"),
)

ASSOC_RECALL = Generator(
    name="assoc_recall",
    summary="key-value pairs, then one key; target its value",
    spec=Spec(params=COMMON + (Param("queries", 1, 1, 1, help="always 1 (see mqar)"),)),
    draw=draw, length_of=context_length, check=partial(check, "assoc_recall"),
)

MQAR = Generator(
    name="mqar",
    summary="key-value pairs, then several keys; target their values in order",
    spec=Spec(params=COMMON + (Param("queries", 4, 1, 50_000, help="keys asked per example"),)),
    draw=draw, length_of=context_length, check=partial(check, "mqar"),
)
