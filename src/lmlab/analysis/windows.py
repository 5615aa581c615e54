"""Texts longer than the context: the windows analyses run over, and the refusal for prompts.

A text is tiled as lmlab.eval.perplexity does (`scored_windows`): windows of `context` input
tokens, each token predicted once, and a last, shorter window seeing the tokens before it. So the
last layer's logit-lens bits per byte equal `lmlab eval --data` on the same text. `windows` keeps
every window cold (attention statistics want each window to start at position 0). A prompt (one sequence analysed as a whole:
attention patterns, trajectories) longer than the context is refused instead.
"""
from __future__ import annotations

import numpy as np

from ..errors import LmlabError


def windows(ids, context: int):
    """(inputs, targets) numpy pairs covering ids[1:] once each, in windows of <= context tokens."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) < 2:
        raise LmlabError("the text needs at least two tokens")
    n = len(ids) - 1
    for s in range(0, n, context):
        length = min(context, n - s)
        yield ids[s:s + length], ids[s + 1:s + 1 + length]


def scored_windows(ids, context: int):
    """(inputs, targets, first) triples: only targets[first:] are scored, so each of ids[1:] is
    scored once; the last, shorter window is a full-length one ending with the text."""
    ids = np.asarray(ids, dtype=np.int64)
    n = len(ids) - 1
    for x, y in windows(ids, context):
        start = n - len(y) if len(y) < context and n > context else None
        if start is None:
            yield x, y, 0
        else:
            lo = n - context
            yield ids[lo:lo + context], ids[lo + 1:lo + 1 + context], start - lo


def prompt_ids(tokenizer, prompt: str, context: int) -> list[int]:
    """The prompt's ids; LmlabError if it is empty or longer than the model's context."""
    ids = tokenizer.encode(prompt)
    if not ids:
        raise LmlabError("the prompt is empty")
    if len(ids) > context:
        raise LmlabError(f"the prompt is {len(ids)} tokens, longer than the model's context ({context}); "
                         f"shorten it, or pass a text file with --text, which is analysed in windows")
    return ids
