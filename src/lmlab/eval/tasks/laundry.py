"""The Laundry List (Talking Heads, Merullo et al. 2024), in symbols: a list of distinct items,
then every item but one named again in another order; the target is the one not named again
(the indirect-object task with n names instead of two, solved by inhibiting what was repeated):

    input  "d b f a . b a f ?"      target "d"

`lengths` lists the list lengths (each example draws one); `lmlab eval --task` reports accuracy
per length, which falls as the list grows.
"""
from __future__ import annotations

from ...data.task_files import Example
from ...errors import LmlabError
from .generator import Generator
from .spec import Param, Spec
from .symbols import symbols


def draw(rng, s: dict, split: str) -> Example:
    n = rng.choice(s["lengths"])
    items = rng.sample(symbols(s["vocab"]), n)
    left = rng.choice(items)
    again = [i for i in items if i != left]
    rng.shuffle(again)
    return Example(" ".join(items + ["."] + again + ["?"]), left)


def parse(text: str) -> tuple[list[str], list[str]]:
    """(the list, the items named again) of an input."""
    words = text.split()
    if "." not in words or words[-1:] != ["?"]:
        raise LmlabError(f"not a laundry-list input: {text!r}")
    cut = words.index(".")
    return words[:cut], words[cut + 1:-1]


def solve(text: str) -> str:
    """The correct answer of an input: the one listed item not named again."""
    items, again = parse(text)
    left = [i for i in items if i not in again]
    if len(left) != 1 or len(again) != len(items) - 1 or not set(again) <= set(items):
        raise LmlabError(f"not a laundry-list input (exactly one item must be left): {text!r}")
    return left[0]


def list_length(text: str) -> int:
    return text.split().index(".")


def check(s: dict) -> None:
    if max(s["lengths"]) > s["vocab"]:
        raise LmlabError(f"laundry: lengths up to {max(s['lengths'])} need vocab >= {max(s['lengths'])} "
                         f"(the items of a list are distinct), got vocab={s['vocab']}")


GENERATOR = Generator(
    name="laundry",
    summary="a list of items, then all but one again; target the one left",
    spec=Spec(params=(
        Param("vocab", 20, 2, 100_000, help="item symbols"),
        Param("lengths", (2, 3, 4, 6, 8), 2, 100_000, help="list lengths (each example draws one)"),
    )),
    draw=draw, length_of=list_length, check=check,
)
