"""A lookup table that never trains: the matrix is a buffer, so it gets no gradient and no
optimizer state, and the Transformer unties the output head from it (`frozen = True`).

The buffer is persistent: it is written once, in model.safetensors, so a checkpoint carries the
exact matrix the model was trained with even if fonts or code change on the loading machine.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FrozenEmbedding(nn.Module):
    frozen = True

    def __init__(self, matrix: torch.Tensor):
        super().__init__()
        self.register_buffer("weight", matrix.detach().to(torch.float32).contiguous(), persistent=True)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return F.embedding(idx, self.weight)


def l2_normalise(matrix: torch.Tensor) -> torch.Tensor:
    return matrix / matrix.norm(dim=1, keepdim=True).clamp_min(1e-12)
