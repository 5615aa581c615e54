"""Feed-forward layers chosen by `model.ffn`: mlp and swiglu here; moe.py and structured_ffn.py add more."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from ..registry import Registry
from .hooks import HookPoint

# kind -> constructor(cfg, layer_index) -> module taking (x, **kwargs)
FFNS = Registry("model.ffn")


def default_d_ff(cfg, gated: bool) -> int:
    if cfg.d_ff:
        return cfg.d_ff
    if gated:  # keep the parameter count of a 4x GELU MLP, rounded up to a multiple of 64
        return (int(8 * cfg.d_model / 3) + 63) // 64 * 64
    return 4 * cfg.d_model


GELU_APPROXIMATION = {"gelu_tanh": "tanh", "gelu": "none"}  # model.activation -> F.gelu(approximate=)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        if cfg.activation not in GELU_APPROXIMATION:
            raise ValueError(f"unknown model.activation {cfg.activation!r}; valid: {', '.join(GELU_APPROXIMATION)}")
        # exact GELU is cheaper than the tanh form on CPU in bf16 (docs/performance.md, Training)
        self.approximate = GELU_APPROXIMATION[cfg.activation]
        d_ff = default_d_ff(cfg, gated=False)
        self.up = nn.Linear(cfg.d_model, d_ff, bias=cfg.bias)
        self.down = nn.Linear(d_ff, cfg.d_model, bias=cfg.bias)
        self.down.residual_out = True
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()  # before and after the GELU [B, T, d_ff]

    def forward(self, x, **_):
        return self.down(self.hook_post(F.gelu(self.hook_pre(self.up(x)), approximate=self.approximate)))


class SwiGLU(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d_ff = default_d_ff(cfg, gated=True)
        self.gate = nn.Linear(cfg.d_model, d_ff, bias=cfg.bias)
        self.up = nn.Linear(cfg.d_model, d_ff, bias=cfg.bias)
        self.down = nn.Linear(d_ff, cfg.d_model, bias=cfg.bias)
        self.down.residual_out = True
        # TransformerLens's gated-MLP names: pre = gate input, pre_linear = up, post = their product
        self.hook_pre, self.hook_pre_linear, self.hook_post = HookPoint(), HookPoint(), HookPoint()

    def forward(self, x, **_):
        return self.down(self.hook_post(F.silu(self.hook_pre(self.gate(x))) * self.hook_pre_linear(self.up(x))))


FFNS.register("mlp", lambda cfg, layer: MLP(cfg))
FFNS.register("swiglu", lambda cfg, layer: SwiGLU(cfg))


def make_ffn(cfg, layer: int) -> nn.Module:
    return FFNS.get(cfg.ffn)(cfg, layer)
