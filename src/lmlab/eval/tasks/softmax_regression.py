"""In-context softmax regression: sequences of (x, y) pairs with y = softmax(A x), one A per sequence.

The continuous counterpart of the token tasks (no tokenizer): x ~ N(0, I_dim), A ~ N(0, scale^2 / dim)
so that the logits A x have standard deviation about `scale`. The baseline a model's in-context
prediction is compared with is one gradient-descent step on the in-context pairs, from W = 0, of
the mean cross-entropy between softmax(W x_i) and y_i ("weight shifting"):

    grad L(0) = (1/n) sum_i (u - y_i) x_i^T,  u = the uniform distribution,  W_1 = -lr * grad L(0).

At W = 0 the paper's squared loss |softmax(W x) - y|^2 has the same gradient up to the factor 2/c
(the softmax Jacobian at u is (I - 11^T/c)/c and 1^T (u - y) = 0), so one step of either is the
same update up to its step size.
"""
from __future__ import annotations

import torch


def sample(n_seqs: int, n_points: int, dim: int, classes: int, generator: torch.Generator,
           scale: float = 2.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x [B, n, dim], y [B, n, classes], A [B, classes, dim])."""
    A = torch.randn(n_seqs, classes, dim, generator=generator) * (scale / dim ** 0.5)
    x = torch.randn(n_seqs, n_points, dim, generator=generator)
    return x, torch.softmax(x @ A.transpose(1, 2), -1), A


def gd_gradient(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[B, classes, dim]: gradient at W = 0 of the mean soft cross-entropy over the pairs (x [B, n, dim], y [B, n, c])."""
    u = torch.full_like(y, 1.0 / y.shape[-1])
    return (u - y).transpose(1, 2) @ x / x.shape[1]


def gd_predict(x: torch.Tensor, y: torch.Tensor, queries: torch.Tensor, lr: float) -> torch.Tensor:
    """[B, Q, classes]: softmax(W_1 q) for each query q [B, Q, dim] after one step of size `lr`."""
    W = -lr * gd_gradient(x, y)
    return torch.softmax(queries @ W.transpose(1, 2), -1)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -sum_c target_c log softmax(logits)_c."""
    return -(target * torch.log_softmax(logits, -1)).sum(-1).mean()
