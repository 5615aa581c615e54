"""A product of two thin matrices, kept as its factors: A @ B with A [..., m, k], B [..., k, n].

Heads' OV and QK circuits are d x d matrices of rank <= head_dim; everything asked of them here
(singular values, Frobenius norms, products, norms of products between every pair of heads)
is computed from k x k matrices, and the d x d matrix only exists if `.AB` is asked for.
"""
from __future__ import annotations

import torch


class FactoredMatrix:
    def __init__(self, A: torch.Tensor, B: torch.Tensor):
        if A.shape[-1] != B.shape[-2]:
            raise ValueError(f"factors do not chain: {tuple(A.shape)} @ {tuple(B.shape)}")
        self.A, self.B = A, B

    @property
    def shape(self) -> tuple:
        batch = torch.broadcast_shapes(self.A.shape[:-2], self.B.shape[:-2])
        return (*batch, self.A.shape[-2], self.B.shape[-1])

    @property
    def inner(self) -> int:
        """The inner width k: an upper bound on the rank."""
        return self.A.shape[-1]

    @property
    def AB(self) -> torch.Tensor:
        """The full matrix (m x n per batch entry)."""
        return self.A @ self.B

    @property
    def T(self) -> "FactoredMatrix":
        return FactoredMatrix(self.B.mT, self.A.mT)

    def __getitem__(self, idx) -> "FactoredMatrix":
        """Index the batch axes (the two matrix axes are kept)."""
        idx = idx if isinstance(idx, tuple) else (idx,)
        return FactoredMatrix(self.A[idx], self.B[idx])

    def __matmul__(self, other):
        if isinstance(other, FactoredMatrix):
            middle = self.B @ other.A                      # k1 x k2
            if other.inner <= self.inner:
                return FactoredMatrix(self.A @ middle, other.B)
            return FactoredMatrix(self.A, middle @ other.B)
        return FactoredMatrix(self.A, self.B @ other)

    def __rmatmul__(self, other: torch.Tensor) -> "FactoredMatrix":
        return FactoredMatrix(other @ self.A, self.B)

    def svd(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Thin SVD (U [.., m, k], S [.., k], Vh [.., k, n]; A @ B = U diag(S) Vh) from QR of the
        factors: A = Qa Ra, B^T = Qb Rb, so A B = Qa (Ra Rb^T) Qb^T and only Ra Rb^T is decomposed."""
        Qa, Ra = torch.linalg.qr(self.A)
        Qb, Rb = torch.linalg.qr(self.B.mT)
        u, s, vh = torch.linalg.svd(Ra @ Rb.mT)
        return Qa @ u, s, vh @ Qb.mT

    def singular_values(self) -> torch.Tensor:
        Ra = torch.linalg.qr(self.A).R
        Rb = torch.linalg.qr(self.B.mT).R
        return torch.linalg.svdvals(Ra @ Rb.mT)

    def norm(self) -> torch.Tensor:
        """Frobenius norm per batch entry: ||AB||^2 = tr((A^T A)(B B^T))."""
        return (gram_left(self.A) * gram_right(self.B)).sum((-2, -1)).clamp_min(0).sqrt()

    def components(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The rank-1 parts: (U, S, Vh) with part i = S_i * outer(U[.., :, i], Vh[.., i, :])."""
        return self.svd()

    def __repr__(self) -> str:
        return f"FactoredMatrix(shape={self.shape}, inner={self.inner})"


def gram_left(A: torch.Tensor) -> torch.Tensor:
    return A.mT @ A


def gram_right(B: torch.Tensor) -> torch.Tensor:
    return B @ B.mT


def pairwise_product_norms(left: FactoredMatrix, right: FactoredMatrix, chunk: int = 64) -> torch.Tensor:
    """||L_i @ R_j||_F for every L_i in `left` [N, m, n] and R_j in `right` [M, n, p]: [N, M].

    With L = A1 B1 and R = A2 B2: ||A1 (B1 A2) B2||^2 = tr(G (B1 A2) H (B1 A2)^T), G = A1^T A1,
    H = B2 B2^T; all k x k. Chunked over `left` to bound memory (N * M * k1 * k2 floats).
    """
    G, H = gram_left(left.A), gram_right(right.B)                 # [N, k1, k1], [M, k2, k2]
    rows = []
    for s in range(0, left.B.shape[0], chunk):
        M = left.B[s:s + chunk, None] @ right.A[None]             # [n, M, k1, k2]
        sq = ((G[s:s + chunk, None] @ M @ H[None]) * M).sum((-2, -1))
        rows.append(sq.clamp_min(0).sqrt())
    return torch.cat(rows)
