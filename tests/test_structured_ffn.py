"""Structured FFNs (lowrank, blockdense, blockshuffle): structure, init, self-guided training, premerge."""
import math

import pytest
import torch

from lmlab.config import ModelConfig
from lmlab.model.ffn import MLP
from lmlab.model.structured_ffn import (BlockDenseLinear, BlockShuffleLinear, LowRankLinear, StructuredMLP,
                                        premerge, unmerge)
from lmlab.model.training_hooks import set_progress
from lmlab.checkpoint import load_model
from variant_checks import check_train_resume_load_generate, make_model, one_thread

KINDS = ["lowrank", "blockdense", "blockshuffle"]


@pytest.fixture(autouse=True)
def _one_thread():  # small models: threads only add contention on a shared CPU
    with one_thread():
        yield


def layers():
    torch.manual_seed(0)
    return [LowRankLinear(32, 128, 16, 0.02), BlockDenseLinear(32, 128, 16, 2, 0.02),
            BlockShuffleLinear(32, 128, 4, 0.02), BlockShuffleLinear(128, 32, 2, 0.02, guided=0.3)]


def ffn_params(mlp):
    return sum(p.numel() for n, p in mlp.named_parameters() if not n.endswith("guide"))


@pytest.mark.parametrize("kind,kw,fraction", [("lowrank", dict(ffn_rank=0.5), 0.625), ("lowrank", dict(ffn_rank=0.25), 0.3125),
                                              ("blockshuffle", dict(ffn_blocks=2), 0.625),
                                              ("blockshuffle", dict(ffn_blocks=4), 0.3125),
                                              ("blockdense", dict(ffn_blocks=2, ffn_rank=2 / 3), 7.5 * 42 / (8 * 64))])  # rank 42
def test_parameter_fractions(kind, kw, fraction):
    cfg = ModelConfig(d_model=64, **kw)
    assert ffn_params(StructuredMLP(cfg, kind)) / ffn_params(MLP(cfg)) == pytest.approx(fraction)


def test_first_block_stays_dense():
    model = make_model(ffn="lowrank", n_layers=3)
    kinds = [type(b.sublayers["ffn"].mixer) for b in model.blocks]
    assert kinds == [MLP, StructuredMLP, StructuredMLP]


@pytest.mark.parametrize("layer", layers(), ids=lambda l: type(l).__name__)
def test_structured_product_equals_its_dense_matrix(layer):
    x = torch.randn(5, layer.d_in)
    with torch.no_grad():
        torch.testing.assert_close(layer.structured(x), x @ layer.dense_weight().t(), atol=1e-6, rtol=1e-5)
        dense = layer.dense_weight()
    if isinstance(layer, BlockShuffleLinear):  # every output depends on every input (the shuffle mixes blocks)
        assert (dense.abs() > 0).all()


def test_initialisations():
    torch.manual_seed(0)
    low = LowRankLinear(64, 256, 16, 0.02)
    s = torch.linalg.svdvals(low.dense_weight().detach())
    assert (s[16:] < 1e-6).all() and s[0] > 0.02 * math.sqrt(256)             # rank 16, the top of a N(0, .02) draw
    torch.testing.assert_close(low.U.t() @ low.U, low.V @ low.V.t())          # balanced factors sqrt(S)
    for layer in (BlockDenseLinear(64, 256, 32, 4, 0.02), BlockShuffleLinear(64, 256, 4, 0.02)):
        for factor in layer.factors():
            blocks = factor if factor.dim() == 3 else factor[None]
            for sv in torch.linalg.svdvals(blocks.detach()):
                torch.testing.assert_close(sv, sv[0].expand_as(sv))         # orthogonal up to a scale
        assert layer.dense_weight().pow(2).mean().sqrt().item() == pytest.approx(0.02, rel=1e-4)


def test_self_guided_schedule_and_drop():
    torch.manual_seed(0)
    layer = LowRankLinear(32, 64, 8, 0.02, guided=0.5)
    x = torch.randn(3, 32)
    torch.testing.assert_close(layer.guide, layer.dense_weight())            # starts equal to the structure
    with torch.no_grad():
        layer.guide.add_(torch.randn_like(layer.guide) * 0.01)               # as after some training
    for p, a in [(0.0, 1.0), (0.25, 0.5), (0.5, 0.0), (0.9, 0.0)]:
        layer.set_progress(p)
        assert layer.alpha() == pytest.approx(a, abs=1e-7)
        expected = a * x @ layer.guide.t() + (1 - a) * layer.structured(x)
        torch.testing.assert_close(layer(x), expected, atol=1e-6, rtol=1e-5)
    layer.set_progress(0.75)                                                 # dropped: no gradient, no compute
    layer(x).sum().backward()
    assert layer.guide.grad is None and layer.U.grad is not None


def test_set_progress_reaches_every_structured_layer():
    model = make_model(ffn="blockdense", self_guided=0.4, n_layers=3)
    set_progress(model, 0.2)
    alphas = [m.alpha() for m in model.modules() if hasattr(m, "alpha")]
    assert len(alphas) == 4 and all(a == pytest.approx(0.5) for a in alphas)


@pytest.mark.parametrize("kind", KINDS)
def test_premerge_gives_the_same_logits(kind):
    model = make_model(ffn=kind, self_guided=0.5).eval()
    set_progress(model, 0.1)
    ids = torch.randint(0, 37, (2, 20))
    with torch.no_grad():
        ref = model(ids)[0]
        assert premerge(model) == 2
        torch.testing.assert_close(model(ids)[0], ref, atol=1e-5, rtol=1e-5)
        unmerge(model)
        torch.testing.assert_close(model(ids)[0], ref, atol=0, rtol=0)
        premerge(model)
        model.train()                               # training drops the merged copies (they would go stale)
        assert all(m.merged is None for m in model.modules() if hasattr(m, "merged"))


def test_train_resume_load_generate_self_guided(tmp_path):
    check_train_resume_load_generate(tmp_path, ["model.ffn=lowrank", "model.self_guided=0.95"])
    model, _, _ = load_model(tmp_path / "run")
    # the last of 6 steps ran at progress 5/6; the checkpoint keeps it, so the guide weight is the trained one
    alphas = [m.alpha() for m in model.modules() if hasattr(m, "alpha")]
    assert alphas == pytest.approx([0.5 * (1 + math.cos(math.pi * (5 / 6) / 0.95))] * 2, abs=1e-6)


def test_bad_block_count_is_a_clear_error():
    with pytest.raises(ValueError, match="ffn_blocks"):
        make_model(ffn="blockshuffle", ffn_blocks=3)
    with pytest.raises(ValueError, match="ffn_blocks"):
        make_model(ffn="blockdense", ffn_blocks=0)
