"""Legendre Memory Unit mixer (letter "L"), the parallelisable LTI form used by LMUFormer.

Each of c input channels u_t = W_u x_t feeds a fixed linear memory of order q:
    m_t = Abar m_{t-1} + Bbar u_t
where (A, B) are the Legendre delay system for a window of theta steps (Voelker et al. 2019),
discretised with a zero-order hold. The memory is linear and time-invariant, so in training
m = H * u is a causal convolution with the impulse response H_t = Abar^t Bbar, done by FFT;
at inference the same recurrence runs one step at a time from the state kept in the cache.
Output: W_o gelu(W_m m_t + W_x x_t). (LMUFormer's convolutional patch embedding is not used:
our inputs are tokens.)

Bidirectional (`model.causal = false`, for masked-LM training): a second memory runs over the
reversed inputs (the same fixed Legendre system, so it summarises the next theta steps instead
of the last ones) and gets its own readout W_m'; the two readouts are summed:
W_o gelu(W_m m_t + W_m' m'_t + W_x x_t). The input projection W_u is shared.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..hooks import HookPoint


def legendre_system(order: int, theta: float):
    """Continuous (A, B) of the Legendre delay network, in float64."""
    i = torch.arange(order, dtype=torch.float64)
    r = (2 * i + 1)[:, None] / theta
    ii, jj = i[:, None], i[None, :]
    A = torch.where(ii < jj, -1.0, (-1.0) ** (ii - jj + 1)) * r
    B = (2 * i + 1) * (-1.0) ** i / theta
    return A, B


def discretise_zoh(A, B, dt: float = 1.0):
    """Zero-order hold: Abar = e^{A dt}, Bbar = A^{-1} (Abar - I) B."""
    Abar = torch.linalg.matrix_exp(A * dt)
    Bbar = torch.linalg.solve(A, (Abar - torch.eye(A.shape[0], dtype=A.dtype)) @ B)
    return Abar, Bbar


def impulse_response(Abar, Bbar, T: int):
    """H[t] = Abar^t Bbar and P[t] = Abar^(t+1) for t < T (float64): [T, q], [T, q, q]."""
    q = Abar.shape[0]
    H, P = torch.empty(T, q, dtype=Abar.dtype), torch.empty(T, q, q, dtype=Abar.dtype)
    h, pw = Bbar.clone(), Abar.clone()
    for t in range(T):
        H[t], P[t] = h, pw
        h, pw = Abar @ h, Abar @ pw
    return H, P


def causal_fft_conv(u, H):
    """m[b,t,c,q] = sum_{s<=t} H[t-s, q] u[b,s,c]: one FFT convolution over time."""
    T = u.shape[1]
    n = 1 << (2 * T - 1).bit_length()
    U = torch.fft.rfft(u.float(), n=n, dim=1)            # [b,f,c]
    Hf = torch.fft.rfft(H.float(), n=n, dim=0)           # [f,q]
    return torch.fft.irfft(U[..., None] * Hf[None, :, None, :], n=n, dim=1)[:, :T]


class LMUMixer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        if cfg.lmu_order < 1 or cfg.lmu_channels < 0 or cfg.lmu_theta < 0:
            raise ValueError("model.lmu_order must be >= 1, model.lmu_channels and model.lmu_theta >= 0")
        self.q = cfg.lmu_order
        self.c = cfg.lmu_channels or max(1, cfg.d_model // 4)
        theta = cfg.lmu_theta or float(cfg.context)
        Abar, Bbar = discretise_zoh(*legendre_system(self.q, theta))
        # fixed, not trained: float64 CPU tensors kept outside the state dict and out of
        # model.to(dtype); the per-length tables derived from them are cached per device
        self.Abar, self.Bbar = Abar, Bbar
        self._tables: dict = {}
        self.u_proj = nn.Linear(cfg.d_model, self.c, bias=cfg.bias)
        self.m_proj = nn.Linear(self.c * self.q, cfg.d_model, bias=cfg.bias)
        self.x_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.out_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.out_proj.residual_out = True
        # memorised inputs u [B, T, channels] and the memory m_t [B, T, channels, order] (the
        # LMU's state at every position; a replacement changes the output, not the cache)
        self.hook_u, self.hook_memory = HookPoint(), HookPoint()
        self.causal = getattr(cfg, "causal", True)
        self.m_proj_rev = None if self.causal else nn.Linear(self.c * self.q, cfg.d_model, bias=cfg.bias)

    def tables(self, T: int, device):
        key = (T, str(device))
        if key not in self._tables:
            if len(self._tables) > 8:
                self._tables.clear()
            H, P = impulse_response(self.Abar, self.Bbar, T)
            self._tables[key] = (H.float().to(device), P.float().to(device))
        return self._tables[key]

    def memory(self, u, state=None):
        """Parallel memory for u [b,T,c] from state [b,c,q] (or zeros): all m_t and the last."""
        H, P = self.tables(u.shape[1], u.device)
        m = causal_fft_conv(u, H)                          # [b,T,c,q]
        if state is not None:                              # + Abar^(t+1) m_0
            m = m + torch.einsum("tij,bcj->btci", P, state.float())
        return m, m[:, -1]

    def step(self, u, state):
        """One recurrent step: u [b,c], state [b,c,q] -> new state."""
        A, B = self.Abar.to(state.device, torch.float32), self.Bbar.to(state.device, torch.float32)
        return torch.einsum("ij,bcj->bci", A, state.float()) + u.float()[..., None] * B

    def forward(self, x, rope=None, cache: dict | None = None, start_pos: int = 0):
        bsz, T, _ = x.shape
        u = self.hook_u(self.u_proj(x))
        if self.m_proj_rev is not None:
            if cache is not None:
                raise ValueError("a bidirectional model (model.causal = false) cannot decode incrementally")
            back = self.memory(u.flip(1))[0].flip(1)
            back = self.m_proj_rev(back.to(x.dtype).reshape(bsz, T, self.c * self.q))
            h = self.read(self.hook_memory(self.memory(u)[0]), x) + back
            return self.out_proj(F.gelu(h, approximate="tanh"))
        state = None if cache is None or start_pos == 0 else cache.get("m")
        if T == 1 and state is not None:
            last = self.step(u[:, 0], state)
            m = last[:, None]
        else:
            m, last = self.memory(u, state)
        if cache is not None:
            cache["m"] = last.detach()
        m = self.hook_memory(m)
        return self.out_proj(F.gelu(self.read(m, x), approximate="tanh"))

    def read(self, m, x):
        """W_m m + W_x x for memories m [b,T,c,q] and inputs x [b,T,d]."""
        bsz, T, _ = x.shape
        return self.m_proj(m.to(x.dtype).reshape(bsz, T, self.c * self.q)) + self.x_proj(x)
