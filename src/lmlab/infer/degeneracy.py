"""A small classifier for P(not degenerate | prefix), trained on the model's own samples.

Samples of the model (at several temperatures; low ones loop) are labelled by
`lmlab.eval.diversity.is_degenerate` on the *whole* sample; the classifier sees only prefixes,
so it learns which prefixes lead to empty or repetitive text. It is a logistic regression on
a few cheap text features, fast enough to score every candidate of a beam at every step.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .. import jsonio
from ..errors import LmlabError
from ..eval import diversity

FEATURES = ("bias", "rep_1", "rep_2", "rep_3", "rep_4", "char_rep_8", "words", "alpha_frac", "repeated_suffix")


def features(text: str) -> list[float]:
    w = diversity.words(text)
    chars = list(text)
    c8 = diversity.ngrams(chars, 8)
    suffix = 0  # length (chars) of the longest suffix that also occurs earlier: a loop in progress
    for n in range(1, min(len(text) // 2, 64) + 1):
        if text[-n:] in text[:-n]:
            suffix = n
        else:
            break
    return [1.0, diversity.rep_n(text, 1), diversity.rep_n(text, 2), diversity.rep_n(text, 3), diversity.rep_n(text, 4),
            1.0 - len(set(c8)) / len(c8) if c8 else 0.0, min(len(w), 64) / 64,
            sum(ch.isalpha() for ch in text) / max(len(text), 1), suffix / 64]


class DegeneracyClassifier:
    def __init__(self, weight: list[float] | None = None):
        self.weight = torch.tensor(weight if weight is not None else [0.0] * len(FEATURES))

    def log_prob_ok(self, texts: list[str]) -> torch.Tensor:
        """log P(not degenerate | prefix) for each text."""
        x = torch.tensor([features(t) for t in texts])
        return torch.nn.functional.logsigmoid(x @ self.weight)

    def fit(self, prefixes: list[str], degenerate: list[bool], steps: int = 300, l2: float = 1e-3) -> dict:
        """Class-balanced logistic regression by L-BFGS; returns training accuracy and counts."""
        if not prefixes or len(set(degenerate)) < 2:
            raise LmlabError("the degeneracy classifier needs samples of both kinds (degenerate and not); "
                             "draw more samples or use more temperatures")
        x = torch.tensor([features(t) for t in prefixes])
        y = torch.tensor([0.0 if d else 1.0 for d in degenerate])  # 1 = ok
        pos = y.mean()
        sample_w = torch.where(y > 0, 0.5 / pos, 0.5 / (1 - pos))
        w = torch.zeros(x.shape[1], requires_grad=True)
        opt = torch.optim.LBFGS([w], max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(x @ w, y, weight=sample_w)
                    + l2 * (w[1:] ** 2).sum())
            loss.backward()
            return loss
        opt.step(closure)
        self.weight = w.detach()
        acc = float((((x @ self.weight) > 0).float() == y).float().mean())
        return {"train_accuracy": acc, "examples": len(y), "ok_fraction": float(pos)}

    def save(self, path) -> None:
        Path(path).write_text(jsonio.dumps({"features": FEATURES, "weight": self.weight.tolist()}, indent=1))

    @classmethod
    def load(cls, path) -> "DegeneracyClassifier":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise LmlabError(f"cannot read degeneracy classifier {path}: {e}") from None
        if tuple(data.get("features", ())) != FEATURES:
            raise LmlabError(f"{path} was trained on other features than this version uses")
        return cls(data["weight"])


def training_set(samples: list[str], every: int = 16) -> tuple[list[str], list[bool]]:
    """(prefixes, label of their whole sample): prefixes every `every` characters of each sample."""
    prefixes, labels = [], []
    for s in samples:
        bad = diversity.is_degenerate(s)
        for end in range(every, len(s) + every, every):
            prefixes.append(s[:end])
            labels.append(bad)
        if not s:
            prefixes.append(s)
            labels.append(bad)
    return prefixes, labels


def train_on_samples(model, tokenizer, prompts: list[str], temperatures=(0.0, 0.3, 0.6, 0.9, 1.2),
                     max_new_tokens: int = 120, seeds: int = 2) -> tuple[DegeneracyClassifier, dict]:
    """Sample the model from `prompts`, label the samples, fit the classifier."""
    from .generate import generate

    samples = []
    for p in prompts:
        for t in temperatures:
            for seed in range(1 if t == 0 else seeds):
                samples.append(generate(model, tokenizer, p, max_new_tokens=max_new_tokens, temperature=t, seed=seed))
    clf = DegeneracyClassifier()
    stats = clf.fit(*training_set(samples))
    stats["samples"] = len(samples)
    stats["degenerate_samples"] = sum(diversity.is_degenerate(s) for s in samples) / max(len(samples), 1)
    return clf, stats


def attribute_fn(clf: DegeneracyClassifier, tokenizer):
    """The scorer conditional beam search takes: continuation ids -> log P(ok | prefix)."""
    return lambda seqs: clf.log_prob_ok([tokenizer.decode(s) for s in seqs])

