"""Selective state-space mixer (letter "M"), Mamba-2 style, in plain PyTorch.

Per head h with scalar decay A_h < 0 and input-dependent step dt_t > 0:
    S_t = exp(dt_t A_h) S_{t-1} + dt_t x_t B_t^T        (S: [head_dim, N])
    y_t = S_t C_t + D_h x_t
B_t, C_t (size N) and dt_t are projections of the token, so the recurrence is "selective".
Training uses the chunked form (quadratic inside a chunk, recurrence across chunks);
generation runs the same recurrence one token at a time from the state kept in the cache.
A short causal depthwise conv precedes the scan; its last inputs are cached as well.

Bidirectional (`model.causal = false`, for masked-LM training), as Caduceus's BiMamba does it:
a second scan runs over the reversed sequence and the two directions' outputs are summed. The
input and output projections (and the gate and its norm) are shared by the two directions; each
direction has its own conv, dt bias, decay A and skip D, so the reverse direction costs one more
conv and scan but almost no parameters.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..hooks import HookPoint


def ssd_scan(x, dt, A, B, C, state=None, chunk: int = 64):
    """Chunked parallel scan. x [b,T,h,p], dt [b,T,h], A [h], B/C [b,T,n], state [b,h,p,n].

    Returns y [b,T,h,p] (without the D skip) and the final state. Computed in fp32.
    """
    b, T, h, p = x.shape
    n = B.shape[-1]
    x, dt, A, B, C = x.float(), dt.float(), A.float(), B.float(), C.float()
    L = min(chunk, T)
    pad = (-T) % L
    if pad:  # dt = 0 and x = 0 on padding: the state neither decays nor takes input there
        x, dt = F.pad(x, (0, 0, 0, 0, 0, pad)), F.pad(dt, (0, 0, 0, pad))
        B, C = F.pad(B, (0, 0, 0, pad)), F.pad(C, (0, 0, 0, pad))
    nc = (T + pad) // L
    # head-major layout [b, h, chunk, step, ...] so every contraction is one batched matmul
    a = (dt * A).transpose(1, 2).reshape(b, h, nc, L)                   # log-decay per step (<= 0)
    xdt = (x * dt[..., None]).transpose(1, 2).reshape(b, h, nc, L, p)
    B, C = B.view(b, 1, nc, L, n), C.view(b, 1, nc, L, n)
    cum = a.cumsum(-1)
    # inside a chunk: y_t = sum_{s<=t} (C_t.B_s) exp(cum_t - cum_s) dt_s x_s
    causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
    decay = (cum[..., :, None] - cum[..., None, :]).masked_fill(~causal, -math.inf).exp()
    y = ((C @ B.transpose(-1, -2)) * decay) @ xdt                       # [b,h,nc,L,p]
    # what each chunk adds to the state by its end, then the recurrence over chunks
    to_end = (cum[..., -1:] - cum).exp()
    added = (xdt * to_end[..., None]).transpose(-1, -2) @ B              # [b,h,nc,p,n]
    chunk_decay = cum[..., -1].exp()                                     # [b,h,nc]
    S = x.new_zeros(b, h, p, n) if state is None else state.float()
    entering = []
    for c in range(nc):
        entering.append(S)
        S = chunk_decay[:, :, c, None, None] * S + added[:, :, c]
    entering = torch.stack(entering, 2)                                  # [b,h,nc,p,n]
    y = y + (C @ entering.transpose(-1, -2)) * cum.exp()[..., None]
    y = y.reshape(b, h, nc * L, p).transpose(1, 2)
    return y[:, :T], S


def ssd_step(x, dt, A, B, C, state):
    """One recurrent step. x [b,h,p], dt [b,h], B/C [b,n], state [b,h,p,n] -> (y, state)."""
    x, dt, B, C = x.float(), dt.float(), B.float(), C.float()
    decay = (dt * A.float()).exp()[..., None, None]
    state = decay * state.float() + torch.einsum("bhp,bn->bhpn", x * dt[..., None], B)
    return torch.einsum("bhpn,bn->bhp", state, C), state


def ssd_recurrent(x, dt, A, B, C, state=None):
    """Reference: the step applied token by token (tests compare it with ssd_scan)."""
    b, T, h, p = x.shape
    S = x.new_zeros(b, h, p, B.shape[-1], dtype=torch.float32) if state is None else state
    ys = []
    for t in range(T):
        y, S = ssd_step(x[:, t], dt[:, t], A, B[:, t], C[:, t], S)
        ys.append(y)
    return torch.stack(ys, 1), S


def initial_dt_bias(h: int) -> torch.Tensor:
    """dt = softplus(raw + dt_bias) starts log-uniform in [1e-3, 1e-1] (Mamba's range)."""
    dt0 = torch.exp(torch.rand(h) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    return dt0 + torch.log(-torch.expm1(-dt0))   # inverse softplus


def initial_a_log(h: int) -> torch.Tensor:
    return torch.log(torch.empty(h).uniform_(1, 16))


class SelectiveSSM(nn.Module):
    def __init__(self, cfg, chunk: int = 64):
        super().__init__()
        if min(cfg.ssm_expand, cfg.ssm_state, cfg.ssm_head_dim, cfg.ssm_conv) < 1:
            raise ValueError("model.ssm_expand, ssm_state, ssm_head_dim and ssm_conv must be at least 1")
        d_inner = cfg.ssm_expand * cfg.d_model
        if d_inner % cfg.ssm_head_dim:
            raise ValueError(f"model.ssm_expand*d_model ({d_inner}) must be divisible by model.ssm_head_dim ({cfg.ssm_head_dim})")
        self.d_inner, self.n, self.p = d_inner, cfg.ssm_state, cfg.ssm_head_dim
        self.h = d_inner // cfg.ssm_head_dim
        self.k = cfg.ssm_conv
        self.chunk = chunk
        conv_dim = d_inner + 2 * self.n
        # one projection for gate z, conv input (x, B, C) and per-head dt
        self.in_proj = nn.Linear(cfg.d_model, d_inner + conv_dim + self.h, bias=cfg.bias)
        self.conv = nn.Conv1d(conv_dim, conv_dim, self.k, groups=conv_dim, bias=True)
        self.dt_bias = nn.Parameter(initial_dt_bias(self.h))
        self.A_log = nn.Parameter(initial_a_log(self.h))
        self.D = nn.Parameter(torch.ones(self.h))
        self.causal = getattr(cfg, "causal", True)
        self.rev = None if self.causal else ReverseScan(conv_dim, self.k, self.h)
        self.out_norm = nn.Parameter(torch.ones(d_inner))                 # gated RMSNorm gain
        self.out_proj = nn.Linear(d_inner, cfg.d_model, bias=cfg.bias)
        self.out_proj.residual_out = True
        self.eps = cfg.norm_eps
        # scan inputs x [B, T, heads, head_dim], dt [B, T, heads], B and C [B, T, N]; its output y
        # (with the D skip, before the gate) [B, T, heads, head_dim]; the state after the last
        # position [B, heads, head_dim, N] (what a cache carries on; replacing it changes only that)
        self.hook_x, self.hook_dt, self.hook_B, self.hook_C = HookPoint(), HookPoint(), HookPoint(), HookPoint()
        self.hook_y, self.hook_state = HookPoint(), HookPoint()

    def forward(self, x, rope=None, cache: dict | None = None, start_pos: int = 0):
        bsz, T, _ = x.shape
        z, xbc, dt_raw = self.in_proj(x).split([self.d_inner, self.d_inner + 2 * self.n, self.h], dim=-1)
        if self.rev is not None:
            if cache is not None:
                raise ValueError("a bidirectional model (model.causal = false) cannot decode incrementally")
            y, _, _ = self.direction(xbc, dt_raw, self.conv, self.dt_bias, self.A_log, self.D, None, None)
            r = self.rev
            y_rev, _, _ = self.direction(xbc.flip(1), dt_raw.flip(1), r.conv, r.dt_bias, r.A_log, r.D, None, None,
                                         hooked=False)
            y = y + y_rev.flip(1)
        else:
            fresh = cache is None or start_pos == 0 or "ssm" not in cache
            prev = None if fresh else cache["conv"].to(xbc.dtype)
            y, padded, state = self.direction(xbc, dt_raw, self.conv, self.dt_bias, self.A_log, self.D, prev,
                                              None if fresh else cache["ssm"])
            if cache is not None:
                cache["conv"] = padded[:, -(self.k - 1):].detach() if self.k > 1 else padded[:, :0].detach()
                cache["ssm"] = state.detach()
        y = y.to(x.dtype).reshape(bsz, T, self.d_inner)
        y = F.rms_norm(y * F.silu(z), (self.d_inner,), self.out_norm, self.eps)
        return self.out_proj(y)

    def direction(self, xbc, dt_raw, conv, dt_bias, A_log, D, prev, state, hooked=True):
        """Causal conv and scan of one direction from its conv inputs `prev` and scan `state`
        (None = fresh): y [b,T,h,p] (fp32, with the D skip), the padded conv input, the state."""
        bsz, T, _ = xbc.shape
        if prev is None:
            prev = xbc.new_zeros(bsz, self.k - 1, xbc.shape[-1])
        padded = torch.cat([prev, xbc], dim=1)            # causal conv: left context = last k-1 inputs
        xbc = F.silu(F.conv1d(padded.transpose(1, 2), conv.weight, conv.bias,
                              groups=conv.groups).transpose(1, 2))
        xs, B, C = xbc.split([self.d_inner, self.n, self.n], dim=-1)
        xs = xs.reshape(bsz, T, self.h, self.p)
        dt = F.softplus(dt_raw.float() + dt_bias)
        if hooked:  # the forward direction's values carry the hook names (the reverse one has none)
            xs, B, C, dt = self.hook_x(xs), self.hook_B(B), self.hook_C(C), self.hook_dt(dt)
        A = -A_log.exp()
        if T == 1 and state is not None:
            y, state = ssd_step(xs[:, 0], dt[:, 0], A, B[:, 0], C[:, 0], state)
            y = y[:, None]
        else:
            y, state = ssd_scan(xs, dt, A, B, C, state, self.chunk)
        if hooked:
            state = self.hook_state(state)
        y = y + D[:, None] * xs.float()
        return (self.hook_y(y) if hooked else y), padded, state


class ReverseScan(nn.Module):
    """The reverse direction's own conv, dt bias, decay and skip (bidirectional SSM)."""

    def __init__(self, conv_dim: int, k: int, h: int):
        super().__init__()
        self.conv = nn.Conv1d(conv_dim, conv_dim, k, groups=conv_dim, bias=True)
        self.dt_bias = nn.Parameter(initial_dt_bias(h))
        self.A_log = nn.Parameter(initial_a_log(h))
        self.D = nn.Parameter(torch.ones(h))
