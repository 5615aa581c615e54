"""Mixture-of-experts FFN (`model.ffn = "moe"`): top-k routing, dropless or with a capacity.

Each token goes to its k highest-probability experts (GELU MLPs); their outputs are mixed with the
router probabilities renormalised over the k chosen. With `model.moe_capacity = c > 0`, in training
each expert takes at most ceil(c * tokens * k / experts) assignments (first choices before second
choices, then token order); the rest are dropped (the residual carries those tokens). Evaluation and
generation are always dropless, so a token's output never depends on other tokens and cached
decoding equals the full forward.

Load balancing (Switch Transformer): aux = weight * E * sum_i f_i * P_i, with f_i the fraction of
assignments routed to expert i and P_i the mean router probability of i; set as `self.aux_loss` in
training forwards (the trainer adds it to the loss). `train_stats()` reports tokens per expert.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .ffn import FFNS, default_d_ff
from .hooks import HookPoint


class MoE(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, E, k = cfg.d_model, cfg.moe_experts, cfg.moe_top_k
        if E < 1 or not 1 <= k <= E:
            raise ValueError(f"moe: need model.moe_experts >= 1 and 1 <= model.moe_top_k <= moe_experts (got {E}, {k})")
        f = cfg.moe_expert_ff or max(1, default_d_ff(cfg, gated=False) // k)
        self.n_experts, self.top_k, self.capacity, self.aux_weight = E, k, cfg.moe_capacity, cfg.moe_aux_weight
        self.router = nn.Linear(d, E, bias=False)
        std, resid_std = cfg.init_std, cfg.init_std / math.sqrt(2 * cfg.n_layers)
        self.w_up = nn.Parameter(torch.randn(E, f, d) * std)
        self.w_down = nn.Parameter(torch.randn(E, d, f) * resid_std)
        self.b_up = nn.Parameter(torch.zeros(E, f)) if cfg.bias else None
        self.b_down = nn.Parameter(torch.zeros(E, d)) if cfg.bias else None
        self.aux_loss = None
        self.register_buffer("load", torch.zeros(E, dtype=torch.long), persistent=False)
        self.dropped = 0.0
        # routing, [B, T, experts]: router softmax (picks the top k), and the mixing weights
        # (zero for experts not chosen); a replacement of either changes the routing
        self.hook_router_probs, self.hook_expert_weights = HookPoint(), HookPoint()

    def forward(self, x, **_):
        shape = x.shape
        h = x.reshape(-1, shape[-1])
        N, E, k = h.shape[0], self.n_experts, self.top_k
        probs = F.softmax(self.router(h).float(), dim=-1)            # [N, E]
        if self.hook_router_probs.active:
            probs = self.hook_router_probs(probs.view(*shape[:-1], E)).reshape(N, E)
        top_p, top_e = probs.topk(k, dim=-1)                         # [N, k]
        gates = (top_p / top_p.sum(-1, keepdim=True)).to(h.dtype)
        if self.hook_expert_weights.active:
            dense = gates.new_zeros(N, E).scatter(1, top_e, gates)
            gates = self.hook_expert_weights(dense.view(*shape[:-1], E)).reshape(N, E).gather(1, top_e)
        # assignments in priority order: all first choices, then all second choices, ...
        a_expert = top_e.t().reshape(-1)
        a_token = torch.arange(N, device=h.device).repeat(k)
        a_gate = gates.t().reshape(-1)
        keep = torch.ones_like(a_expert, dtype=torch.bool)
        if self.training and self.capacity > 0:
            cap = math.ceil(self.capacity * N * k / E)
            onehot = F.one_hot(a_expert, E)
            rank = (onehot.cumsum(0) * onehot).sum(-1) - 1            # place in its expert's queue
            keep = rank < cap
        out = h.new_zeros(N, self.w_down.shape[1])
        for e in range(E):
            sel = ((a_expert == e) & keep).nonzero().squeeze(1)
            if sel.numel() == 0:
                continue
            tok = a_token[sel]
            u = F.linear(h[tok], self.w_up[e], None if self.b_up is None else self.b_up[e])
            y = F.linear(F.gelu(u, approximate="tanh"), self.w_down[e], None if self.b_down is None else self.b_down[e])
            out.index_add_(0, tok, y * a_gate[sel, None])
        with torch.no_grad():
            self.load = torch.bincount(a_expert[keep], minlength=E)
            self.dropped = 1.0 - keep.float().mean().item()
        if self.training:
            frac = torch.bincount(a_expert, minlength=E).float() / a_expert.numel()
            self.aux_loss = self.aux_weight * E * (frac * probs.mean(0)).sum()
        return out.reshape(*shape[:-1], out.shape[-1])

    def train_stats(self) -> dict:
        return {"moe_load": self.load.tolist(), "moe_dropped": self.dropped}

    # `lmlab convert` / crmsnorm protocol ----------------------------------------------------------
    @torch.no_grad()
    def fold_input_gain_(self, g):
        self.router.weight.mul_(g[None, :])
        self.w_up.mul_(g[None, None, :])

    @torch.no_grad()
    def centre_output_(self) -> bool:
        self.w_down.sub_(self.w_down.mean(1, keepdim=True))
        if self.b_down is not None:
            self.b_down.sub_(self.b_down.mean(1, keepdim=True))
        return True

    @torch.no_grad()
    def narrow_output_(self, width: int) -> None:
        self.w_down = nn.Parameter(self.w_down[:, :width].clone())
        if self.b_down is not None:
            self.b_down = nn.Parameter(self.b_down[:, :width].clone())


FFNS.register("moe", lambda cfg, layer: MoE(cfg))
