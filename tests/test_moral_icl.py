"""The moral direction on a toy set, and the one-gradient-step baseline of in-context softmax
regression against a hand computation."""
import math

import pytest
import torch

from lmlab.analysis import moral
from lmlab.eval.tasks import softmax_regression as sr


def toy():
    g = torch.Generator().manual_seed(0)
    labels = [1] * 10 + [-1] * 10
    # the classes differ along (1, 1, 0)/sqrt 2 by 6; the other directions carry noise of sd 0.1
    X = 0.1 * torch.randn(20, 3, generator=g)
    X[:10, :2] += 3 / math.sqrt(2)
    X[10:, :2] -= 3 / math.sqrt(2)
    return X + torch.tensor([5.0, -2.0, 1.0]), labels


def test_direction_is_the_first_principal_component_oriented_by_the_labels():
    X, labels = toy()
    d = moral.fit_direction(X, labels)
    assert torch.allclose(d.vector, torch.tensor([1.0, 1.0, 0.0]) / math.sqrt(2), atol=0.02)
    assert d.explained > 0.99
    assert moral.agreement(d.score(X), labels, d.threshold) == 1.0
    assert moral.auc(d.score(X), labels) == 1.0
    flipped = moral.fit_direction(X, [-y for y in labels])
    assert torch.allclose(flipped.vector, -d.vector)
    new = torch.tensor([[5.0 + 2.0, -2.0 + 2.0, 1.0], [5.0 - 2.0, -2.0 - 2.0, 1.0]])
    assert d.score(new)[0] > d.threshold > d.score(new)[1]


def test_held_out_and_rerank():
    X, labels = toy()
    r = moral.held_out(X, labels, splits=3)
    assert [s["agreement"] for s in r["splits"]] == [1.0, 1.0, 1.0] and r["test"] == 6
    kept, rejected = moral.rerank(["a", "b", "c"], torch.tensor([0.5, -1.0, 2.0]), 0.0)
    assert kept == ["c", "a"] and rejected == ["b"]


def test_packaged_phrases_are_balanced_and_parse():
    rows = moral.load_phrases()
    assert len(rows) == 80 and sum(y for _, y in rows) == 0
    assert len({p for p, _ in rows}) == 80


def test_one_gradient_step_matches_a_hand_computation():
    x = torch.tensor([[[1.0], [2.0]]])              # B=1, n=2, d=1
    y = torch.tensor([[[1.0, 0.0], [0.5, 0.5]]])    # c=2
    # grad = mean((u - y_i) x_i) = ((-0.5, 0.5) * 1 + (0, 0) * 2) / 2 = (-0.25, 0.25)
    assert torch.allclose(sr.gd_gradient(x, y), torch.tensor([[[-0.25], [0.25]]]))
    # lr 2: W = (0.5, -0.5); query 2: logits (1, -1)
    p = sr.gd_predict(x, y, torch.tensor([[[2.0]]]), lr=2.0)
    e = math.exp(1)
    assert torch.allclose(p, torch.tensor([[[e / (e + 1 / e), (1 / e) / (e + 1 / e)]]]))


def test_gradient_is_that_of_the_cross_entropy_at_zero():
    g = torch.Generator().manual_seed(1)
    x, y, _ = sr.sample(3, 5, 4, 3, g)
    W = torch.zeros(3, 3, 4, requires_grad=True)
    loss = sum(sr.soft_cross_entropy(x[b] @ W[b].T, y[b]) for b in range(3))
    loss.backward()
    assert torch.allclose(W.grad, sr.gd_gradient(x, y), atol=1e-6)


def test_samples_are_softmax_of_a_linear_map():
    x, y, A = sr.sample(2, 7, 3, 4, torch.Generator().manual_seed(0))
    assert x.shape == (2, 7, 3) and y.shape == (2, 7, 4) and A.shape == (2, 4, 3)
    assert torch.allclose(y, torch.softmax(x @ A.transpose(1, 2), -1))


@pytest.mark.parametrize("n", [1, 8])
def test_implied_update_recovers_a_linear_model(n):
    from lmlab.experiments.knowledge_icl import implied_update

    g = torch.Generator().manual_seed(n)
    M = torch.randn(2, 3, 4, generator=g)
    M = M - M.mean(1, keepdim=True)
    q = torch.randn(2, 16, 4, generator=g)
    assert torch.allclose(implied_update(torch.softmax(q @ M.transpose(1, 2), -1), q), M, atol=1e-4)
