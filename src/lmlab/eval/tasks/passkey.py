"""Passkey retrieval as a task directory: the prompts of lmlab.eval.passkey, target the key.

    input  "Find the pass key ... The pass key is 48213. ... What is the pass key? The pass key is"
    target "48213"

`lengths` lists prompt lengths in characters (each example draws one); `depth` places the key
(0 = right after the intro, 1 = right before the question; -1 draws it uniformly per example) at
the filler's sentence boundary at or before that point.
"""
from __future__ import annotations

from .. import passkey
from ...data.task_files import Example
from .generator import Generator
from .spec import Param, Spec


# Sentences as well as lines: a prompt shorter than two filler lines has no inner line boundary, and
# the key would always sit right after the intro (a fixed position the model learns instead of the key).
BOUNDARIES = ("\n", ". ")


def draw(rng, s: dict, split: str) -> Example:
    key = passkey.random_key(rng, s["digits"])
    depth = rng.random() if s["depth"] < 0 else s["depth"]
    return Example(passkey.make_prompt(key, rng.choice(s["lengths"]), depth, BOUNDARIES).rstrip(" "), key)


GENERATOR = Generator(
    name="passkey",
    summary="a key hidden in filler text; target the key",
    spec=Spec(params=(
        Param("digits", 5, 1, 100, help="digits of the key"),
        Param("lengths", (400, 800), 1, 10_000_000, help="prompt lengths in characters (each example draws one)"),
        Param("depth", -1.0, -1.0, 1.0, help="where the key sits, 0..1 (-1: uniform per example)"),
    )),
    draw=draw,
)
