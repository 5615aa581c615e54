"""Inference-time fusion of the q/k/v projections (attention.fuse_qkv): the same numbers, fewer calls."""
import copy

import pytest
import torch

from lmlab.config import ModelConfig
from lmlab.model import Transformer
from lmlab.model.attention import CausalSelfAttention
from lmlab.infer.prepare import for_inference


def attentions(model):
    return [m for m in model.modules() if isinstance(m, CausalSelfAttention)]


@pytest.mark.parametrize("arch", [dict(positions="learned", bias=True),
                                  dict(norm="rmsnorm", ffn="swiglu", n_kv_heads=2, tie_embeddings=False)])
def test_fused_projections_give_the_same_logits_to_the_bit(arch):
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=40, d_model=64, n_layers=2, n_heads=4, context=32, **arch)).eval()
    fused = copy.deepcopy(model)
    for attn in attentions(fused):
        attn.fuse_qkv()
        assert attn.qkv_proj is not None and not hasattr(attn, "q_proj")
    x = torch.randint(0, 40, (2, 20))
    with torch.no_grad():
        assert torch.equal(model(x)[0], fused(x)[0])
        a, b = model.new_cache(), fused.new_cache()
        model(x[:, :5], cache=a), fused(x[:, :5], cache=b)
        for t in range(5, 20):
            assert torch.equal(model(x[:, t:t + 1], cache=a)[0], fused(x[:, t:t + 1], cache=b)[0])


@pytest.mark.parametrize("dtype", ["int8", "auto"])
def test_inference_fuses_where_it_repacks_or_compiles_and_keeps_fp32_as_it_is(dtype):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=40, d_model=64, n_layers=2, n_heads=4, context=32)
    ready = for_inference(Transformer(cfg).eval(), dtype, torch.device("cpu"))
    plain = for_inference(Transformer(cfg).eval(), "float32", torch.device("cpu"))
    fused_where = {"int8": True, "auto": next(ready.parameters()).dtype == torch.bfloat16}[dtype]
    assert all((a.qkv_proj is not None) == fused_where for a in attentions(ready))
    assert all(a.qkv_proj is None for a in attentions(plain))
    compiled = for_inference(Transformer(cfg).eval(), "bfloat16", torch.device("cpu"), compile=True)  # lazily
    assert all(a.qkv_proj is not None for a in attentions(compiled._orig_mod))


@torch.no_grad()
def test_lm_infinite_runs_on_fused_projections_with_the_same_logits():
    """Code that replaces attention's forward (LM-Infinite's general path and its one-token fast
    step) reads q/k/v through CausalSelfAttention.project, so a fused model decodes the same."""
    from lmlab.infer import lminfinite

    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=40, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2,
                                    context=16)).eval()
    fused = copy.deepcopy(model)
    for attn in attentions(fused):
        attn.fuse_qkv()
    ids = torch.randint(0, 40, (2, 40))

    def decode(m):
        with lminfinite.lm_infinite(m, n_global=3, n_local=8):
            cache = lminfinite.new_cache(m)
            return torch.cat([m(ids[:, :5], cache=cache)[0]]
                             + [m(ids[:, t:t + 1], cache=cache)[0] for t in range(5, 40)], 1)

    assert torch.equal(decode(model), decode(fused))
