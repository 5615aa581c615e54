"""Texts longer than the context: the windows analyses run over, and the refusal for prompts.

A text is tiled exactly as lmlab.eval.perplexity does: windows of up to `context` input tokens,
each token predicted once, every window starting cold. So the last layer's logit-lens bits per
byte equal `lmlab eval --data` on the same text. A prompt (one sequence analysed as a whole:
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


def prompt_ids(tokenizer, prompt: str, context: int) -> list[int]:
    """The prompt's ids; LmlabError if it is empty or longer than the model's context."""
    ids = tokenizer.encode(prompt)
    if not ids:
        raise LmlabError("the prompt is empty")
    if len(ids) > context:
        raise LmlabError(f"the prompt is {len(ids)} tokens, longer than the model's context ({context}); "
                         f"shorten it, or pass a text file with --text, which is analysed in windows")
    return ids
