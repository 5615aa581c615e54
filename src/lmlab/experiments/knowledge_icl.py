"""The icl part of `lmlab experiment knowledge`: in-context softmax regression against one
gradient-descent step on the same in-context pairs (the "weight shifting" of Li et al., 2023).

A small causal Transformer reads x_1, y_1, x_2, y_2, ... (one token per vector, a flag telling
which) and predicts y_i at each x_i from the pairs before it, trained with soft cross-entropy on
fresh sequences every step. With n pairs in context and a query q it predicts p_tf(q); the
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
    def __init__(self, dim: int, classes: int, width: int, layers: int, heads: int, max_pairs: int):
        super().__init__()
        self.dim, self.classes = dim, classes
        self.inp = nn.Linear(dim + classes + 1, width)
        self.pos = nn.Embedding(2 * max_pairs + 1, width)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Logits [B, n, classes] of y_i read at every x_i (x [B, n, dim], y [B, n, classes])."""
        B, n, _ = x.shape
        zx = torch.cat([x, torch.zeros(B, n, self.classes), torch.zeros(B, n, 1)], -1)
        zy = torch.cat([torch.zeros(B, n, self.dim), y, torch.ones(B, n, 1)], -1)
        z = torch.stack([zx, zy], 2).reshape(B, 2 * n, -1)[:, : 2 * n - 1]  # the last y is never read
        h = self.inp(z) + self.pos.weight[: 2 * n - 1]
        mask = nn.Transformer.generate_square_subsequent_mask(2 * n - 1)
        h = self.norm(self.body(h, mask=mask, is_causal=True))
        return self.out(h[:, 0::2])


def train_regressor(s: dict, seed: int, echo) -> InContextRegressor:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = InContextRegressor(s["dim"], s["classes"], s["width"], s["layers"], 4, s["max_pairs"] + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=max(s["steps"], 1), pct_start=0.1)
    for step in range(s["steps"]):
        x, y, _ = sr.sample(s["batch"], s["max_pairs"] + 1, s["dim"], s["classes"], gen)
        loss = sr.soft_cross_entropy(model(x, y), y)
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
    """[B, Q, classes]: the model's prediction for each query q [B, Q, dim] after the n pairs of (x, y)."""
    B, Q, _ = q.shape
    n = x.shape[1]
    xs = torch.cat([x.repeat_interleave(Q, 0), q.reshape(B * Q, 1, -1)], 1)
    ys = torch.cat([y.repeat_interleave(Q, 0), torch.zeros(B * Q, 1, y.shape[-1])], 1)
    return torch.softmax(model(xs, ys)[:, n], -1).reshape(B, Q, -1)


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
