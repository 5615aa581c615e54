"""bf16 linear layers with their weights prepacked for oneDNN, for sampling on a CPU.

Why: at batch 1 the decoder is a chain of matrix-vector products, and PyTorch's default bf16 path
for them streams weights far slower than the fp32 path does. Given the weight once in its own
blocked layout (`torch.ops.mkldnn._reorder_linear_weight`, what torch.compile's CPU freezing pass
uses), oneDNN computes the same products to the bit (tested) and faster per matrix at one row
(figures: docs/performance.md, Generation). fp32 weights gained nothing this way, so only bf16 is packed.
"""
from __future__ import annotations

import torch
from torch import nn

from .swap import replace_linears


def can_pack(device: torch.device, dtype: torch.dtype) -> bool:
    """bf16 on a CPU whose oneDNN runs bf16 natively (elsewhere it may refuse the packed layout)."""
    if device.type != "cpu" or dtype != torch.bfloat16 or not torch.backends.mkldnn.is_available():
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class PackedLinear(nn.Module):
    """y = x @ W^T + b with W held in oneDNN's layout; inference only (no gradients)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        # a plain attribute, not a buffer: state_dict and .to() have no use for an opaque layout
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), 1)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @property
    def weight(self) -> torch.Tensor:
        """The weight in the usual layout (exactly), for code that reads `.weight`."""
        return self.packed.to_dense()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x.to(torch.bfloat16), self.packed, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bf16 packed for oneDNN"


def pack_linears(module: nn.Module) -> int:
    """Replace every plain bf16 nn.Linear under `module` by a PackedLinear; returns how many."""
    return replace_linears(module, lambda layer: PackedLinear(layer.weight, layer.bias)
                           if layer.weight.dtype == torch.bfloat16 else None)
