"""A Transformer block: a sequence of pre-norm residual sublayers given by a pattern like "AF".

Letters name sequence mixers or feed-forward layers (A = attention, F = FFN); mixers/ registers
more letters (M = selective SSM, L = LMU) in MIXERS.
"""
from __future__ import annotations

from torch import nn

from .attention import CausalSelfAttention
from .dropout import Dropout
from .ffn import make_ffn
from .hooks import HookPoint
from .norms import make_norm, to_stream
from ..registry import Registry

# letter -> (sublayer name, constructor(cfg, layer_index))
MIXERS = Registry("model.pattern letter")
MIXERS.register("A", ("attn", lambda cfg, layer: CausalSelfAttention(cfg)))
MIXERS.register("F", ("ffn", make_ffn))


def layer_patterns(cfg) -> list[str]:
    """`model.pattern` as one group per layer: one group repeats; several must match n_layers."""
    groups = cfg.pattern.split()
    if not groups:
        raise ValueError("model.pattern is empty")
    if len(groups) == 1:
        groups = groups * cfg.n_layers
    if len(groups) != cfg.n_layers:
        raise ValueError(f"model.pattern has {len(groups)} groups but model.n_layers is {cfg.n_layers}")
    for letter in "".join(groups):
        MIXERS.get(letter)  # an unknown letter is an error naming the valid ones
    return groups


class Residual(nn.Module):
    """x + mixer(norm(x)), with hooks on the normed input (`in`) and the output (`out`)."""

    def __init__(self, cfg, mixer: nn.Module):
        super().__init__()
        self.norm = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias, cfg.norm_affine)
        self.mixer = mixer
        self.drop = Dropout(cfg.dropout)
        self.hook_in = HookPoint()
        self.hook_out = HookPoint()

    def forward(self, x, **kw):
        h = self.hook_in(self.norm(x))
        return x + self.drop(self.hook_out(to_stream(self.mixer(h, **kw), x.shape[-1])))


class Block(nn.Module):
    def __init__(self, cfg, layer: int, pattern: str):
        super().__init__()
        self.hook_resid_pre = HookPoint()
        self.sublayers = nn.ModuleDict()
        for letter in pattern:
            name, make = MIXERS.get(letter)
            key, n = name, 2
            while key in self.sublayers:
                key, n = f"{name}{n}", n + 1
            self.sublayers[key] = Residual(cfg, make(cfg, layer))
        # the residual between sublayers: resid_mid after the first, resid_mid2 after the second, ...
        self.mid_hooks = [f"hook_resid_mid{n if n > 1 else ''}" for n in range(1, len(pattern))]
        for name in self.mid_hooks:
            setattr(self, name, HookPoint())
        self.hook_resid_post = HookPoint()

    def forward(self, x, caches=None, **kw):
        x = self.hook_resid_pre(x)
        for i, sub in enumerate(self.sublayers.values()):
            x = sub(x, cache=None if caches is None else caches[i], **kw)
            if i < len(self.mid_hooks):
                x = getattr(self, self.mid_hooks[i])(x)
        return self.hook_resid_post(x)
