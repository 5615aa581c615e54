"""Symbols of the synthetic sequence tasks: lowercase words of one fixed width, space-separated.

Symbol i of a vocabulary of V is i written in base 26 with letters a-z, padded to the width V
needs (V <= 26: one letter; V <= 676: two), so every symbol of a task is the same number of
characters and bytes, and byte-, character- and subword-level models all see them.
Punctuation (`?`, `=`, `@`, `.`) marks structure and is never a symbol.
"""
from __future__ import annotations

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def width(vocab: int) -> int:
    w, n = 1, 26
    while n < vocab:
        w, n = w + 1, n * 26
    return w


def symbol(i: int, vocab: int) -> str:
    out = []
    for _ in range(width(vocab)):
        i, r = divmod(i, 26)
        out.append(LETTERS[r])
    return "".join(reversed(out))


def symbols(vocab: int) -> list[str]:
    return [symbol(i, vocab) for i in range(vocab)]
