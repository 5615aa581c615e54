"""int8 linear layers for decoding (per-output-channel symmetric scales): weight-only (Int8Linear,
generate.dtype = int8) and with the activations rounded to int8 too (W8A8Linear, w8a8).

Why: decoding at batch 1 reads every weight once per token, and on CPU the bf16 matrix-vector
product runs far below the matmul peak (docs/performance.md). PyTorch's int8 weight-only kernel
(`torch._weight_int8pack_mm`, the one gpt-fast and torchao use on CPU) reads a quarter of fp32's
bytes, and is faster than bf16 dense (docs/performance.md, Generation). Weights
are rounded to int8 per output row, W ~= q * s with s = max|W_row| / 127, so every weight is off by
at most s/2; activations stay in the model's float dtype.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .swap import replace_linears
from .widened import bf16_matmul_is_slow

# the CPU kernel's limits, found by measurement: K must be a multiple of 16 (other K gave wrong
# results or crashed), beyond ~16 rows a dequantised dense matmul is faster (prefill, big batches),
# and fp32 activations are far slower than bf16 (docs/performance.md); where bf16 matmuls are slow
# (model/widened.py) the dequantised product runs in fp32. Off the CPU (no such kernel in this
# torch build) the dequantised matmul is used: correct, not faster.
_KERNEL_K_MULTIPLE = 16
_KERNEL_MAX_ROWS = 16


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 codes [N, K] and fp32 scales [N] with weight ~= codes * scales[:, None]."""
    w = weight.detach().float()
    scales = w.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / 127.0
    codes = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8)
    return codes, scales


class Int8Linear(nn.Module):
    """y = x @ (codes * scales)^T + bias; a drop-in for nn.Linear at inference (no gradients)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype):
        super().__init__()
        codes, scales = quantize_rows(weight)
        self.out_features, self.in_features = codes.shape
        self.register_buffer("codes", codes)
        self.register_buffer("scales", scales.to(dtype))
        self.register_buffer("bias", None if bias is None else bias.detach().to(dtype))
        # a plain attribute read when the layer runs: prompts' bf16 products in fp32 where bf16 is slow
        self.widen_rows = bf16_matmul_is_slow(torch.device("cpu"))

    @classmethod
    def from_linear(cls, linear: nn.Linear, dtype: torch.dtype) -> "Int8Linear":
        return cls(linear.weight, linear.bias, dtype)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantised weight, for code that reads `.weight` (analysis, kNN keys)."""
        return self.codes.to(self.scales.dtype) * self.scales[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).to(self.scales.dtype)
        if (x2.device.type == "cpu" and x2.dtype != torch.float32 and x2.shape[0] <= _KERNEL_MAX_ROWS
                and self.in_features % _KERNEL_K_MULTIPLE == 0):
            y = torch._weight_int8pack_mm(x2.contiguous(), self.codes, self.scales)
        elif self.widen_rows and x2.device.type == "cpu" and x2.dtype == torch.bfloat16:  # model/widened.py
            y = (F.linear(x2.float(), self.codes.float()) * self.scales.float()).to(x2.dtype)
        else:  # scales factor out of the sum: x @ (q s)^T = (x @ q^T) * s
            y = F.linear(x2, self.codes.to(x2.dtype)) * self.scales
        if self.bias is not None:
            y = y + self.bias
        return y.view(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights"


def quantize_activations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer-valued fp32 codes in [-127, 127] and fp32 scales [rows, 1]
    with x ~= codes * scales, one scale per row (per token): W8A8Linear's activations."""
    xf = x.float()
    scales = xf.abs().amax(dim=-1, keepdim=True).clamp(min=torch.finfo(torch.float32).tiny) / 127.0
    return torch.round(xf / scales).clamp(-127, 127), scales


class W8A8Linear(Int8Linear):
    """Int8Linear whose activations are rounded to int8 too, per row (per token), at run time:
    y = (q_x @ codes^T) * s_x * s_w, the products summed as integers. What llama.cpp's q8_0 computes
    (per 32-value block there), and faster than weight-only int8 on a CPU (AVX512-VNNI or AVX2): one
    row at a time (decoding) goes to lmlab::w8a8_rows (lmlab/kernels/w8a8.cpp), where infer/prepare.py
    has built it, and so do prompts where the kernel is not the VNNI one; otherwise more rows
    (prompts), or no kernel, compute the same numbers in torch ops (on a CPU
    with `torch._int_mm`'s int32 sums; elsewhere an fp32 matmul, exact while the integer sums stay
    below 2^24, float32's exact-integer range)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype):
        super().__init__(weight, bias, dtype)
        self.register_buffer("code_sums", self.codes.sum(dim=1, dtype=torch.int32))  # the kernel's offset term
        from ..kernels import isa, loaded

        # plain attributes read when the layer runs (compiled graphs keep what they were when traced)
        self.use_kernel = loaded()
        # prompts too, but for the VNNI build: torch._int_mm is fast only with AVX512-VNNI (oneDNN), and
        # without it the kernel's AVX2 loop was many times faster (docs/performance.md, Zen 3)
        self.kernel_all_rows = self.use_kernel and isa() != "avx512_vnni"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if self.use_kernel and x2.device.type == "cpu" and (x2.shape[0] == 1 or self.kernel_all_rows):
            y = torch.ops.lmlab.w8a8_rows(x2, self.codes, self.scales, self.code_sums)
        else:
            q, s = quantize_activations(x2)
            if x2.device.type == "cpu":  # exact int32 sums, faster than an fp32 matmul (docs/performance.md, w8a8)
                acc = torch._int_mm(q.to(torch.int8), self.codes.t()).float()
            else:
                acc = F.linear(q, self.codes.float())
            y = (acc * (s * self.scales.float())).to(x2.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights and activations"


def quantize_linears(module: nn.Module, dtype: torch.dtype, layer: type = Int8Linear) -> int:
    """Replace every plain nn.Linear under `module` by an Int8Linear (or `layer`, e.g. W8A8Linear);
    returns how many."""
    return replace_linears(module, lambda linear: layer.from_linear(linear, dtype))
