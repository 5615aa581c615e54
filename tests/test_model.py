import pytest
import torch

from lmlab.analysis.hooks import capture
from lmlab.config import ModelConfig
from lmlab.infer.generate import decode_steps
from lmlab.model import Transformer

VARIANTS = {
    "gpt2-like": dict(positions="learned", norm="layernorm", ffn="mlp", bias=True),
    "llama-like": dict(positions="rope", norm="rmsnorm", ffn="swiglu", tie_embeddings=False),
    "gqa": dict(n_heads=4, n_kv_heads=2),
    "mqa": dict(n_heads=4, n_kv_heads=1),
}


def make(seed=0, **kw):
    torch.manual_seed(seed)
    base = dict(vocab_size=61, n_layers=2, d_model=32, n_heads=4, context=24)
    return Transformer(ModelConfig(**{**base, **kw})).eval()


@pytest.mark.parametrize("name", VARIANTS)
def test_causality_no_position_sees_the_future(name):
    model = make(**VARIANTS[name])
    x = torch.randint(0, 61, (2, 20))
    t = 11
    y = x.clone()
    y[:, t] = (y[:, t] + 7) % 61
    with torch.no_grad():
        a, _ = model(x)
        b, _ = model(y)
    assert torch.equal(a[:, :t], b[:, :t])
    assert not torch.allclose(a[:, t:], b[:, t:])


@pytest.mark.parametrize("name", VARIANTS)
def test_kv_cache_matches_full_forward(name):
    model = make(**VARIANTS[name])
    x = torch.randint(0, 61, (3, 20))
    with torch.no_grad():
        full, _ = model(x)
        cache = model.new_cache()
        parts = [model(x[:, :9], cache=cache)[0], model(x[:, 9:13], cache=cache)[0]]
        parts += [model(x[:, t:t + 1], cache=cache)[0] for t in range(13, 20)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", VARIANTS)
def test_greedy_with_cache_equals_recomputing_everything(name):
    model = make(**VARIANTS[name])
    prompt = torch.randint(0, 61, (2, 5))
    cached = torch.stack(list(decode_steps(model, prompt, 15, temperature=0)), 1)
    seq = prompt
    with torch.no_grad():
        for _ in range(15):
            logits, _ = model(seq)
            seq = torch.cat([seq, logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(cached, seq[:, 5:])


def test_generation_runs_past_the_context_window():
    model = make()
    out = list(decode_steps(model, torch.randint(0, 61, (1, 20)), 40, temperature=1.0, seed=3))
    assert len(out) == 40


def test_gradients_reach_every_parameter_and_tied_head():
    for kw in VARIANTS.values():
        model = make(**kw).train()
        x = torch.randint(0, 61, (2, 16))
        _, loss = model(x, x)
        loss.backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    tied = make(tie_embeddings=True)
    assert tied.lm_head is None and tied.head_weight() is tied.embed.weight


def test_tiny_model_overfits_one_batch():
    model = make().train()
    x = torch.randint(0, 61, (4, 16))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):
        _, loss = model(x[:, :-1], x[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


def test_hook_names_are_stable_and_capture_only_what_is_asked():
    model = make()
    x = torch.randint(0, 61, (1, 8))
    with capture(model, ["blocks.1.attn.out", "blocks.*.resid_post", "blocks.1.ffn.in"]) as acts:
        model(x)
    assert sorted(acts) == ["blocks.0.resid_post", "blocks.1.attn.out", "blocks.1.ffn.in", "blocks.1.resid_post"]
    with torch.no_grad():
        rope = model.rope(8)
        by_hand = model.blocks[1](model.blocks[0](model.embed(x), rope=rope), rope=rope)
    assert torch.equal(acts["blocks.1.resid_post"], by_hand)
    from lmlab.errors import LmlabError

    with pytest.raises(LmlabError, match="no activation matches"):
        with capture(model, "blocks.9.nothing"):
            pass


def test_bad_shapes_are_value_errors():
    with pytest.raises(ValueError, match="divisible"):
        make(d_model=30)
    with pytest.raises(ValueError, match="multiple of model.n_kv_heads"):
        make(n_heads=4, n_kv_heads=3)
    with pytest.raises(ValueError, match="pattern"):
        make(pattern="AF AF AF")


def test_attention_output_stays_in_the_autocast_dtype():
    """Under bf16 autocast the attention output reaches o_proj in bf16: a cast back to the fp32
    residual stream here would cost two extra casts per layer (one back, one by autocast)."""
    model = make().train()
    seen = []
    model.blocks[0].sublayers["attn"].mixer.o_proj.register_forward_pre_hook(lambda m, a: seen.append(a[0].dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randint(0, 61, (2, 8)))
    assert seen == [torch.bfloat16]
