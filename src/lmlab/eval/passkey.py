"""Passkey retrieval (as in the LM-Infinite and Landmark-attention evaluations).

A random key of `digits` digits is stated once somewhere (at `depth`, 0 = start, 1 = end) in a
long stretch of repeated filler; the prompt ends with a question, and the model must continue
with the key. Scored by greedy decoding: exact match and the fraction of digits right.
`corpus()` writes training text in the same format, for a model that should learn the task.
"""
from __future__ import annotations

import random

from ..errors import LmlabError

INTRO = "Find the pass key and remember it.\n"
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.\n"
QUESTION = "What is the pass key? The pass key is "


def needle(key: str) -> str:
    return f"The pass key is {key}. Remember it. {key} is the pass key.\n"


def make_prompt(key: str, n_chars: int, depth: float, boundaries: tuple[str, ...] = ("\n",)) -> str:
    """A prompt of about `n_chars` characters with the key at relative `depth` of the filler: after the
    last of `boundaries` at or before it (0 = right after the intro; lines by default), or for depth 1
    right before the question."""
    if not 0.0 <= depth <= 1.0:
        raise LmlabError(f"passkey depth must be in [0, 1], got {depth}")
    budget = max(0, n_chars - len(INTRO) - len(needle(key)) - len(QUESTION))
    filler = (FILLER * (budget // len(FILLER) + 1))[:budget]
    if depth >= 1.0 and filler:  # the key right before the question, on its own line
        filler = filler[:-1] + "\n"
        cut = len(filler)
    else:
        cut = max(boundary_before(filler, b, int(depth * len(filler))) for b in boundaries)
    return INTRO + filler[:cut] + needle(key) + filler[cut:] + QUESTION


def boundary_before(text: str, boundary: str, point: int) -> int:
    """Where the text after the last `boundary` ending at or before `point` + 1 starts (0: none)."""
    at = text.rfind(boundary, 0, point + len(boundary))
    return at + len(boundary) if at >= 0 else 0


def random_key(rng: random.Random, digits: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(digits))


def corpus(n_docs: int, n_chars: int, digits: int = 5, seed: int = 0, answers: int = 1) -> str:
    """Training text: passkey prompts followed by their answers, one document per line block.
    `answers` > 1 asks the question again after the answer, after a random bit of filler (so the
    answer is not at a fixed distance): more copying by content per document to learn from."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        key = random_key(rng, digits)
        doc = make_prompt(key, rng.randint(n_chars // 4, n_chars), rng.random()) + key + ".\n"
        for _ in range(answers - 1):
            doc += FILLER[:FILLER.find(".", rng.randrange(len(FILLER) // 2)) + 1] + "\n" if rng.random() < 0.7 else ""
            doc += QUESTION + key + ".\n"
        docs.append(doc + "\n")
    return "".join(docs)


def evaluate(model, tokenizer, lengths: list[int], n_per_length: int = 10, depths=(0.1, 0.5, 0.9),
             digits: int = 5, method: str = "vanilla", n_global: int = 10, n_local: int | None = None,
             seed: int = 0) -> list[dict]:
    """One row per (length in tokens, depth): exact-match accuracy and digit accuracy."""
    from .long import greedy_continue

    if digits < 1 or n_per_length < 1:
        raise LmlabError("passkey needs digits >= 1 and at least one example per length")
    rng = random.Random(seed)
    chars_per_token = len(FILLER) / max(len(tokenizer.encode(FILLER)), 1)
    rows = []
    for length in lengths:
        for depth in depths:
            exact = digit_hits = 0
            n_tokens = []
            for _ in range(n_per_length):
                key = random_key(rng, digits)
                ids = tokenizer.encode(make_prompt(key, int(length * chars_per_token), depth))
                n_tokens.append(len(ids))
                answer_ids = tokenizer.encode(key)
                out = tokenizer.decode(greedy_continue(model, ids, len(answer_ids) + 1, method, n_global, n_local))
                got = out[:digits]
                exact += got == key
                digit_hits += sum(a == b for a, b in zip(got, key))
            rows.append({"method": method, "length": length, "depth": depth,
                         "tokens": sum(n_tokens) / len(n_tokens), "n": n_per_length, "accuracy": exact / n_per_length,
                         "digit_accuracy": digit_hits / (digits * n_per_length)})
    return rows
