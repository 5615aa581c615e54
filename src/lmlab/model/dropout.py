"""Dropout with a cheap keep-mask on CPU.

torch's CPU dropout draws one Bernoulli sample per element from the Mersenne twister; at the
shakespeare-char shape that was a large share of a training step (docs/performance.md, Training).
Here one 64-bit draw gives four 16-bit uniform lanes, so a mask costs about a quarter of the
generator calls and no float conversion. The drop probability is rounded to
the nearest multiple of 1/65536 and kept activations are scaled by 1 / (1 - that rounded p), so the
expected output still equals the input exactly. Other devices use torch's own dropout (CUDA's
Philox is already fast). Masks come from torch's default generator, so seeding and checkpointed RNG
state make runs reproducible as before.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LANES = 65536  # resolution of the drop probability: 16-bit lanes


def drop_threshold(p: float) -> int:
    """Number of the 65536 lane values that drop an element."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    return round(p * LANES)


def keep_mask(shape, p: float, device=None, dtype=torch.bool) -> torch.Tensor:
    """1 (True) with probability 1 - drop_threshold(p) / 65536, else 0, independently per element.

    With a float dtype the mask is made through uint8, which converts several times faster than bool.
    """
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-2**63, None)
    lanes = words.view(torch.int16)[:n].view(shape)  # uniform over [-32768, 32767]
    keep = lanes >= drop_threshold(p) - LANES // 2
    return keep if dtype == torch.bool else keep.view(torch.uint8).to(dtype)


def keep_scale(p: float) -> float:
    """1 / P(keep) for the rounded probability: keeps E[dropout(x)] == x."""
    return LANES / (LANES - drop_threshold(p))


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    if drop_threshold(p) >= LANES:
        return x * 0.0
    return x * keep_mask(x.shape, p, x.device, x.dtype).mul_(keep_scale(p))


class Dropout(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        drop_threshold(p)  # validates
        self.p = p

    def forward(self, x):
        return dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"
