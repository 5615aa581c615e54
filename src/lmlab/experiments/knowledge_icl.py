"""The icl part of `lmlab experiment knowledge`: in-context softmax regression against one
gradient-descent step on the same in-context pairs (the "weight shifting" of Li et al., 2023).

A small Transformer reads one token per pair (x_j, y_j) and query tokens (q, flag); each query
sees a given number of the pairs (InContextRegressor), so one pass trains with every number of
pairs; soft cross-entropy on fresh sequences every step. With n pairs in context and a query q it predicts p_tf(q); the
baseline is p_gd(q) = softmax(W_1 q), W_1 one step from 0 (eval/tasks/softmax_regression.py),
its step size the one on a grid that brings it closest to the Transformer on separate
calibration sequences. The Transformer's implied update: the matrix M whose M q best fits its
centred log-probabilities over many queries with the same context (least squares); compared by
cosine with the gradient step W_1 (cosine does not depend on the step size).
"""
from __future__ import annotations

import torch
from torch import nn

from ..eval.tasks import softmax_regression as sr

LR_GRID = tuple(2 ** (k / 2) for k in range(-8, 9))  # 0.0625 .. 16


class InContextRegressor(nn.Module):
    """Pair tokens [x_j, y_j, 0] then query tokens [q, 0, 1]; a query sees only the first
    `visible` pairs and itself (so one pass trains every number of pairs at once), pairs see the
    pairs before them. No positions: the pairs are a set, told apart by their content."""

    def __init__(self, dim: int, classes: int, width: int, layers: int, heads: int):
        super().__init__()
        self.dim, self.classes = dim, classes
        self.inp = nn.Linear(dim + classes + 1, width)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor, y: torch.Tensor, q: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Logits [B, Q, classes] for queries q [B, Q, dim], query k seeing pairs 0..visible[k]-1 of (x, y)."""
        B, n, _ = x.shape
        Q = q.shape[1]
        pairs = torch.cat([x, y, torch.zeros(B, n, 1)], -1)
        queries = torch.cat([q, torch.zeros(B, Q, self.classes), torch.ones(B, Q, 1)], -1)
        blocked = torch.ones(n + Q, n + Q, dtype=torch.bool)
        blocked[:n, :n] = torch.ones(n, n, dtype=torch.bool).triu(1)
        blocked[n:, :n] = torch.arange(n)[None, :] >= visible[:, None]
        blocked[n:, n:] = ~torch.eye(Q, dtype=torch.bool)
        h = self.body(self.inp(torch.cat([pairs, queries], 1)), mask=blocked)
        return self.out(self.norm(h[:, n:]))


def train_regressor(s: dict, seed: int, echo) -> InContextRegressor:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = InContextRegressor(s["dim"], s["classes"], s["width"], s["layers"], 4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=max(s["steps"], 1), pct_start=0.1)
    n = s["max_pairs"]
    visible = torch.arange(n + 1)  # query k is x_k (k = n: a fresh point) and sees the k pairs before it
    for step in range(s["steps"]):
        x, y, _ = sr.sample(s["batch"], n + 1, s["dim"], s["classes"], gen)
        loss = sr.soft_cross_entropy(model(x[:, :n], y[:, :n], x, visible), y)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if (step + 1) % max(s["steps"] // 4, 1) == 0:
            echo(f"icl seed {seed} step {step + 1}: loss {loss.item():.4f}")
    return model.eval()


@torch.no_grad()
def query(model, x, y, q) -> torch.Tensor:
    """[B, Q, classes]: the model's prediction for each query q [B, Q, dim] after all n pairs of (x, y)."""
    return torch.softmax(model(x, y, q, torch.full((q.shape[1],), x.shape[1])), -1)


def implied_update(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """[B, classes, dim]: least-squares M with M q ~ the class-centred log p over the queries."""
    logits = torch.log(p.clamp_min(1e-12))
    logits = logits - logits.mean(-1, keepdim=True)
    return torch.linalg.lstsq(q, logits).solution.transpose(1, 2)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)


def distance(p: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Per sequence: mean over queries of the L2 distance between distributions."""
    return (p - r).norm(dim=-1).mean(-1)


def measure_n(model, n: int, s: dict, gen) -> dict:
    def batch():
        x, y, A = sr.sample(s["eval_seqs"], n + s["queries"], s["dim"], s["classes"], gen)
        return x[:, :n], y[:, :n], x[:, n:], y[:, n:], A

    cx, cy, cq, _, _ = batch()  # calibration: the step size closest to the Transformer
    p_cal = query(model, cx, cy, cq)
    lr = min(LR_GRID, key=lambda a: float(distance(sr.gd_predict(cx, cy, cq, a), p_cal).mean()))
    x, y, q, target, A = batch()
    p_tf, p_gd = query(model, x, y, q), sr.gd_predict(x, y, q, lr)
    uniform = torch.full_like(target, 1.0 / s["classes"])
    M = implied_update(p_tf, q)
    step = -sr.gd_gradient(x, y)
    rows = {"tf_gd": distance(p_tf, p_gd), "tf_truth": distance(p_tf, target), "gd_truth": distance(p_gd, target),
            "uniform_truth": distance(uniform, target), "cos_update_gd": cosine(M, step),
            "cos_update_truth": cosine(M, A - A.mean(1, keepdim=True)),
            "cos_gd_truth": cosine(step, A - A.mean(1, keepdim=True))}
    return {"n": n, "lr": lr, **{k: float(v.mean()) for k, v in rows.items()},
            **{f"{k}_sd": float(v.std()) for k, v in rows.items()}}


def icl_seed(s: dict, seed: int, echo) -> dict:
    model = train_regressor(s, seed, echo)
    gen = torch.Generator().manual_seed(10_000 + seed)
    rows = [measure_n(model, n, s, gen) for n in s["ns"]]
    for r in rows:
        echo(f"icl seed {seed} n={r['n']}: |tf-gd| {r['tf_gd']:.3f}, |tf-y| {r['tf_truth']:.3f}, "
             f"|gd-y| {r['gd_truth']:.3f}, cos(update, gd step) {r['cos_update_gd']:.3f}")
    return {"rows": rows, "params": sum(p.numel() for p in model.parameters())}
