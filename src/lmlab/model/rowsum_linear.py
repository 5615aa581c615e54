"""Linear layers that, for a single input row, compute y = W x as one multiply-and-sum over W's rows,
for the compiled CPU decoder at batch 1.

Why: a batch-1 decoding step is a chain of matrix-vector products, bound by how fast the weights
stream from memory. Written as `(W.float() * x).sum(-1)`, inductor turns each into one vectorised
loop that reads W at its stored precision (fp32, bf16, or int8 codes) and widens it in registers;
at the 100M shape on one core this streamed the weights 1.3-2x as fast as F.linear's GEMV,
`torch._weight_int8pack_mm` or oneDNN's bf16 kernel (docs/performance.md, compiled decoder).
Eager it is slower (the widened copy of W is materialised), so it is only swapped in for compiling.
More than one row (prefill, batches) goes to the wrapped layer's own kernel.
"""
from __future__ import annotations

import torch
from torch import nn

from .int8 import Int8Linear
from .widened import WidenedLinear


class RowSumLinear(nn.Module):
    """Wraps an nn.Linear or Int8Linear (kept as `inner`, so its weights and state are the same
    tensors); inference only."""

    chunks = 1  # see forward; benchmarks/decode_rowsum.py --chunks compares another value
    realize_row = True  # see forward; benchmarks/decode_rowsum.py --unrealized compares False

    def __init__(self, inner: nn.Module):
        super().__init__()
        if not isinstance(inner, (nn.Linear, Int8Linear)):  # WidenedLinear is an nn.Linear
            raise TypeError(f"RowSumLinear wraps nn.Linear or Int8Linear, not {type(inner).__name__}")
        self.inner = inner
        self.in_features, self.out_features = inner.in_features, inner.out_features

    @property
    def weight(self) -> torch.Tensor:
        return self.inner.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.inner.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() != x.shape[-1]:  # more than one row: the wrapped layer's matrix kernel
            return self.inner(x)
        if isinstance(self.inner, WidenedLinear) and self.inner.use_kernel:  # lmlab's bf16 kernel: W read faster
            return self.inner(x)
        row = x.reshape(1, -1).float()
        if self.realize_row:
            # Inductor inlines the row's producers (the residual adds, the norm) into the loop over W,
            # i.e. recomputes them for every one of W's rows; as_strided needs a stored tensor, so the
            # row is computed once into a buffer and the loop reads W and that buffer only
            row = torch.as_strided(row, row.shape, row.stride())
        w = self.inner.codes if isinstance(self.inner, Int8Linear) else self.inner.weight
        c = self.chunks if self.in_features % self.chunks == 0 else 1
        # c > 1: each row's sum in c parts, then their sum (the loop structure inductor generates differs)
        if c == 1:
            y = (w.float() * row).sum(-1)
        else:
            y = (w.view(self.out_features, c, -1).float() * row.view(1, c, -1)).sum(-1).sum(-1)
        if isinstance(self.inner, Int8Linear):  # the scales factor out of each row's sum
            y = y * self.inner.scales.float()
        if self.inner.bias is not None:
            y = y + self.inner.bias.float()
        return y.to(x.dtype).view(*x.shape[:-1], self.out_features)


def wrap_linears(model: nn.Module) -> int:
    """Wrap every nn.Linear (WidenedLinear too) and Int8Linear under `model` (a tied head gets its own layer over the
    embedding's weight, shared); returns how many."""
    from .swap import untie_head

    def head(weight):
        layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device="meta")
        layer.weight = weight  # the embedding's own parameter: no copy
        return layer

    untie_head(model, head)

    def wrap(module: nn.Module) -> int:
        n = 0
        for name, child in list(module.named_children()):
            if type(child) in (nn.Linear, WidenedLinear, Int8Linear):
                setattr(module, name, RowSumLinear(child))
                n += 1
            elif not isinstance(child, RowSumLinear):
                n += wrap(child)
        return n

    return wrap(model)
