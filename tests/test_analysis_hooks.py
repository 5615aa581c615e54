"""run_with_cache / run_with_hooks: names on every architecture, patching, ablation, no cost unasked."""
import copy
from fnmatch import fnmatchcase

import pytest
import torch
import torch.nn.functional as F

from lmlab.analysis import capture, hook_names, hooked, run_with_cache, run_with_hooks
from lmlab.config import ModelConfig
from lmlab.errors import LmlabError
from lmlab.model import Transformer
from lmlab.model.attention import CausalSelfAttention
from lmlab.model.block import layer_patterns
from lmlab.model.hooks import hook_points

VOCAB = 61
ARCHITECTURES = {
    "default": dict(),
    "gpt2-like": dict(positions="learned", norm="layernorm", ffn="mlp", bias=True),
    "llama-like": dict(positions="rope", norm="rmsnorm", ffn="swiglu", tie_embeddings=False),
    "gqa": dict(n_heads=4, n_kv_heads=2),
    "mqa": dict(n_heads=4, n_kv_heads=1, bias=True),
    "crmsnorm": dict(norm="crmsnorm", bias=True),
    "hybrid-ssm": dict(pattern="AMF MF"),
    "hybrid-lmu": dict(pattern="ALF LF"),
    "two-attn": dict(pattern="AAF"),
    "moe": dict(ffn="moe", moe_experts=4, moe_top_k=2),
    "lowrank": dict(ffn="lowrank"),
    "blockshuffle": dict(ffn="blockshuffle"),
    "meta-tokens": dict(meta_tokens=2),
    "frozen-embedding": dict(embedding="binary", tie_embeddings=True),
}


def make(seed=0, **kw):
    torch.manual_seed(seed)
    base = dict(vocab_size=VOCAB, n_layers=2, d_model=32, n_heads=4, context=24)
    return Transformer(ModelConfig(**{**base, **kw})).eval()


def prompt(model, seed=1, batch=2, length=12):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (batch, length), generator=g)
    if model.meta is not None:
        ids[:, 4] = VOCAB  # a meta-token, so the meta-attention runs
        ids[:, 8] = VOCAB + 1
    return ids


def plain(model, ids):
    with torch.no_grad():
        return model(ids)[0]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_name_resolves_and_fires_on_every_architecture(arch):
    model = make(**ARCHITECTURES[arch])
    ids = prompt(model)
    names = hook_names(model)
    logits, cache = run_with_cache(model, ids)
    assert sorted(cache) == sorted(names)
    assert torch.equal(cache["logits"], logits)
    for name in names:  # an exact name resolves to itself alone
        assert list(run_with_cache(model, ids, [name])[1]) == [name]
    for i, letters in enumerate(layer_patterns(model.cfg)):
        if "A" in letters:
            assert cache[f"blocks.{i}.attn.pattern"].shape == (2, 4, 12, 12)
            assert cache[f"blocks.{i}.attn.head_out"].shape[:3] == (2, 12, 4)
    assert not any(p.active for p in hook_points(model).values())  # all removed


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_observing_cheap_names_leaves_logits_bit_identical_and_keeps_sdpa(arch, monkeypatch):
    model = make(**ARCHITECTURES[arch])
    ids = prompt(model)
    reference = plain(model, ids)

    def forbidden(*a, **k):
        raise AssertionError("explicit attention used although no pattern was asked for")

    monkeypatch.setattr(CausalSelfAttention, "explicit_attention", forbidden)
    assert torch.equal(run_with_hooks(model, ids, {}), reference)
    cheap = ["embed", "blocks.*.resid_*", "blocks.*.attn.q", "blocks.*.attn.v", "blocks.*.attn.z",
             "blocks.*.attn.out", "blocks.*.attn.head_out", "blocks.*.ffn.out", "final", "logits"]
    cheap = [c for c in cheap if any(fnmatchcase(n, c) for n in hook_names(model))]
    logits, cache = run_with_cache(model, ids, cheap)
    assert torch.equal(logits, reference)
    monkeypatch.undo()
    # asking for the pattern takes the explicit path: same function within rounding
    logits, _ = run_with_cache(model, ids, ["blocks.*.attn*.pattern"])
    torch.testing.assert_close(logits, reference, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["default", "gpt2-like", "gqa", "mqa", "crmsnorm", "two-attn"])
def test_per_head_outputs_sum_to_the_attention_output(arch):
    model = make(**ARCHITECTURES[arch])
    _, cache = run_with_cache(model, prompt(model), ["blocks.*.attn*.head_out", "blocks.*.attn*.out", "blocks.*.attn*.z"])
    for i, block in enumerate(model.blocks):
        for key, sub in block.sublayers.items():
            if not key.startswith("attn"):
                continue
            o = sub.mixer.o_proj
            total = cache[f"blocks.{i}.{key}.head_out"].sum(2) + (0 if o.bias is None else o.bias)
            torch.testing.assert_close(total, cache[f"blocks.{i}.{key}.out"], atol=1e-6, rtol=1e-5)
            z = cache[f"blocks.{i}.{key}.z"]
            by_hand = torch.stack([z[:, :, h] @ o.weight[:, h * 8:(h + 1) * 8].T for h in range(4)], 2)
            torch.testing.assert_close(cache[f"blocks.{i}.{key}.head_out"], by_hand, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("arch", ["default", "gpt2-like", "gqa", "mqa", "hybrid-ssm"])
def test_pattern_rows_sum_to_one_are_causal_and_mix_the_values(arch):
    model = make(**ARCHITECTURES[arch])
    names = ["blocks.0.attn.pattern", "blocks.0.attn.scores", "blocks.0.attn.v", "blocks.0.attn.z"]
    _, cache = run_with_cache(model, prompt(model, length=10), names)
    pattern = cache["blocks.0.attn.pattern"]
    torch.testing.assert_close(pattern.sum(-1), torch.ones(2, 4, 10), atol=1e-6, rtol=0)
    future = torch.ones(10, 10, dtype=torch.bool).triu(1)
    assert torch.equal(pattern[..., future], torch.zeros_like(pattern[..., future]))
    assert torch.isinf(cache["blocks.0.attn.scores"][..., future]).all()
    assert (pattern[..., ~future] > 0).all()
    v = cache["blocks.0.attn.v"].transpose(1, 2)  # [B, kv heads, T, dh]
    v = v.repeat_interleave(4 // v.shape[1], dim=1)
    torch.testing.assert_close((pattern @ v).transpose(1, 2), cache["blocks.0.attn.z"], atol=1e-6, rtol=1e-5)


def test_patching_resid_post_equals_rerunning_from_that_layer():
    model = make(**ARCHITECTURES["gpt2-like"], n_layers=3)
    a, b = prompt(model, seed=1), prompt(model, seed=2)
    _, cache_b = run_with_cache(model, b, ["blocks.0.resid_post"])
    clean = cache_b["blocks.0.resid_post"]
    # the whole stream from b: the run on a becomes the run on b
    patched = run_with_hooks(model, a, {"blocks.0.resid_post": lambda act, name: clean})
    assert torch.equal(patched, plain(model, b))
    # positions 5.. only: equal to running blocks 1.. by hand on the spliced stream
    _, cache_a = run_with_cache(model, a, ["blocks.0.resid_post"])
    spliced = cache_a["blocks.0.resid_post"].clone()
    spliced[:, 5:] = clean[:, 5:]

    def splice(act, name):
        act[:, 5:] = clean[:, 5:]  # in place, returning nothing

    patched = run_with_hooks(model, a, {"blocks.0.resid_post": splice})
    with torch.no_grad():
        x = spliced
        for block in model.blocks[1:]:
            x = block(x)
        by_hand = F.linear(model.final_norm(x), model.head_weight())
    assert torch.equal(patched, by_hand)
    assert torch.equal(patched[:, :5], plain(model, a)[:, :5])
    assert not torch.allclose(patched[:, 5:], plain(model, a)[:, 5:])


@pytest.mark.parametrize("arch", ["default", "gpt2-like", "gqa", "crmsnorm"])
def test_zero_ablating_a_head_equals_removing_its_rows_from_w_o(arch):
    model = make(**ARCHITECTURES[arch])
    ids, head, dh = prompt(model), 2, 8

    def ablate(act, name):
        act = act.clone()
        act[:, :, head] = 0
        return act

    ablated = run_with_hooks(model, ids, {"blocks.1.attn.z": ablate})
    edited = copy.deepcopy(model)
    with torch.no_grad():
        edited.blocks[1].sublayers["attn"].mixer.o_proj.weight[:, head * dh:(head + 1) * dh] = 0
    assert torch.equal(ablated, plain(edited, ids))
    assert not torch.allclose(ablated, plain(model, ids))

    def ablate_in_place(act, name):
        act[:, :, head] = 0  # the per-head writes, edited in place

    via_heads = run_with_hooks(model, ids, {"blocks.1.attn.head_out": ablate_in_place})
    torch.testing.assert_close(via_heads, ablated, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["default", "gpt2-like", "gqa"])
def test_explicit_attention_through_the_kv_cache_matches_the_full_forward(arch):
    model = make(**ARCHITECTURES[arch])
    ids = prompt(model, length=14)
    full = plain(model, ids)
    patterns = []
    with hooked(model, {"blocks.*.attn.pattern": lambda act, name: patterns.append(act.shape)}), torch.no_grad():
        cache = model.new_cache()
        parts = [model(ids[:, :6], cache=cache)[0], model(ids[:, 6:10], cache=cache)[0]]
        parts += [model(ids[:, t:t + 1], cache=cache)[0] for t in range(10, 14)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)
    assert patterns[:4] == [(2, 4, 6, 6)] * 2 + [(2, 4, 4, 10)] * 2


def test_hooks_are_removed_when_a_hook_function_raises():
    model = make()
    ids = prompt(model)
    reference = plain(model, ids)

    def boom(act, name):
        raise RuntimeError("hook failed")

    with pytest.raises(RuntimeError, match="hook failed"):
        run_with_hooks(model, ids, {"blocks.*.attn.pattern": lambda a, n: None, "blocks.1.ffn.out": boom})
    assert not any(p.active for p in hook_points(model).values())
    assert torch.equal(plain(model, ids), reference)


def test_cache_keeps_only_what_was_asked_and_the_positions_asked():
    model = make(**ARCHITECTURES["gqa"])
    ids = prompt(model, length=10)
    _, full = run_with_cache(model, ids, ["blocks.*.resid_post", "blocks.0.attn.pattern"])
    assert list(full) == ["blocks.0.attn.pattern", "blocks.0.resid_post", "blocks.1.resid_post"]
    _, last = run_with_cache(model, ids, ["blocks.*.resid_post", "blocks.0.attn.pattern"], pos=-1)
    assert torch.equal(last["blocks.1.resid_post"], full["blocks.1.resid_post"][:, -1:])
    assert torch.equal(last["blocks.0.attn.pattern"], full["blocks.0.attn.pattern"][:, :, -1:])
    _, some = run_with_cache(model, ids, ["blocks.1.resid_post", "blocks.0.attn.pattern"], pos=[0, 3])
    assert torch.equal(some["blocks.1.resid_post"], full["blocks.1.resid_post"][:, [0, 3]])
    _, sliced = run_with_cache(model, ids, ["blocks.1.resid_post", "blocks.0.attn.pattern"], pos=slice(2, 5))
    assert torch.equal(sliced["blocks.0.attn.pattern"], full["blocks.0.attn.pattern"][:, :, 2:5])
    assert full.stack("blocks.*.resid_post").shape == (2, 2, 10, 32)
    with pytest.raises(KeyError, match="closest cached: blocks.1.resid_post"):
        full["blocks.1.resid_pots"]


def test_unknown_names_list_the_valid_ones_closest_first():
    model = make()
    with pytest.raises(LmlabError) as err:
        run_with_cache(model, [1, 2, 3], ["blocks.1.attn.patern"])
    message = str(err.value)
    assert message.startswith("no activation matches 'blocks.1.attn.patern'; valid names, closest first")
    listed = message.split(": ", 1)[1].split(", ")
    assert listed[0] == "blocks.{i}.attn.pattern" and "embed" in listed and "blocks.{i}.ffn.post" in listed
    with pytest.raises(LmlabError, match="no activation matches"):
        with capture(model, "blocks.9.nothing"):
            pass


def test_attention_names_on_a_layer_without_attention_name_its_letters():
    model = make(pattern="AMF MF")
    with pytest.raises(LmlabError) as err:
        run_with_cache(model, [1, 2, 3], ["blocks.1.attn.pattern"])
    assert str(err.value) == ("blocks.1.attn.pattern: block 1 has the pattern 'MF' (M = ssm, F = ffn), "
                              "no attn sublayer; blocks with attn: 0")
    assert "blocks.1.ssm.state" in hook_names(model)


def test_norm_scale_is_the_divisor_and_replacing_it_freezes_the_norm():
    model = make(**ARCHITECTURES["gpt2-like"])
    a, b = prompt(model, seed=1), prompt(model, seed=2)
    logits_a, cache = run_with_cache(model, a, ["blocks.0.resid_pre", "blocks.0.attn.norm.scale", "final_norm.scale"])
    x = cache["blocks.0.resid_pre"]
    by_hand = (x.var(-1, unbiased=False, keepdim=True) + model.cfg.norm_eps).sqrt()
    torch.testing.assert_close(cache["blocks.0.attn.norm.scale"], by_hand, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(logits_a, plain(model, a), atol=1e-5, rtol=1e-5)
    # b's run with a's final-norm divisor: the final norm is then a fixed linear map
    frozen = run_with_hooks(model, b, {"final_norm.scale": lambda act, name: cache["final_norm.scale"]})
    _, cb = run_with_cache(model, b, ["final_norm.scale"])
    assert not torch.allclose(frozen, plain(model, b))
    ratio = cb["final_norm.scale"] / cache["final_norm.scale"]
    torch.testing.assert_close(frozen - model.final_norm.bias @ model.embed.weight.T,
                               (plain(model, b) - model.final_norm.bias @ model.embed.weight.T) * ratio,
                               atol=1e-4, rtol=1e-4)


def test_moe_routing_weights_are_cached_and_patchable():
    model = make(**ARCHITECTURES["moe"])
    ids = prompt(model)
    logits, cache = run_with_cache(model, ids, ["blocks.0.ffn.router_probs", "blocks.0.ffn.expert_weights"])
    w, probs = cache["blocks.0.ffn.expert_weights"], cache["blocks.0.ffn.router_probs"]
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 12))
    assert ((w > 0).sum(-1) == 2).all() and torch.allclose(probs.sum(-1), torch.ones(2, 12))
    top = probs.topk(2, -1).indices
    assert torch.equal(torch.zeros_like(w).scatter(-1, top, 1.0).bool(), w > 0)
    assert torch.equal(logits, plain(model, ids))

    def only_first_choice(act, name):
        keep = torch.zeros_like(act).scatter(-1, act.argmax(-1, keepdim=True), 1.0)
        return keep

    routed = run_with_hooks(model, ids, {"blocks.*.ffn.expert_weights": only_first_choice})
    edited = copy.deepcopy(model)
    for block in edited.blocks:
        block.sublayers["ffn"].mixer.top_k = 1
    torch.testing.assert_close(routed, plain(edited, ids), atol=1e-6, rtol=1e-5)
