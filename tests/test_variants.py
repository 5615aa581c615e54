"""Checks every architecture variant passes (variant_checks.py), parametrised over the norm, FFN and
MoE variants: causal, cached decoding equals the full forward, gradients reach every parameter,
a tiny model overfits a batch, and a run trains, resumes, loads and generates."""
import pytest

from lmlab.config import ModelConfig
from lmlab.model.ffn import FFNS
from lmlab.model.norms import NORMS
from variant_checks import (check_cached_greedy, check_causal, check_gradients, check_overfits,
                            check_train_resume_load_generate, make_model, one_thread)

# id -> (ModelConfig overrides, steps of the overfit check or None to skip it)
VARIANTS = {
    "rmsnorm": (dict(norm="rmsnorm"), 120),
    "crmsnorm": (dict(norm="crmsnorm"), 120),
    "crmsnorm-learned-untied-swiglu": (dict(norm="crmsnorm", positions="learned", tie_embeddings=False, ffn="swiglu"),
                                       None),
    "lowrank": (dict(ffn="lowrank"), 120),
    "blockdense": (dict(ffn="blockdense"), 120),
    "blockshuffle": (dict(ffn="blockshuffle"), 120),
    "blockshuffle-self-guided-crmsnorm": (dict(ffn="blockshuffle", self_guided=0.5, norm="crmsnorm"), None),
    "moe": (dict(ffn="moe"), 200),
    "moe-top1-capacity": (dict(ffn="moe", moe_top_k=1, moe_capacity=1.5), 200),
    "moe-crmsnorm": (dict(ffn="moe", norm="crmsnorm"), None),
}
TRAINED = [["model.norm=crmsnorm"], ["model.ffn=blockdense"], ["model.ffn=blockshuffle"]]


def kws(with_overfit: bool = False):
    return [pytest.param(kw, steps, id=name) for name, (kw, steps) in VARIANTS.items()
            if steps is not None or not with_overfit]


@pytest.fixture(autouse=True)
def _one_thread():  # small models: threads only add contention on a shared CPU
    with one_thread():
        yield


def test_every_registered_norm_and_ffn_is_checked():
    defaults = ModelConfig()
    for registry, key in ((NORMS, "norm"), (FFNS, "ffn")):
        checked = {kw.get(key, getattr(defaults, key)) for kw, _ in VARIANTS.values()}
        assert set(registry.names()) - {getattr(defaults, key)} <= checked, key


@pytest.mark.parametrize("kw,steps", kws())
def test_causal(kw, steps):
    check_causal(make_model(**kw))


@pytest.mark.parametrize("kw,steps", kws())
def test_cached_greedy_equals_full_forward(kw, steps):
    check_cached_greedy(make_model(**kw))


@pytest.mark.parametrize("kw,steps", kws())
def test_gradients_reach_every_parameter(kw, steps):
    check_gradients(make_model(**kw))


@pytest.mark.parametrize("kw,steps", kws(with_overfit=True))
def test_tiny_model_overfits_a_batch(kw, steps):
    check_overfits(make_model(**kw), steps=steps)


@pytest.mark.parametrize("overrides", TRAINED, ids=lambda o: o[0])
def test_train_resume_load_generate(tmp_path, overrides):
    check_train_resume_load_generate(tmp_path, overrides)
