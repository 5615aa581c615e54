"""A "moral direction" in sentence-embedding space (after Schramowski et al., 2022).

Embed action phrases (each in the template "I will PHRASE."), centre them, and take the first
principal component as the direction, oriented so that normative phrases score higher; a
phrase's score is its centred embedding projected on it, and the threshold between the two
classes is the midpoint of their mean training scores. The same code serves any embedder:
mean-pooled hidden states of an lmlab model, or a packaged sentence encoder (lmlab/eval/text_features.py).
The phrase list ships in data/moral_phrases.tsv (its header says how it was written).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import LmlabError

PHRASES = Path(__file__).parent / "data" / "moral_phrases.tsv"
TEMPLATE = "I will {}."


def load_phrases(path=PHRASES) -> list[tuple[str, int]]:
    """(phrase, label) with label +1 (normative) or -1 (non-normative); '#' lines are comments."""
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        label, _, phrase = line.partition("\t")
        if label not in ("+1", "-1") or not phrase.strip():
            raise LmlabError(f"{path}:{n}: expected '+1' or '-1', a tab, and a phrase")
        rows.append((phrase.strip(), int(label)))
    return rows


@dataclass
class Direction:
    mean: torch.Tensor       # [d] the centre of the training embeddings
    vector: torch.Tensor     # [d] unit first principal component, normative side positive
    threshold: float         # scores above it are called normative
    explained: float         # share of the centred variance along the direction

    def score(self, embeddings: torch.Tensor) -> torch.Tensor:
        return (embeddings.float() - self.mean) @ self.vector


def fit_direction(embeddings: torch.Tensor, labels: list[int]) -> Direction:
    """The first principal component of `embeddings` [N, d], oriented and thresholded by `labels`."""
    y = torch.tensor(labels)
    if not ((y == 1).any() and (y == -1).any()):
        raise LmlabError("the moral direction needs phrases of both labels (+1 and -1)")
    X = embeddings.float()
    mean = X.mean(0)
    _, s, vt = torch.linalg.svd(X - mean, full_matrices=False)
    vector = vt[0]
    scores = (X - mean) @ vector
    if scores[y == 1].mean() < scores[y == -1].mean():
        vector, scores = -vector, -scores
    threshold = float((scores[y == 1].mean() + scores[y == -1].mean()) / 2)
    return Direction(mean, vector, threshold, float(s[0] ** 2 / (s ** 2).sum()))


def agreement(scores: torch.Tensor, labels: list[int], threshold: float) -> float:
    """Share of phrases whose side of the threshold matches their label."""
    predicted = torch.where(scores > threshold, 1, -1)
    return float((predicted == torch.tensor(labels)).float().mean())


def auc(scores: torch.Tensor, labels: list[int]) -> float:
    """Probability that a normative phrase outscores a non-normative one (ties count half)."""
    y = torch.tensor(labels)
    pos, neg = scores[y == 1], scores[y == -1]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).float() + 0.5 * (diff == 0).float()).mean())


def held_out(embeddings: torch.Tensor, labels: list[int], splits: int = 5, test_fraction: float = 0.3,
             seed: int = 0) -> dict:
    """Agreement and AUC on held-out phrases over `splits` random stratified splits."""
    rows = []
    for k in range(splits):
        rng = random.Random(seed * 1000 + k)
        test = []
        for lab in (1, -1):
            idx = [i for i, y in enumerate(labels) if y == lab]
            test += rng.sample(idx, max(1, int(len(idx) * test_fraction)))
        train = [i for i in range(len(labels)) if i not in set(test)]
        d = fit_direction(embeddings[train], [labels[i] for i in train])
        s = d.score(embeddings[test])
        rows.append({"agreement": agreement(s, [labels[i] for i in test], d.threshold),
                     "auc": auc(s, [labels[i] for i in test]), "explained": d.explained})
    return {"splits": rows, "test": len(test), "train": len(labels) - len(test)}


def rerank(candidates: list[str], scores: torch.Tensor, threshold: float) -> tuple[list[str], list[str]]:
    """(kept, rejected): candidates scoring at or above `threshold` best first, and the others."""
    order = torch.argsort(scores, descending=True).tolist()
    kept = [candidates[i] for i in order if scores[i] >= threshold]
    return kept, [candidates[i] for i in order if scores[i] < threshold]


def lm_embedder(model, tokenizer, layer: int = -1):
    """texts -> [N, d]: an lmlab model's residual stream after block `layer`, mean-pooled per text."""
    from .probes import pooled_states

    return lambda texts: pooled_states(model, tokenizer, texts)[layer]
