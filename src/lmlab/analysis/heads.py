"""Attention heads as factored matrices, their spectra, and how heads compose (Elhage et al. 2021).

Row-vector convention, as TransformerLens: a residual vector x [d] gives q = x W_Q, k = x W_K,
v = x W_V ([d, head_dim] per head) and writes z W_O ([head_dim, d]). Per head:
  OV = W_V W_O   (what a head at a source position writes, as a map of the source's residual)
  QK = W_Q W_K^T (the score x_dst QK x_src^T, before the 1/sqrt(head_dim) scale)
both d x d of rank <= head_dim, kept factored (factored.py). Grouped-query heads read the K and V
of their group (head h uses kv head h // (heads / kv_heads), as the model does). Biases are left
out of the circuits (they do not depend on the residual).

Norms, folded where they sit between the residual stream (the writer) and a head (the reader):
- the gain g of the norm in front of the attention multiplies the reading matrices,
  W_Q -> diag(g) W_Q (and W_K, W_V); its bias only moves the biases;
- layernorm also centres, P = I - 11^T/d: as TransformerLens's fold_ln and center_writing_weights,
  P goes onto both sides, W_Q -> P diag(g) W_Q and W_O -> W_O P (a layernorm only ever sees the
  centred stream, so neither the reader nor a writer's mean along 1 matters);
- crmsnorm stores d-1 coordinates of a zero-mean vector: the readers get E = [I | -1] in front
  (x' E rebuilds the d-vector), so every circuit is d-1 x d-1 in the stored coordinates.
The per-token 1/rms scaling is not linear and is left out, as everywhere in this analysis.
With RoPE, QK(offset=r) is the circuit between tokens r positions apart, W_Q R(r) W_K^T; without
an offset it is the position-free part (r = 0).

Composition of head A (earlier) into head B: ||OV_A M_B||_F / (||OV_A||_F ||M_B||_F) with M_B =
QK_B (Q-composition: A's write read by B's queries), QK_B^T (K) or OV_B (V); the same as
||W_A^T W_B|| / (||W_A|| ||W_B||) in the column convention. Per rank-1 SVD component i of OV_A
(the write direction Vh_i), the score is ||Vh_i M_B|| / ||M_B|| (the Talking Heads decomposition).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..model.attention import CausalSelfAttention
from ..model.positions import apply_rope, rope_tables
from .factored import FactoredMatrix, pairwise_product_norms

MODES = ("Q", "K", "V")


def attention_sublayers(model) -> list[tuple[int, str, CausalSelfAttention]]:
    """(block index, sublayer key, attention module) in forward order."""
    return [(i, key, sub.mixer) for i, block in enumerate(model.blocks)
            for key, sub in block.sublayers.items() if isinstance(sub.mixer, CausalSelfAttention)]


def projection_weights(attn: CausalSelfAttention):
    """(W, b) of q, k and v as [out, in] weights, from the three projections or the fused one."""
    if attn.qkv_proj is not None:
        sizes = attn.qkv_sizes()
        ws = attn.qkv_proj.weight.split(sizes)
        bs = attn.qkv_proj.bias.split(sizes) if attn.qkv_proj.bias is not None else (None,) * 3
        return list(zip(ws, bs))
    return [(p.weight, p.bias) for p in (attn.q_proj, attn.k_proj, attn.v_proj)]


def reader_map(model, norm) -> torch.Tensor:
    """N [d_stream, d]: what a norm does linearly between the stream and its reader (see above)."""
    d = model.cfg.d_model
    g = norm.weight.detach().float() if norm.weight is not None else torch.ones(d)
    N = torch.diag(g)
    if model.cfg.norm == "layernorm":
        N = writer_map(model) @ N
    if model.cfg.norm == "crmsnorm":
        E = torch.cat([torch.eye(d - 1), -torch.ones(d - 1, 1)], 1)
        N = E @ N
    return N


def writer_map(model) -> torch.Tensor | None:
    """P [d, d] applied to every write for layernorm models (centring moved to the writers)."""
    if model.cfg.norm != "layernorm":
        return None
    d = model.cfg.d_model
    return torch.eye(d) - torch.full((d, d), 1.0 / d)


@dataclass
class HeadWeights:
    """One attention sublayer's heads, folded: W_Q, W_K, W_V [H, d_stream, dh], W_O [H, dh, d_stream]."""
    layer: int
    sublayer: str
    W_Q: torch.Tensor
    W_K: torch.Tensor
    W_V: torch.Tensor
    W_O: torch.Tensor
    rope_base: float | None

    def label(self, h: int) -> str:
        return f"L{self.layer}H{h}" if self.sublayer == "attn" else f"L{self.layer}.{self.sublayer}.H{h}"


@torch.no_grad()
def head_weights(model, fold_norm: bool = True) -> list[HeadWeights]:
    """Every attention sublayer's per-head matrices (float32, CPU), norms folded as described."""
    out = []
    P = writer_map(model) if fold_norm else None
    for i, key, attn in attention_sublayers(model):
        H, Hkv, dh = attn.n_heads, attn.n_kv_heads, attn.head_dim
        norm = model.blocks[i].sublayers[key].norm
        N = reader_map(model, norm) if fold_norm else _stored_to_full(model)
        (wq, _), (wk, _), (wv, _) = projection_weights(attn)

        def per_head(w, heads):  # [heads*dh, d] -> [heads, d_stream, dh], repeated to H heads
            w = N @ w.detach().float().cpu().view(heads, dh, -1).mT
            return w.repeat_interleave(H // heads, dim=0)

        wo = attn.o_proj.weight.detach().float().cpu()               # [d_stream, H*dh]
        W_O = wo.view(wo.shape[0], H, dh).permute(1, 2, 0)           # [H, dh, d_stream]
        if P is not None:
            W_O = W_O @ P
        out.append(HeadWeights(i, key, per_head(wq, H), per_head(wk, Hkv), per_head(wv, Hkv), W_O,
                               model.cfg.rope_base if attn.use_rope else None))
    return out


def _stored_to_full(model) -> torch.Tensor:
    """Without folding: the identity, or E for crmsnorm (its mixers read d-vectors)."""
    d = model.cfg.d_model
    if model.cfg.norm == "crmsnorm":
        return torch.cat([torch.eye(d - 1), -torch.ones(d - 1, 1)], 1)
    return torch.eye(d)


def rope_rotation(head_dim: int, offset: int, base: float) -> torch.Tensor:
    """R(offset) [dh, dh] with rope(x at i) . rope(y at j) = x R(i - j) y^T (row convention)."""
    cos, sin = rope_tables(head_dim, offset + 1, base)
    return apply_rope(torch.eye(head_dim)[None, None], cos[offset:offset + 1], sin[offset:offset + 1])[0, 0]


class Heads:
    """All attention heads of a model, flattened in forward order (labels: 'L1H3')."""

    def __init__(self, model, fold_norm: bool = True):
        self.layers = head_weights(model, fold_norm)
        if not self.layers:
            raise ValueError("the model has no attention sublayer (its pattern has no 'A')")
        self.labels = [hw.label(h) for hw in self.layers for h in range(hw.W_Q.shape[0])]
        # the forward-order index of each head's sublayer: A composes into B only if order(A) < order(B)
        self.order = torch.tensor([n for n, hw in enumerate(self.layers) for _ in range(hw.W_Q.shape[0])])
        self.n_heads = [hw.W_Q.shape[0] for hw in self.layers]

    def _cat(self, attr: str) -> torch.Tensor:
        return torch.cat([getattr(hw, attr) for hw in self.layers])

    @property
    def OV(self) -> FactoredMatrix:
        return FactoredMatrix(self._cat("W_V"), self._cat("W_O"))

    def QK(self, offset: int | None = None) -> FactoredMatrix:
        W_Q, W_K = self._cat("W_Q"), self._cat("W_K")
        if offset is not None:
            rotated = []
            for hw in self.layers:
                if hw.rope_base is None:
                    rotated.append(hw.W_Q)
                else:
                    rotated.append(hw.W_Q @ rope_rotation(hw.W_Q.shape[-1], offset, hw.rope_base))
            W_Q = torch.cat(rotated)
        return FactoredMatrix(W_Q, W_K.mT)

    def reader(self, mode: str) -> FactoredMatrix:
        if mode not in MODES:
            raise ValueError(f"composition mode {mode!r}; valid: {', '.join(MODES)}")
        return {"Q": lambda: self.QK(), "K": lambda: self.QK().T, "V": lambda: self.OV}[mode]()

    def earlier(self) -> torch.Tensor:
        """[N, N] bool: head i sits in an earlier sublayer than head j."""
        return self.order[:, None] < self.order[None, :]

    def composition(self, mode: str) -> torch.Tensor:
        """[N, N] composition scores of head i (writer) into head j (reader); 0 unless i is earlier."""
        left, right = self.OV, self.reader(mode)
        num = pairwise_product_norms(left, right)
        scores = num / (left.norm()[:, None] * right.norm()[None, :])
        return scores * self.earlier()

    def composition_by_component(self, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores [N, k, N], singular values [N, k]): each rank-1 SVD component of OV_i (its
        write direction Vh_i) read by head j; 0 unless i is earlier."""
        _, S, Vh = self.OV.svd()                                   # Vh [N, k, d]
        right = self.reader(mode)
        # ||v R_j|| for v = Vh[i, c]: R_j = C_j D_j -> (v C_j) (D_j D_j^T) (v C_j)^T
        vc = torch.einsum("ikd,jde->ikje", Vh, right.A)           # [N, k, N, k2]
        H = right.B @ right.B.mT                                   # [N, k2, k2]
        sq = torch.einsum("ikje,jef,ikjf->ikj", vc, H, vc)
        scores = sq.clamp_min(0).sqrt() / right.norm()[None, None, :]
        return scores * self.earlier()[:, None, :], S

    def spectra(self) -> dict[str, torch.Tensor]:
        """Singular values per head [N, head_dim] of OV and QK."""
        return {"OV": self.OV.singular_values(), "QK": self.QK().singular_values()}

    def grid(self, scores: torch.Tensor) -> torch.Tensor:
        """[N, N] -> [layers, H, layers, H] when every attention sublayer has the same head count."""
        L, H = len(self.layers), self.n_heads[0]
        return scores.reshape(L, H, L, H)
