"""Calibration of next-token prediction: expected calibration error and a reliability diagram.

ECE bins predictions by their top-1 confidence into equal-width bins on [0, 1] and averages, over
bins weighted by their share of predictions, |accuracy − mean confidence|. A calibrated model's
70%-confident guesses are right 70% of the time, and its ECE is ~0.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import LmlabError


def ece(confidence, correct, n_bins: int = 15) -> dict:
    """{"ece", "bins": [{lo, hi, count, confidence, accuracy}]} for arrays of confidences and 0/1 hits."""
    conf = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    if conf.size == 0 or conf.shape != hit.shape:
        raise LmlabError("calibration needs as many correctness flags as confidences, and at least one")
    # bin k holds (k/n, (k+1)/n]; a confidence of exactly 0 goes to the first bin
    which = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    bins, total = [], 0.0
    for k in range(n_bins):
        sel = which == k
        n = int(sel.sum())
        c = float(conf[sel].mean()) if n else None
        a = float(hit[sel].mean()) if n else None
        if n:
            total += n / conf.size * abs(a - c)
        bins.append({"lo": k / n_bins, "hi": (k + 1) / n_bins, "count": n, "confidence": c, "accuracy": a})
    return {"ece": total, "n": int(conf.size), "accuracy": float(hit.mean()),
            "mean_confidence": float(conf.mean()), "bins": bins}


@torch.no_grad()
def next_token_confidence(model, ids, batch_size: int = 8, max_tokens: int = 0):
    """(top-1 probability, whether it is the next token) for each position of non-overlapping
    windows of the model's context over `ids`."""
    ids = np.asarray(ids, dtype=np.int64)
    if max_tokens:
        ids = ids[: max_tokens + 1]
    ctx = model.cfg.context
    n = (len(ids) - 1) // ctx
    if n == 0:
        ctx, n = len(ids) - 1, 1
    if ctx < 1:
        raise LmlabError("need at least two tokens for calibration")
    device = next(model.parameters()).device
    model.eval()
    confs, hits = [], []
    for i in range(0, n, batch_size):
        starts = range(i * ctx, min(n, i + batch_size) * ctx, ctx)
        x = torch.from_numpy(np.stack([ids[s:s + ctx] for s in starts])).to(device)
        y = torch.from_numpy(np.stack([ids[s + 1:s + 1 + ctx] for s in starts])).to(device)
        p = torch.softmax(model(x)[0].float(), -1)
        conf, pred = p.max(-1)
        confs.append(conf.flatten().cpu().numpy())
        hits.append((pred == y).flatten().cpu().numpy())
    return np.concatenate(confs), np.concatenate(hits)


def reliability_diagram(result: dict, png, title: str = "reliability") -> None:
    """Accuracy per confidence bin against the diagonal of perfect calibration, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = [b for b in result["bins"] if b["count"]]
    width = result["bins"][0]["hi"] - result["bins"][0]["lo"]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.bar([b["lo"] for b in bins], [b["accuracy"] for b in bins], width=width, align="edge",
           edgecolor="black", alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("top-1 confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title} (ECE {result['ece']:.3f}, n={result['n']:,})")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def evaluate(model, ids, batch_size: int = 8, n_bins: int = 15, png=None) -> dict:
    """ECE of next-token prediction on `ids` (and its reliability diagram at `png`, if given)."""
    result = ece(*next_token_confidence(model, ids, batch_size), n_bins=n_bins)
    if png:
        from pathlib import Path

        Path(png).parent.mkdir(parents=True, exist_ok=True)
        reliability_diagram(result, png)
        result["png"] = str(png)
    return result
