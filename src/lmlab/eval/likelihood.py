"""Token-level scoring shared by the multiple-choice, task and harness evaluations.

`continuation_scores` gives log p(continuation | context) and whether the continuation is the
greedy one, for pairs of token lists, batched; `greedy_tokens` decodes greedily. Both call only
`model(ids) -> (logits, _)` and read `model.cfg.context`, so a stub model can stand in.
A context is cut from the left so that context + continuation fit the model's window.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import LmlabError


def _device(model):
    return next(model.parameters()).device


@torch.no_grad()
def continuation_scores(model, pairs: list[tuple[list[int], list[int]]], batch_size: int = 16) -> list[tuple[float, bool]]:
    """(sum of log-probabilities in nats, is greedy) for each (context ids, continuation ids).

    Rows are right-padded in batches of similar length (longest first); the model is causal, so
    padding after a row's last token changes none of its logits."""
    model.eval()
    window = model.cfg.context
    encoded = []
    for ctx, cont in pairs:
        if not cont:
            raise LmlabError("a continuation is empty")
        if not ctx:
            raise LmlabError("a context is empty; begin it with the end-of-text id")
        if len(cont) > window:
            raise LmlabError(f"a continuation of {len(cont)} tokens does not fit model.context={window}")
        encoded.append(((list(ctx) + list(cont))[-(window + 1):], len(cont)))
    out: list[tuple[float, bool]] = [(0.0, False)] * len(encoded)
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]))
    device = _device(model)
    for b in range(0, len(order), batch_size):
        idx = order[b:b + batch_size]
        length = len(encoded[idx[0]][0]) - 1
        x = torch.zeros(len(idx), length, dtype=torch.long)
        y = torch.full((len(idx), length), -1, dtype=torch.long)
        for row, i in enumerate(idx):
            full, n = encoded[i]
            x[row, :len(full) - 1] = torch.tensor(full[:-1])
            y[row, len(full) - 1 - n:len(full) - 1] = torch.tensor(full[-n:])
        logits, _ = model(x.to(device))
        logp = F.log_softmax(logits.float(), dim=-1).cpu()
        keep = y >= 0
        picked = logp.gather(-1, y.clamp_min(0)[..., None])[..., 0] * keep
        greedy = (logp.argmax(-1) == y) | ~keep
        for row, i in enumerate(idx):
            out[i] = (float(picked[row].double().sum()), bool(greedy[row].all()))
    return out


@torch.no_grad()
def greedy_tokens(model, prompts: list[list[int]], n_new: list[int], batch_size: int = 16,
                  finished: Callable[[int, list[int]], bool] | None = None) -> list[list[int]]:
    """Greedy continuations: `n_new[i]` tokens after prompt i, or fewer once every row of its
    batch is `finished(i, tokens so far)` (the caller trims what follows a stop).

    Prompts of one length and budget run together; each step re-reads the last `context` tokens
    (no cache: any model object works, and prompts may be longer than the window)."""
    model.eval()
    window = model.cfg.context
    device = _device(model)
    out: list[list[int]] = [[] for _ in prompts]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (p, n) in enumerate(zip(prompts, n_new)):
        if not p:
            raise LmlabError("a prompt is empty; begin it with the end-of-text id")
        groups.setdefault((len(p), n), []).append(i)
    for (start, n), members in sorted(groups.items()):
        for b in range(0, len(members), batch_size):
            idx = members[b:b + batch_size]
            seq = torch.tensor([prompts[i] for i in idx], dtype=torch.long, device=device)
            for _ in range(n):
                nxt = model(seq[:, -window:])[0][:, -1].argmax(-1)
                seq = torch.cat([seq, nxt[:, None]], dim=1)
                if finished is not None and all(finished(i, row[start:]) for i, row in zip(idx, seq.tolist())):
                    break
            for i, row in zip(idx, seq[:, start:].tolist()):
                out[i] = row
    return out
