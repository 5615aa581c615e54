"""Rotary position embedding (RoPE), applied to queries and keys at absolute positions."""
from __future__ import annotations

import torch


def rope_tables(head_dim: int, max_pos: int, base: float, device=None):
    """cos/sin tables of shape [max_pos, head_dim/2], computed in fp32."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    pos = torch.arange(max_pos, device=device, dtype=torch.float32)
    angles = torch.outer(pos, inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (first half, second half) of the last dim; x: [B, H, T, D], cos/sin: [T, D/2]."""
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d], x[..., d:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def token_positions(start, T: int, device=None) -> torch.Tensor:
    """Positions of T new tokens after `start`: [T] for an int, [B, T] for per-row starts [B]
    (a batch whose rows hold sequences of different lengths)."""
    if isinstance(start, torch.Tensor):
        return start[:, None] + torch.arange(T, device=start.device)
    return torch.arange(start, start + T, device=device)
