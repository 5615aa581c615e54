"""Linear probes: what a model's hidden states encode, layer by layer.

Each text is run through the model; the residual stream after the embedding and after every block
is mean-pooled over the text's positions, and a multinomial logistic regression per layer learns
the label from those vectors. Held-out accuracy per layer says where the label becomes linearly
readable (layer 0 is the embedding: what the tokens alone give away).
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import LmlabError


@torch.no_grad()
def pooled_states(model, tokenizer, texts: list[str]) -> torch.Tensor:
    """[layers + 1, N, d]: mean over positions of the embedding output and of each block's output."""
    device = next(model.parameters()).device
    store: list = []
    handles = [model.hook_embed.register_forward_hook(lambda m, i, o: store.append(o))]
    handles += [b.register_forward_hook(lambda m, i, o: store.append(o)) for b in model.blocks]
    model.eval()
    rows = []
    try:
        for text in texts:
            ids = tokenizer.encode(text)[: model.cfg.context]
            if not ids:
                raise LmlabError("a probe text encodes to no tokens")
            store.clear()
            model(torch.tensor([ids], device=device))
            rows.append(torch.stack([s[0].float().mean(0) for s in store]).cpu())
    finally:
        for h in handles:
            h.remove()
    return torch.stack(rows, 1)


def fit_logistic(X: torch.Tensor, y: torch.Tensor, n_classes: int, l2: float = 1e-3, steps: int = 200):
    """(weights, bias, mean, std) of an L2-regularised multinomial logistic regression (L-BFGS)."""
    mean, std = X.mean(0), X.std(0).clamp_min(1e-6)
    Z = (X - mean) / std
    W = torch.zeros(Z.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(Z @ W + b, y) + l2 * (W ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return W.detach(), b.detach(), mean, std


def predict(params, X: torch.Tensor) -> torch.Tensor:
    W, b, mean, std = params
    return (((X - mean) / std) @ W + b).argmax(-1)


def probe_layers(states: torch.Tensor, labels: list[int], layers, test_fraction: float = 0.3, seed: int = 0) -> dict:
    """Held-out accuracy of a probe per layer, and the majority-class baseline."""
    n = states.shape[1]
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_test = max(1, int(n * test_fraction))
    test, train = torch.tensor(order[:n_test]), torch.tensor(order[n_test:])
    y = torch.tensor(labels)
    n_classes = int(y.max()) + 1
    majority = float((y[test] == torch.bincount(y[train], minlength=n_classes).argmax()).float().mean())
    acc = {}
    for layer in layers:
        params = fit_logistic(states[layer][train], y[train], n_classes)
        acc[str(layer)] = float((predict(params, states[layer][test]) == y[test]).float().mean())
    return {"accuracy": acc, "majority_baseline": majority, "train": len(train), "test": n_test,
            "classes": n_classes}


def language_task(directory, languages=None, per_language: int = 100, min_chars: int = 20, seed: int = 0):
    """(texts, labels, names): lines of the files LANG.txt in `directory`, labelled by language."""
    directory = Path(directory)
    files = sorted(directory.glob("*.txt"))
    if languages:
        files = [f for f in files if f.stem in languages]
        missing = set(languages) - {f.stem for f in files}
        if missing:
            raise LmlabError(f"no {', '.join(sorted(missing))}.txt in {directory}")
    if len(files) < 2:
        raise LmlabError(f"the language task needs at least two LANG.txt files in {directory}")
    rng = random.Random(seed)
    texts, labels = [], []
    for k, f in enumerate(files):
        lines = [ln.strip() for ln in f.read_text(encoding="utf-8").splitlines() if len(ln.strip()) >= min_chars]
        rng.shuffle(lines)
        texts += lines[:per_language]
        labels += [k] * len(lines[:per_language])
    return texts, labels, [f.stem for f in files]


def label_task_texts(name: str, per_class: int, context: int, seed: int = 0):
    """(texts, labels, names) of a label task's test region (eval/tasks/labelled.py), prompt left out."""
    from ..eval.tasks import labelled

    task = labelled.get(name)
    rows = labelled.make(task, {"test": per_class * len(task.labels)}, seed,
                         labelled.fitting_bytes([task], context))["test"]
    return [t for t, _ in rows], [task.labels.index(lab) for _, lab in rows], list(task.labels)
