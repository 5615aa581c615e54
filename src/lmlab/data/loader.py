"""Batches of (input, target) windows. The batch of a step depends only on (seed, step, micro),
so a resumed run sees exactly the batches an uninterrupted run would."""
from __future__ import annotations

import numpy as np
import torch


def random_batch(ids: np.ndarray, batch_size: int, context: int, seed: int, step: int, micro: int = 0):
    rng = np.random.default_rng([seed, step, micro])
    firsts = getattr(ids, "firsts", None)  # task examples (data/task_tokens.py): windows start at one
    if firsts is not None:
        firsts = firsts[firsts < len(ids) - context]
        return windows(ids, firsts[rng.integers(0, len(firsts), size=batch_size)], context)
    starts = rng.integers(0, len(ids) - context, size=batch_size)
    return windows(ids, starts, context)


def windows(ids: np.ndarray, starts: np.ndarray, context: int):
    idx = starts[:, None] + np.arange(context + 1)[None, :]
    block = torch.from_numpy(np.asarray(getattr(ids, "ids", ids)[idx], dtype=np.int64))
    x, y = block[:, :-1], block[:, 1:]
    answer = getattr(ids, "answer", None)
    if answer is not None:  # task examples: targets only on answers whose example began in the window
        keep = answer[idx[:, 1:]] & (ids.start[idx[:, 1:]] >= starts[:, None])
        y = y.masked_fill(torch.from_numpy(~keep), -1)
    return x, y


def eval_starts(n_tokens: int, n_windows: int, context: int) -> np.ndarray:
    """Fixed, evenly spaced windows over a split: every evaluation scores the same text."""
    last = n_tokens - context - 1
    return np.linspace(0, max(last, 0), num=n_windows).astype(np.int64)
