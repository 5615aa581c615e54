"""Mixture-of-experts FFN: routing, capacity, load-balancing loss, statistics, and the variant checks."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from lmlab.config import ModelConfig
from lmlab.model.moe import MoE
from lmlab.model.training_hooks import train_stats
from variant_checks import check_train_resume_load_generate, make_model, one_thread


@pytest.fixture(autouse=True)
def _one_thread():  # small models: threads only add contention on a shared CPU
    with one_thread():
        yield


def moe(**kw):
    torch.manual_seed(0)
    return MoE(ModelConfig(d_model=16, n_layers=2, **kw))


def test_output_is_the_gate_weighted_sum_of_the_chosen_experts():
    layer = moe(moe_experts=4, moe_top_k=2).eval()
    x = torch.randn(7, 16)
    with torch.no_grad():
        y = layer(x)
        probs = F.softmax(layer.router(x), -1)
        for i in range(7):
            p, e = probs[i].topk(2)
            want = sum((p[j] / p.sum()) * F.linear(F.gelu(F.linear(x[i], layer.w_up[e[j]]), approximate="tanh"),
                                                   layer.w_down[e[j]]) for j in range(2))
            torch.testing.assert_close(y[i], want, atol=1e-6, rtol=1e-5)
    assert layer.load.sum().item() == 14 and layer.dropped == 0.0


def test_expert_width_keeps_active_parameters_of_the_dense_ffn():
    layer = moe(moe_experts=8, moe_top_k=2)
    assert layer.w_up.shape == (8, 32, 16)            # 4 * 16 / top_k
    assert moe(moe_expert_ff=10).w_up.shape[1] == 10


def test_capacity_drops_in_training_only():
    layer = moe(moe_experts=4, moe_top_k=1, moe_capacity=1.0)
    with torch.no_grad():
        layer.router.weight.zero_()
        layer.router.weight[0, 0] = 10.0              # almost every token prefers expert 0
    x = torch.randn(64, 16)
    x[:, 0] = x[:, 0].abs() + 1
    layer.train()
    layer(x)
    cap = math.ceil(1.0 * 64 * 1 / 4)
    assert layer.load[0].item() == cap and layer.load.max().item() <= cap
    assert layer.dropped == pytest.approx(1 - layer.load.sum().item() / 64)
    dropped_rows = layer(x).abs().sum(-1) == 0
    assert dropped_rows.sum().item() == 64 - cap      # the dropped tokens get nothing (the residual carries them)
    assert not dropped_rows[:cap].any()               # earlier tokens keep their place
    layer.eval()
    layer(x)
    assert layer.dropped == 0.0 and layer.load[0].item() == 64


def test_load_balancing_loss():
    layer = moe(moe_experts=4, moe_top_k=2, moe_aux_weight=0.1).train()
    with torch.no_grad():
        layer.router.weight.zero_()                   # uniform router: aux = weight * E * sum f_i / E = weight
    layer(torch.randn(10, 16))
    assert layer.aux_loss.item() == pytest.approx(0.1)
    layer = moe(moe_experts=4, moe_top_k=1, moe_aux_weight=1.0).train()
    x = torch.randn(50, 16)
    layer(x)
    probs = F.softmax(layer.router(x), -1)
    frac = torch.bincount(probs.argmax(-1), minlength=4).float() / 50
    torch.testing.assert_close(layer.aux_loss, 4 * (frac * probs.mean(0)).sum())
    layer.aux_loss.backward()                         # the router learns from it
    assert layer.router.weight.grad.abs().sum() > 0
    layer.aux_loss = None
    layer.eval()
    layer(x)
    assert layer.aux_loss is None                     # evaluation adds nothing to a loss


def test_train_resume_load_generate_and_logged_load(tmp_path):
    check_train_resume_load_generate(tmp_path, ["model.ffn=moe", "model.moe_capacity=1.25"])
    lines = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    loads = [l["moe_load"] for l in lines if "moe_load" in l]
    assert loads and all(len(per_layer) == 2 and len(per_layer[0]) == 4 for per_layer in loads)
    tokens = 4 * 32 * 2                               # batch x context x top_k assignments per layer
    for line in lines:  # kept + dropped (mean fraction over the 2 layers) = every assignment
        kept = sum(sum(layer) for layer in line["moe_load"])
        assert kept + round(line["moe_dropped"] * 2 * tokens) == 2 * tokens
        assert all(max(layer) <= math.ceil(1.25 * tokens / 4) for layer in line["moe_load"])


def test_stats_of_a_model():
    model = make_model(ffn="moe", moe_experts=3, moe_top_k=1).train()
    model(torch.randint(0, 37, (2, 10)))
    stats = train_stats(model)
    assert [sum(l) for l in stats["moe_load"]] == [20, 20] and stats["moe_dropped"] == 0.0
