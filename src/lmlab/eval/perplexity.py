"""Loss, perplexity and bits per byte of a text under a model.

Windows of `context` targets tile the text; each token is predicted once, seeing up to
`context` earlier tokens of its window (the first window starts cold; a last, shorter window
sees the tokens before it, as lm-evaluation-harness's rolling windows do). Bits per byte
divides the total log-loss by the UTF-8 bytes of the predicted tokens, so tokenizers compare
fairly.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import LmlabError


@torch.no_grad()
def token_losses(model, ids: np.ndarray, batch_size: int = 8, context: int | None = None) -> np.ndarray:
    """Per-token loss in nats for ids[1:], each token predicted from its window's preceding ids."""
    model.eval()
    context = context or model.cfg.context
    device = next(model.parameters()).device
    ids = np.asarray(ids, dtype=np.int64)
    n_targets = len(ids) - 1
    starts = list(range(0, n_targets, context))
    out = np.zeros(n_targets, dtype=np.float64)
    for i in range(0, len(starts), batch_size):
        chunk = starts[i:i + batch_size]
        length = min(context, n_targets - chunk[0])
        same = [s for s in chunk if min(context, n_targets - s) == length]
        x = torch.from_numpy(np.stack([ids[s:s + length] for s in same])).to(device)
        y = torch.from_numpy(np.stack([ids[s + 1:s + 1 + length] for s in same])).to(device)
        logits, _ = model(x)
        losses = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none").view(len(same), -1)
        for row, s in enumerate(same):
            out[s:s + length] = losses[row].double().cpu().numpy()
        for s in chunk[len(same):]:  # the last, shorter window, in a full-length window ending with it
            lo = max(0, n_targets - context)
            out[s:] = token_losses(model, ids[lo:], 1, context)[s - lo:]
    return out


def summarize(losses: np.ndarray, target_nbytes: np.ndarray) -> dict:
    nats = float(losses.sum())
    n = int(losses.size)
    nbytes = int(target_nbytes.sum())
    loss = nats / max(n, 1)
    return {"loss": loss, "ppl": math.exp(min(loss, 700)), "bpb": nats / math.log(2) / max(nbytes, 1),
            "tokens": n, "bytes": nbytes}


def evaluate_ids(model, ids, token_nbytes: np.ndarray, batch_size: int = 8, context: int | None = None) -> dict:
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) < 2:
        raise LmlabError("need at least two tokens to evaluate")
    losses = token_losses(model, ids, batch_size, context)
    return summarize(losses, token_nbytes[ids[1:]])


def evaluate_text(model, tokenizer, text: str, batch_size: int = 8) -> dict:
    return evaluate_ids(model, tokenizer.encode(text), tokenizer.token_nbytes(), batch_size)
