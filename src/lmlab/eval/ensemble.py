"""A Bayesian ensemble of domain experts (Branch-Train-Merge, Li et al. 2022) scoring text.

    p(x_t | x_<t) = sum_j p_j(x_t | x_<t) P(D=j | x_<t),
    P(D=j | x_<t) = P(D=j) prod_{i<t} p_j(x_i | x_<i) / sum_k (same for k)       (Bayes' rule)

Each expert sees the same windows as `eval.perplexity` (windows of `context` targets tile the
text), and the posterior starts again from the prior at every window start: the experts, too,
see nothing before it. The prior P(D=j) is the posterior at the end of a few dev sequences,
averaged over them (from a uniform start), or uniform. Everything is in log space, float64.
"""
from __future__ import annotations

import numpy as np

from ..errors import LmlabError
from .perplexity import summarize, token_losses


def logsumexp(a: np.ndarray, axis: int = 0) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def expert_logprobs(models, ids: np.ndarray, batch_size: int = 8, context: int | None = None) -> np.ndarray:
    """[experts, len(ids) - 1]: log p_j of each target given its window's preceding ids."""
    return np.stack([-token_losses(m, ids, batch_size, context) for m in models])


def log_posteriors(log_prior: np.ndarray, logprobs: np.ndarray, context: int) -> np.ndarray:
    """[experts, targets]: log P(D=j | the window's ids before target t), by Bayes' rule."""
    n = logprobs.shape[1]
    before = np.cumsum(logprobs, axis=1) - logprobs  # sum of log-likelihoods of earlier targets
    window_start = (np.arange(n) // context) * context
    prefix = before - before[:, window_start]  # ... within the window only
    joint = log_prior[:, None] + prefix
    return joint - logsumexp(joint, axis=0)[None, :]


def mixture_logprobs(log_prior: np.ndarray, logprobs: np.ndarray, context: int) -> np.ndarray:
    """[targets]: log of the posterior-weighted mixture's probability of each target."""
    return logsumexp(log_posteriors(log_prior, logprobs, context) + logprobs, axis=0)


def uniform_log_prior(n: int) -> np.ndarray:
    return np.full(n, -np.log(n))


def dev_sequences(ids: np.ndarray, n: int, context: int) -> list[np.ndarray]:
    """n windows of context + 1 ids, evenly spaced over ids (fewer if ids is short)."""
    ids = np.asarray(ids, dtype=np.int64)
    span = context + 1
    if len(ids) < 2:
        raise LmlabError("the dev text needs at least two tokens")
    if len(ids) <= span:
        return [ids]
    starts = np.linspace(0, len(ids) - span, num=min(n, len(ids) // span)).astype(int)
    return [ids[s:s + span] for s in sorted(set(starts.tolist()))]


def prior_from_sequences(models, sequences: list[np.ndarray], batch_size: int = 8) -> np.ndarray:
    """log P(D=j): the posterior after each dev sequence (at most one window each, from a uniform
    prior), averaged over the sequences."""
    if not sequences:
        raise LmlabError("a prior needs at least one dev sequence")
    context = models[0].cfg.context
    posts = []
    for seq in sequences:
        seq = np.asarray(seq[:context + 1], dtype=np.int64)
        if len(seq) < 2:
            raise LmlabError("a dev sequence needs at least two tokens")
        lp = expert_logprobs(models, seq, batch_size, context)
        joint = uniform_log_prior(len(models)) + lp.sum(axis=1)
        posts.append(np.exp(joint - logsumexp(joint)))
    return np.log(np.mean(posts, axis=0))


def evaluate_ids(models, ids: np.ndarray, token_nbytes: np.ndarray, log_prior: np.ndarray | None = None,
                 batch_size: int = 8) -> dict:
    """Loss, ppl and bpb of the ensemble on ids, next to each expert's alone, and the mean posterior."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) < 2:
        raise LmlabError("need at least two tokens to evaluate")
    context = min(m.cfg.context for m in models)
    log_prior = uniform_log_prior(len(models)) if log_prior is None else np.asarray(log_prior, dtype=np.float64)
    if log_prior.shape != (len(models),):
        raise LmlabError(f"the prior has {log_prior.size} entries for {len(models)} experts")
    lp = expert_logprobs(models, ids, batch_size, context)
    nbytes = token_nbytes[ids[1:]]
    out = summarize(-mixture_logprobs(log_prior, lp, context), nbytes)
    out["experts"] = [summarize(-row, nbytes) for row in lp]
    out["prior"] = np.exp(log_prior).tolist()
    out["mean_posterior"] = np.exp(log_posteriors(log_prior, lp, context)).mean(axis=1).tolist()
    return out
