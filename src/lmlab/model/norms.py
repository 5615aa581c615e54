"""Normalisation layers chosen by `model.norm`: layernorm, rmsnorm, crmsnorm.

CRMSNorm (Jiang et al. 2023) normalises a zero-mean vector stored with d-1 coordinates: the last
coordinate is implicit, minus the sum of the others. A crmsnorm model therefore carries a d-1 wide
residual stream (see `stream_width`, `to_stream`, `narrow_writers`): every residual-writing linear
(marked `residual_out`) has d-1 output rows, the embedding sum is centred once and its last coordinate
dropped, and each CRMSNorm rebuilds the full d-vector so the mixers keep their d-wide inputs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry
from .hooks import HookPoint


def explicit_norm(x, scale_hook: HookPoint, eps: float, weight, bias, centre: bool):
    """The norm written out for analysis: the divisor [..., 1] passes through `scale_hook`, which
    may replace it (e.g. a clean run's scale, to make the norm linear for attribution)."""
    if centre:
        x = x - x.mean(-1, keepdim=True)
    y = x / scale_hook((x.pow(2).mean(-1, keepdim=True) + eps).sqrt())
    y = y if weight is None else y * weight
    return y if bias is None else y + bias


NORMS = Registry("model.norm")  # kind -> class(d, eps=, bias=, affine=)


@NORMS.register("layernorm")
class LayerNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-5, bias: bool = False, affine: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d)) if affine else None
        self.bias = nn.Parameter(torch.zeros(d)) if bias and affine else None
        self.eps = eps
        self.hook_scale = HookPoint()

    def forward(self, x):
        if self.hook_scale.active:
            return explicit_norm(x, self.hook_scale, self.eps, self.weight, self.bias, centre=True)
        return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)


@NORMS.register("rmsnorm")
class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-5, bias: bool = False, affine: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d)) if affine else None
        self.eps = eps
        self.hook_scale = HookPoint()

    def forward(self, x):
        if self.hook_scale.active:
            return explicit_norm(x, self.hook_scale, self.eps, self.weight, None, centre=False)
        return F.rms_norm(x, x.shape[-1:], self.weight, self.eps)


@NORMS.register("crmsnorm")
class CRMSNorm(nn.Module):
    """x' [..., d-1] (stored coordinates of a zero-mean d-vector) -> normalised full vector [..., d].

    x' / sqrt((sum x'^2 + (sum x')^2) / d + eps) is the RMS norm of [x', -sum x'], which for a
    zero-mean vector is exactly LayerNorm. Gain (and bias, with model.bias) act on the d-vector.
    """

    def __init__(self, d: int, eps: float = 1e-5, bias: bool = False, affine: bool = True):
        super().__init__()
        self.d = d
        self.weight = nn.Parameter(torch.ones(d)) if affine else None
        self.bias = nn.Parameter(torch.zeros(d)) if bias and affine else None
        self.eps = eps
        self.hook_scale = HookPoint()

    def forward(self, x):
        if x.shape[-1] != self.d - 1:
            raise ValueError(f"CRMSNorm expects {self.d - 1} stored coordinates, got {x.shape[-1]}")
        full = torch.cat((x, -x.sum(-1, keepdim=True)), dim=-1)
        if self.hook_scale.active:
            return explicit_norm(full, self.hook_scale, self.eps, self.weight, self.bias, centre=False)
        y = F.rms_norm(full, (self.d,), self.weight, self.eps)
        return y if self.bias is None else y + self.bias


def make_norm(kind: str, d: int, eps: float, bias: bool, affine: bool = True) -> nn.Module:
    return NORMS.get(kind)(d, eps=eps, bias=bias, affine=affine)


def stream_width(cfg) -> int:
    """Width of the stored residual stream: d_model, or d_model - 1 for crmsnorm."""
    return cfg.d_model - 1 if cfg.norm == "crmsnorm" else cfg.d_model


def to_stream(x: torch.Tensor, width: int) -> torch.Tensor:
    """A d-wide vector written to a d-1 wide stream: centre it and keep d-1 coordinates.

    A no-op when x already has the stream's width (narrowed writers, ordinary models).
    """
    if x.shape[-1] == width:
        return x
    return (x - x.mean(-1, keepdim=True))[..., :width]


@torch.no_grad()
def narrow_writers(model: nn.Module, d: int) -> None:
    """Give every residual-writing layer d-1 output rows (crmsnorm: the last row is implicit).

    Linears marked `residual_out` are cut; other modules may define `narrow_output_(width)`
    (both in protocol.ModuleProtocol).
    """
    for module in model.children():
        if hasattr(module, "narrow_output_"):  # speaks for its whole subtree
            module.narrow_output_(d - 1)
        elif isinstance(module, nn.Linear) and getattr(module, "residual_out", False) and module.out_features == d:
            module.weight = nn.Parameter(module.weight[: d - 1].clone())
            if module.bias is not None:
                module.bias = nn.Parameter(module.bias[: d - 1].clone())
            module.out_features = d - 1
        else:
            narrow_writers(module, d)
