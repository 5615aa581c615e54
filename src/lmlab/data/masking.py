"""Which positions a masked LM must predict: exactly round(rate * T) per row (at least one), as
single tokens or as spans of geometric length (SpanBERT's scheme). Training (train/objectives.py)
and evaluation (eval/mlm.py) draw them the same way."""
from __future__ import annotations

import numpy as np


def extra_id(tokenizer) -> int:
    """The one id a non-causal objective adds after the tokenizer's: [MASK] for mlm, the
    source/target separator for denoise (the model's vocabulary has one more row for it)."""
    return tokenizer.vocab_size


def masked_count(length: int, rate: float) -> int:
    return min(length, max(1, round(rate * length)))


def choose_positions(rng: np.random.Generator, batch: int, length: int, rate: float,
                     mean_span: float = 1.0) -> np.ndarray:
    """A bool array [batch, length], True where a token is hidden."""
    n = masked_count(length, rate)
    chosen = np.zeros((batch, length), dtype=bool)
    if mean_span <= 1.0:
        for row in chosen:
            row[rng.choice(length, size=n, replace=False)] = True
        return chosen
    longest = max(1, int(round(3 * mean_span)))  # clip the geometric tail (SpanBERT clips at 10 for mean 3.8)
    for row in chosen:
        while row.sum() < n:
            span = min(int(rng.geometric(1.0 / mean_span)), longest)
            start = int(rng.integers(0, length))
            free = np.flatnonzero(~row[start:start + span])  # overlaps merge; stop exactly at n
            row[start + free[: n - int(row.sum())]] = True
    return chosen
