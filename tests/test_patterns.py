"""Block patterns with M / L mixers (and meta-tokens): the properties every variant must keep."""
import pytest
import torch

from lmlab import config
from lmlab.config import ModelConfig
from lmlab.infer.generate import generate
from lmlab.model import Transformer
from lmlab.model.hooks import hook_points
from lmlab.checkpoint import load_model
from lmlab.train.loop import train

from variant_checks import check_cached_greedy, check_causal, check_gradients, check_overfits

PATTERNS = ["MF", "LF", "AMF MF", "ALF MF"]
VOCAB = 37


def make_model(pattern, **kw):
    torch.manual_seed(0)
    cfg = ModelConfig(n_layers=2, d_model=32, n_heads=4, context=48, vocab_size=VOCAB, pattern=pattern,
                      ssm_head_dim=16, ssm_state=8, lmu_order=8, **kw)
    model = Transformer(cfg)
    for sub in model.modules():  # small chunks so 48 tokens cross several of them
        if hasattr(sub, "chunk"):
            sub.chunk = 8
    return model


@pytest.mark.parametrize("pattern", PATTERNS)
def test_causal(pattern):
    # LMU's FFT convolution leaks ~1e-7 of rounding noise backwards; nothing else may
    check_causal(make_model(pattern), atol=1e-5)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_cached_greedy_equals_full_forward(pattern):
    check_cached_greedy(make_model(pattern))


@pytest.mark.parametrize("pattern", PATTERNS + ["AF"])
def test_gradients_reach_every_parameter(pattern):
    check_gradients(make_model(pattern, meta_tokens=2, meta_rate=0.1))


@pytest.mark.parametrize("pattern", ["MF", "LF", "ALF MF"])
def test_tiny_model_overfits_a_batch(pattern):
    check_overfits(make_model(pattern))


TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 40


@pytest.mark.parametrize("overrides", [["model.pattern=AMF LF"], ["model.meta_tokens=2", "model.meta_rate=0.1"]])
def test_train_resume_load_generate(tmp_path, overrides):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    cfg = config.load("tiny", [f"data.corpus={corpus}", f"data.cache_dir={tmp_path / 'cache'}", "model.n_layers=2",
                               "model.context=32", "train.max_steps=4", "train.ckpt_every=2", "train.eval_every=2",
                               "train.eval_batches=1", "train.batch_size=4", *overrides])
    run = tmp_path / "run"
    first = train(cfg, run, progress=False, echo=lambda *a: None)
    assert first["step"] == 4
    cfg.train.max_steps = 6
    resumed = train(cfg, run, resume=True, progress=False, echo=lambda *a: None)
    assert resumed["step"] == 6
    model, tokenizer, loaded_cfg = load_model(run)
    assert loaded_cfg.model.pattern == cfg.model.pattern and loaded_cfg.model.meta_tokens == cfg.model.meta_tokens
    ids = torch.tensor([tokenizer.encode("To be, or not")])
    fresh = Transformer(loaded_cfg.model).eval()
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(fresh(ids)[0], model(ids)[0], atol=0, rtol=0)
    text = generate(model, tokenizer, "To be", max_new_tokens=40, temperature=0)
    assert text == generate(model, tokenizer, "To be", max_new_tokens=40, temperature=0)
    assert len(text) > 0


def test_hook_names_and_bad_configs():
    names = hook_points(make_model("AMF LF"))
    assert {"blocks.0.attn.in", "blocks.0.ssm.out", "blocks.1.lmu.in", "blocks.1.ffn.out"} <= set(names)
    for bad in ({"pattern": "AXF"}, {"pattern": "MF", "ssm_head_dim": 7}, {"pattern": "LF", "lmu_order": 0},
                {"meta_tokens": -1}, {"meta_tokens": 2, "meta_rate": 1.0}):
        cfg = config.from_dict({"model": bad}, config.load("tiny"))  # unvalidated: the model's own checks
        cfg.model.vocab_size = VOCAB
        with pytest.raises(ValueError):
            Transformer(cfg.model)
