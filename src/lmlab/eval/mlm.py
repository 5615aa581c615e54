"""Evaluation of masked LMs: masked-token loss and accuracy, and pseudo-perplexity.

- Masked tokens: in each window the positions a training step would choose (data/masking.py,
  seeded per window) are all replaced by [MASK]; loss, accuracy and bits per byte are over
  those positions only.
- Pseudo-perplexity (Salazar et al. 2020): every position is masked in turn, alone, and scored
  given all the others: PPPL = exp(-mean_t log p(x_t | x_{\\t})). A window of T tokens costs T
  forward passes, run as rows of one batch. Not comparable with a causal LM's perplexity (the
  model sees both sides), but comparable across masked LMs of the same tokenizer.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..data import loader
from ..data.masking import choose_positions, extra_id
from ..device import autocast
from ..errors import LmlabError


def mask_id_of(model, tokenizer) -> int:
    """[MASK] is the id after the tokenizer's (train/objectives.py); the model must have it."""
    mask_id = extra_id(tokenizer)
    if model.cfg.vocab_size <= mask_id:
        raise LmlabError("this model has no [MASK] id: it was not trained with train.objective = \"mlm\"")
    return mask_id


def head_logits(model, hidden: torch.Tensor) -> torch.Tensor:
    return F.linear(hidden, model.head_weight())


@torch.no_grad()
def masked_scores(model, windows: torch.Tensor, token_nbytes: np.ndarray, mask_id: int, rate: float = 0.15,
                  mean_span: float = 1.0, seed: int = 0, batch_size: int = 16, dtype=torch.float32) -> dict:
    """Masked-token loss (nats), accuracy and bits per byte over windows [N, T]."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    N, T = windows.shape
    nats, correct, count, nbytes = 0.0, 0, 0, 0
    nb = torch.from_numpy(np.asarray(token_nbytes))
    for i in range(0, N, batch_size):
        x = windows[i:i + batch_size]
        chosen = torch.from_numpy(np.concatenate(
            [choose_positions(np.random.default_rng([seed, i + r]), 1, T, rate, mean_span) for r in range(len(x))]))
        inputs = torch.where(chosen, torch.full_like(x, mask_id), x).to(device)
        with autocast(device, dtype):
            h = model.hidden(inputs)
        logits = head_logits(model, h[chosen.to(device)].float()).float()
        targets = x[chosen].to(device)
        nats += float(F.cross_entropy(logits, targets, reduction="sum"))
        correct += int((logits.argmax(-1) == targets).sum())
        count += int(targets.numel())
        nbytes += int(nb[targets.cpu()].sum())
    model.train(was_training)
    return {"masked_loss": nats / max(count, 1), "masked_acc": correct / max(count, 1),
            "masked_bpb": nats / math.log(2) / max(nbytes, 1), "masked_tokens": count}


def masked_split_scores(model, ids: np.ndarray, token_nbytes: np.ndarray, mask_id: int, n_windows: int,
                        batch_size: int, context: int, device, dtype, rate: float = 0.15,
                        mean_span: float = 1.0) -> dict:
    """The training loop's validation for mlm: fixed windows, fixed masks (val_* keys)."""
    starts = loader.eval_starts(len(ids), n_windows, context)
    windows, _ = loader.windows(ids, starts, context)
    s = masked_scores(model, windows, token_nbytes, mask_id, rate, mean_span, 0, batch_size, dtype)
    return {"val_loss": s["masked_loss"], "val_ppl": math.exp(min(s["masked_loss"], 700)),
            "val_bpb": s["masked_bpb"], "val_masked_acc": s["masked_acc"]}


@torch.no_grad()
def pseudo_log_likelihoods(model, window: torch.Tensor, mask_id: int, rows: int = 64) -> torch.Tensor:
    """log p(x_t | all other tokens) for every t of one window [T] (fp32, [T])."""
    model.eval()
    device = next(model.parameters()).device
    T = window.numel()
    out = torch.empty(T, dtype=torch.float32)
    for a in range(0, T, rows):
        pos = torch.arange(a, min(a + rows, T))
        x = window.to(device).repeat(len(pos), 1)
        x[torch.arange(len(pos)), pos.to(device)] = mask_id
        h = model.hidden(x)[torch.arange(len(pos)), pos.to(device)]
        logp = F.log_softmax(head_logits(model, h.float()).float(), dim=-1)
        out[pos] = logp.gather(1, window[pos].to(device)[:, None])[:, 0].cpu()
    return out


def pseudo_perplexity(model, windows: torch.Tensor, token_nbytes: np.ndarray, mask_id: int, rows: int = 64) -> dict:
    nats = torch.cat([-pseudo_log_likelihoods(model, w, mask_id, rows) for w in windows]).double()
    nbytes = int(np.asarray(token_nbytes)[windows.reshape(-1).numpy()].sum())
    loss = float(nats.mean())
    return {"pseudo_loss": loss, "pseudo_ppl": math.exp(min(loss, 700)),
            "pseudo_bpb": float(nats.sum()) / math.log(2) / max(nbytes, 1), "pseudo_tokens": int(nats.numel())}


def tile(ids: np.ndarray, context: int) -> torch.Tensor:
    """Non-overlapping windows of `context` ids (the tail that fills no window is dropped;
    a text shorter than the context is one window)."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) < 2:
        raise LmlabError("need at least two tokens to evaluate")
    T = min(context, len(ids))
    n = len(ids) // T
    return torch.from_numpy(ids[: n * T].reshape(n, T).copy())


def evaluate_mlm(model, tokenizer, ids: np.ndarray, batch_size: int = 8, pseudo_tokens: int = 4096,
                 rate: float = 0.15, mean_span: float = 1.0, seed: int = 0) -> dict:
    """Masked-token scores over every window of ids, pseudo-perplexity over the first
    `pseudo_tokens` of them (it costs one forward pass per token)."""
    mask_id = mask_id_of(model, tokenizer)
    windows = tile(ids, model.cfg.context)
    nbytes = tokenizer.token_nbytes()
    result = masked_scores(model, windows, nbytes, mask_id, rate, mean_span, seed, batch_size)
    n_pseudo = max(1, min(len(windows), -(-pseudo_tokens // windows.shape[1])))
    result.update(pseudo_perplexity(model, windows[:n_pseudo], nbytes, mask_id))
    return {"objective": "mlm", "mask_rate": rate, **result}
