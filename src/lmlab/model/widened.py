"""bf16 linear layers whose products of several rows (prompts, batches) run in fp32, for sampling on
a CPU whose oneDNN has no bf16 path (e.g. AVX2 only, no AVX-512).

Why: on such a CPU PyTorch's bf16 matmul is many times slower than its fp32 one, so a bf16 model
read its prompts far slower than the same model in fp32 (docs/performance.md, Zen 3). Widening the
bf16 weight and rows to fp32 for the call costs little beside the matmul; every bf16 x bf16
product is exact in fp32 and oneDNN sums in fp32 too, so the results differ from bf16 F.linear by
summation order and the final rounding only. One row (batch-1 decoding) reads the bf16 weights as
they are: with lmlab's kernel (lmlab/kernels/bf16.cpp, where it builds), else bf16 F.linear.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def bf16_matmul_is_slow(device: torch.device) -> bool:
    """A CPU whose oneDNN has no bf16 kernels (torch then runs bf16 matmuls on a slow path)."""
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    try:
        return not torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):
        return False


class WidenedLinear(nn.Linear):
    """nn.Linear whose bf16 products of more than one row run in fp32; the same parameters."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from ..kernels import loaded

        self.use_kernel = loaded()  # one row through lmlab::bf16_rows; a plain attribute read when it runs

    @classmethod
    def over(cls, weight: nn.Parameter, bias: nn.Parameter | None = None) -> "WidenedLinear":
        """A layer holding these very parameters (no copy): a linear layer's, or a tied embedding's."""
        layer = cls(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
        layer.weight = weight
        if bias is not None:
            layer.bias = bias
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.dtype != torch.bfloat16 or x.device.type != "cpu":
            return super().forward(x)
        if x.numel() == x.shape[-1]:
            if not self.use_kernel or torch.is_grad_enabled():  # the kernel has no backward
                return super().forward(x)
            y = torch.ops.lmlab.bf16_rows(x.reshape(1, -1), self.weight, self.bias)
            return y.view(*x.shape[:-1], self.out_features)
        bias = None if self.bias is None else self.bias.float()
        return F.linear(x.float(), self.weight.float(), bias).to(x.dtype)

    def extra_repr(self) -> str:
        return super().extra_repr() + ", rows in fp32"


def widen_linears(model: nn.Module) -> int:
    """Make every plain nn.Linear under `model` a WidenedLinear over its own parameters, a tied head
    included (its own layer over the embedding's weight); returns how many."""
    from .swap import replace_linears, untie_head

    untie_head(model, WidenedLinear.over)
    return replace_linears(model, lambda layer: WidenedLinear.over(layer.weight, layer.bias))
