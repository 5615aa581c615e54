"""ListOps (Nangia & Bowman 2018) in the Long Range Arena notation: `[MAX 4 3 [MIN 2 3 ] 1 0 ]`.

A tree of operators over digits: MIN, MAX, MED (the median; of an even count, the floor of the
mean of the two middle values), SM (sum mod 10). Below `max_depth`, a node is an operator with
probability `op_prob` (LRA: 0.25) holding 2..`max_args` children, otherwise a digit; at
`max_depth` it is a digit. A tree is kept when its token count (digits, operators and closing
brackets) is within [min_length, max_length]. The target is the tree's value, "0".."9", scored
as a 10-way choice. The `lra` preset is LRA's: depth 10, 10 arguments, 500-2000 tokens,
96,000 / 2,000 / 2,000 examples.
"""
from __future__ import annotations

from ...data.task_files import Example
from ...errors import LmlabError
from .generator import Generator
from .spec import Param, Spec

OPS = ("MIN", "MAX", "MED", "SM")
MAX_TRIES = 100_000  # trees drawn for one example before the length range is judged unreachable


class _TooLong(Exception):
    pass


def apply(op: str, values: list[int]) -> int:
    if op == "MIN":
        return min(values)
    if op == "MAX":
        return max(values)
    if op == "SM":
        return sum(values) % 10
    s, n = sorted(values), len(values)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) // 2


def _tree(rng, depth: int, s: dict, tokens: list) -> int:
    """Append one subtree's tokens; return its value. Raises _TooLong past max_length tokens."""
    if depth >= s["max_depth"] or rng.random() >= s["op_prob"]:
        value = rng.randrange(10)
        tokens.append(str(value))
    else:
        op = rng.choice(OPS)
        tokens.append("[" + op)
        values = [_tree(rng, depth + 1, s, tokens) for _ in range(rng.randint(2, s["max_args"]))]
        tokens.append("]")
        value = apply(op, values)
    if len(tokens) > s["max_length"]:
        raise _TooLong
    return value


def draw(rng, s: dict, split: str) -> Example:
    for _ in range(MAX_TRIES):
        tokens: list[str] = []
        try:
            value = _tree(rng, 1, s, tokens)
        except _TooLong:
            continue
        if len(tokens) >= s["min_length"]:
            return Example(" ".join(tokens), str(value))
    raise LmlabError(f"listops: no tree of {s['min_length']}-{s['max_length']} tokens in {MAX_TRIES} tries; "
                     f"widen the length range or raise max_depth / max_args / op_prob")


def check(s: dict) -> None:
    if s["min_length"] > s["max_length"]:
        raise LmlabError(f"listops: min_length={s['min_length']} is above max_length={s['max_length']}")
    if s["max_depth"] == 1 and s["min_length"] > 1:
        raise LmlabError("listops: max_depth=1 gives single digits only; set min_length=1 or a larger max_depth")


GENERATOR = Generator(
    name="listops",
    summary="ListOps expressions in LRA notation; target the value 0-9",
    spec=Spec(
        params=(
            Param("max_depth", 6, 1, 30, help="deepest operator nesting (the root is depth 1)"),
            Param("max_args", 5, 2, 50, help="most arguments per operator"),
            Param("min_length", 10, 1, 100_000, help="fewest tokens per expression"),
            Param("max_length", 200, 1, 100_000, help="most tokens per expression"),
            Param("op_prob", 0.25, 0.01, 1.0, help="probability that a node above max_depth is an operator"),
        ),
        presets={"lra": {"max_depth": 10, "max_args": 10, "min_length": 500, "max_length": 2000,
                         "op_prob": 0.25, "n_train": 96_000, "n_validation": 2_000, "n_test": 2_000}},
    ),
    draw=draw,
    scoring="choice",
    choices=lambda s: [str(d) for d in range(10)],
    check=check,
)
