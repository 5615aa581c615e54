"""Structured feed-forward layers (Wei et al. 2024): LowRank, BlockDense, BlockShuffle.

Both FFN matrices of every block but the first are structured (the first block stays a dense MLP).
Parameters of a d -> 4d -> d GELU MLP, relative to dense:
  lowrank      rank r = ffn_rank * d: 10 d r / 8 d^2          (r = d/2: 62.5%, r = d/4: 31.25%)
  blockdense   b blocks then dense, rank r: (5/b + 5) d r / 8 d^2  (b=2: r = 2d/3 ~ 62.5%, r = d/3 ~ 31%)
  blockshuffle two block-diagonal factors with a stride shuffle between them (Monarch-like):
               10 d^2 / b / 8 d^2                           (b=2: 62.5%, b=4: 31.25%)
Initialisation as the paper's code: LowRank from the truncated SVD of a dense N(0, std) draw; block
factors orthonormal (U V^T of each block's SVD), here rescaled so the merged matrix has the dense
init's RMS (std 0.02, or the smaller residual std for the down matrix).

Self-guided training (`model.self_guided = f`): each structured matrix also keeps a dense "guide"
matrix, initialised to the merged structured one; y = a * dense(x) + (1 - a) * structured(x), with
a = (1 + cos(pi * p / f)) / 2 for training progress p < f and 0 after, when the guide is no longer
computed. The trainer reports progress with `training_hooks.set_progress(model, step / max_steps)`;
the progress is a persistent buffer, so a loaded checkpoint computes what the trained model computed.

`premerge(model)` multiplies the factors out once (dense weights for decoding, after `.to(device)`);
`unmerge` or switching to training mode drops them.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .ffn import FFNS, MLP, default_d_ff
from .hooks import HookPoint
from .training_hooks import set_progress  # noqa: F401  (re-exported)


def _ortho_(t: torch.Tensor) -> None:
    """Each matrix t[i] becomes U V^T of its SVD (all singular values 1)."""
    for i in range(t.shape[0]):
        u, _, vh = torch.linalg.svd(t[i], full_matrices=False)
        t[i] = u @ vh


def _blockdiag_mm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x [N, b*p] times block-diagonal w [b, q, p] -> [N, b, q] (block i sees input slice i)."""
    b, q, p = w.shape
    xb = x.reshape(-1, b, p).transpose(0, 1)               # [b, N, p]
    return torch.bmm(xb, w.transpose(1, 2)).transpose(0, 1)  # [N, b, q]


def _blockdiag_dense(w: torch.Tensor) -> torch.Tensor:
    return torch.block_diag(*w.unbind(0))


class StructuredLinear(nn.Module):
    """Base: a structured matrix, an optional bias, an optional dense guide, an optional merged copy."""

    def __init__(self, d_in: int, d_out: int, bias: bool, guided: float):
        super().__init__()
        self.d_in, self.d_out = d_in, d_out
        self.bias = nn.Parameter(torch.zeros(d_out)) if bias else None
        self.guided = guided
        self.guide = nn.Parameter(torch.empty(d_out, d_in)) if guided > 0 else None
        self.register_buffer("progress", torch.zeros(()), persistent=guided > 0)
        self.merged: torch.Tensor | None = None

    # --- to implement -------------------------------------------------------------------------
    def structured(self, x2d: torch.Tensor) -> torch.Tensor:  # [N, d_in] -> [N, d_out]
        raise NotImplementedError

    def dense_weight(self) -> torch.Tensor:  # the merged structured matrix [d_out, d_in]
        raise NotImplementedError

    # --- shared -------------------------------------------------------------------------------
    @torch.no_grad()
    def _finish_init(self, std: float) -> None:
        """Rescale the factors so the merged matrix has RMS `std`; start the guide equal to it."""
        w = self.dense_weight()
        scale = math.sqrt(std / w.pow(2).mean().sqrt().item())
        for p in self.factors():
            p.mul_(scale)
        if self.guide is not None:
            self.guide.copy_(self.dense_weight())

    def factors(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def alpha(self) -> float:
        """Weight of the dense guide: cosine from 1 to 0 over the first `guided` fraction of training."""
        if self.guide is None:
            return 0.0
        p = float(self.progress)
        return 0.5 * (1.0 + math.cos(math.pi * p / self.guided)) if p < self.guided else 0.0

    def set_progress(self, frac: float) -> None:
        self.progress.fill_(frac)

    def effective_weight(self) -> torch.Tensor:
        w, a = self.dense_weight(), self.alpha()
        return w if a == 0.0 else a * self.guide + (1 - a) * w

    def forward(self, x):
        if self.merged is not None and not self.training:
            y = F.linear(x, self.merged)
        else:
            shape = x.shape[:-1]
            y = self.structured(x.reshape(-1, self.d_in)).reshape(*shape, self.d_out)
            a = self.alpha()
            if a > 0.0:  # self-guided: the dense branch, dropped once a reaches 0
                y = a * F.linear(x, self.guide) + (1 - a) * y
        return y if self.bias is None else y + self.bias

    @torch.no_grad()
    def premerge(self) -> None:
        self.merged = self.effective_weight().detach().clone()

    def unmerge(self) -> None:
        self.merged = None

    def train(self, mode: bool = True):
        if mode:  # training changes the factors: a merged copy would go stale
            self.merged = None
        return super().train(mode)


class LowRankLinear(StructuredLinear):
    """W = U V, U [d_out, r], V [r, d_in]; init from the truncated SVD of a dense N(0, std) draw."""

    def __init__(self, d_in, d_out, rank, std, bias=False, guided=0.0):
        super().__init__(d_in, d_out, bias, guided)
        if not 0 < rank <= min(d_in, d_out):
            raise ValueError(f"lowrank: rank {rank} must be in 1..{min(d_in, d_out)} (model.ffn_rank)")
        with torch.no_grad():
            u, s, vh = torch.linalg.svd(torch.randn(d_out, d_in) * std, full_matrices=False)
            root = s[:rank].sqrt()
            self.U = nn.Parameter(u[:, :rank] * root[None, :])
            self.V = nn.Parameter(root[:, None] * vh[:rank])
        if self.guide is not None:
            with torch.no_grad():
                self.guide.copy_(self.dense_weight())

    def factors(self):
        return [self.U, self.V]

    def structured(self, x):
        return F.linear(F.linear(x, self.V), self.U)

    def dense_weight(self):
        return self.U @ self.V

    def _fold_in(self, g):
        self.V.mul_(g[None, :])

    def _centre_out(self) -> bool:
        self.U.sub_(self.U.mean(0, keepdim=True))
        return True


class BlockDenseLinear(StructuredLinear):
    """W = D B: B block-diagonal [b blocks of (r/b) x (d_in/b)], then dense D [d_out, r]."""

    def __init__(self, d_in, d_out, rank, nblocks, std, bias=False, guided=0.0):
        super().__init__(d_in, d_out, bias, guided)
        if d_in % nblocks or rank % nblocks or rank <= 0:
            raise ValueError(f"blockdense: input width {d_in} and rank {rank} must be positive multiples of "
                             f"model.ffn_blocks={nblocks}")
        self.B = nn.Parameter(torch.randn(nblocks, rank // nblocks, d_in // nblocks))
        self.D = nn.Parameter(torch.randn(d_out, rank))
        with torch.no_grad():
            _ortho_(self.B)
            _ortho_(self.D[None])
        self._finish_init(std)

    def factors(self):
        return [self.B, self.D]

    def structured(self, x):
        return F.linear(_blockdiag_mm(x, self.B).flatten(1), self.D)

    def dense_weight(self):
        return self.D @ _blockdiag_dense(self.B)

    def _fold_in(self, g):
        b, _, p = self.B.shape
        self.B.mul_(g.view(b, 1, p))

    def _centre_out(self) -> bool:
        self.D.sub_(self.D.mean(0, keepdim=True))
        return True


class BlockShuffleLinear(StructuredLinear):
    """W = P2 B2 S B1: block-diagonal B1, a stride shuffle S (block j of B2 gathers element j of every
    block of B1), block-diagonal B2. Block shapes as the paper's code: the square factor on the
    narrow side."""

    def __init__(self, d_in, d_out, nblocks, std, bias=False, guided=0.0):
        super().__init__(d_in, d_out, bias, guided)
        b = nblocks
        if d_in % b or d_out % b:
            raise ValueError(f"blockshuffle: widths {d_in} and {d_out} must be multiples of model.ffn_blocks={b}")
        mid = min(d_in, d_out) // b  # B1 gives b*mid values; each B2 block takes mid of them
        if mid % b:
            raise ValueError(f"blockshuffle: {min(d_in, d_out)} / ffn_blocks^2 must be a whole number")
        self.B1 = nn.Parameter(torch.randn(b, mid, d_in // b))
        self.B2 = nn.Parameter(torch.randn(b, d_out // b, mid))
        with torch.no_grad():
            _ortho_(self.B1)
            _ortho_(self.B2)
        self._finish_init(std)

    def factors(self):
        return [self.B1, self.B2]

    def structured(self, x):
        b, mid = self.B1.shape[0], self.B1.shape[1]
        h = _blockdiag_mm(x, self.B1)                          # [N, b, mid]
        h = h.reshape(-1, mid, b).transpose(1, 2)              # shuffle: [N, b, mid], stride b
        return _blockdiag_mm(h.reshape(-1, b * mid), self.B2).flatten(1)

    def dense_weight(self):
        b, mid = self.B1.shape[0], self.B1.shape[1]
        n = b * mid
        perm = torch.arange(n).view(mid, b).t().reshape(-1)   # shuffled position k reads index perm[k]
        shuffle = torch.eye(n, device=self.B1.device, dtype=self.B1.dtype)[perm]
        return _blockdiag_dense(self.B2) @ shuffle @ _blockdiag_dense(self.B1)

    def _fold_in(self, g):
        b, _, p = self.B1.shape
        self.B1.mul_(g.view(b, 1, p))

    def _centre_out(self) -> bool:
        return False  # a mean over all outputs mixes blocks: not expressible in this structure


class StructuredMLP(nn.Module):
    """GELU MLP d -> d_ff -> d with both matrices structured."""

    def __init__(self, cfg, kind: str):
        super().__init__()
        d, f = cfg.d_model, default_d_ff(cfg, gated=False)
        std, resid_std = cfg.init_std, cfg.init_std / math.sqrt(2 * cfg.n_layers)
        g = cfg.self_guided
        if kind != "lowrank" and cfg.ffn_blocks < 1:
            raise ValueError(f"model.ffn_blocks must be >= 1, got {cfg.ffn_blocks}")
        if kind == "lowrank":
            r = max(1, round(cfg.ffn_rank * d))
            self.up = LowRankLinear(d, f, r, std, cfg.bias, g)
            self.down = LowRankLinear(f, d, r, resid_std, cfg.bias, g)
        elif kind == "blockdense":
            b = cfg.ffn_blocks
            r = max(b, round(cfg.ffn_rank * d / b) * b)
            self.up = BlockDenseLinear(d, f, r, b, std, cfg.bias, g)
            self.down = BlockDenseLinear(f, d, r, b, resid_std, cfg.bias, g)
        elif kind == "blockshuffle":
            self.up = BlockShuffleLinear(d, f, cfg.ffn_blocks, std, cfg.bias, g)
            self.down = BlockShuffleLinear(f, d, cfg.ffn_blocks, resid_std, cfg.bias, g)
        else:
            raise ValueError(f"unknown structured FFN {kind!r}")
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()  # before and after the GELU

    def forward(self, x, **_):
        return self.down(self.hook_post(F.gelu(self.hook_pre(self.up(x)), approximate="tanh")))

    # `lmlab convert` protocol: fold a norm gain into what reads the input; centre what is written
    @torch.no_grad()
    def fold_input_gain_(self, g):
        self.up._fold_in(g)
        if self.up.guide is not None:
            self.up.guide.mul_(g[None, :])

    @torch.no_grad()
    def centre_output_(self) -> bool:
        if self.down.guide is not None:
            self.down.guide.sub_(self.down.guide.mean(0, keepdim=True))
        if self.down.bias is not None:
            self.down.bias.sub_(self.down.bias.mean())
        return self.down._centre_out()


def _make(kind):
    # the first block stays dense (as in the paper)
    return lambda cfg, layer: MLP(cfg) if layer == 0 else StructuredMLP(cfg, kind)


for _kind in ("lowrank", "blockdense", "blockshuffle"):
    FFNS.register(_kind, _make(_kind))


def premerge(model: nn.Module) -> int:
    """Multiply out the factors of every structured matrix (for decoding); returns how many."""
    n = 0
    for m in model.modules():
        if isinstance(m, StructuredLinear):
            m.premerge()
            n += 1
    return n


def unmerge(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, StructuredLinear):
            m.unmerge()
