"""bf16 linear layers prepacked for oneDNN (model/packed.py): the same results to the bit, only faster."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lmlab.model.packed import PackedLinear, can_pack, pack_linears

pytestmark = pytest.mark.skipif(not can_pack(torch.device("cpu"), torch.bfloat16),
                                reason="oneDNN here has no native bf16 (this CPU lacks the bf16 instructions), so nothing is packed")


@pytest.mark.parametrize("shape", [(1, 64), (16, 64), (2, 5, 64), (300, 64)])
def test_packed_linear_equals_the_plain_linear_exactly(shape):
    torch.manual_seed(0)
    lin = nn.Linear(64, 40).bfloat16()
    packed = PackedLinear(lin.weight, lin.bias)
    x = torch.randn(*shape, dtype=torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(packed(x), lin(x))
    assert torch.equal(packed.weight, lin.weight)


def test_only_bf16_plain_linears_are_packed():
    net = nn.Sequential(nn.Linear(8, 8).bfloat16(), nn.Linear(8, 8), nn.Sequential(nn.Linear(8, 8).bfloat16()))
    assert pack_linears(net) == 2
    assert isinstance(net[0], PackedLinear) and type(net[1]) is nn.Linear and isinstance(net[2][0], PackedLinear)


def test_packed_model_samples_exactly_what_the_plain_bf16_model_samples(tiny_run):
    from lmlab.infer.generate import decode_steps
    from lmlab.checkpoint import load_model
    from lmlab.infer.prepare import for_inference

    plain = for_inference(load_model(tiny_run)[0], "bfloat16", torch.device("cpu"), pack=False)
    packed = for_inference(load_model(tiny_run)[0], "bfloat16", torch.device("cpu"))
    assert not any(isinstance(m, PackedLinear) for m in plain.modules())
    assert isinstance(packed.lm_head, PackedLinear) and not packed.tied  # the tied head is packed too
    assert not any(type(m) is nn.Linear for m in packed.modules())
    x = torch.randint(0, plain.cfg.vocab_size, (2, 30))
    with torch.no_grad():
        assert torch.equal(plain(x)[0], packed(x)[0])
    prompt = x[:1, :5]
    a = torch.stack(list(decode_steps(plain, prompt, 40, temperature=0.8, seed=1)))
    b = torch.stack(list(decode_steps(packed, prompt, 40, temperature=0.8, seed=1)))
    assert torch.equal(a, b)
    assert torch.equal(F.linear(torch.ones(1, plain.cfg.d_model, dtype=torch.bfloat16), plain.head_weight()),
                       F.linear(torch.ones(1, plain.cfg.d_model, dtype=torch.bfloat16), packed.head_weight()))


def test_compiling_keeps_plain_layers_and_freezing_packs_them(tiny_run):
    """dynamo cannot trace the packed weights, so a model readied for compiling is not packed; the
    compiled decoder freezes the weights of its batch graphs into constants, which inductor packs
    itself (copies: a change to the model afterwards no longer reaches them). Its batch-1 graph
    (RowSumLinear, model/rowsum_linear.py) compiles without freezing, so it reads the weights live."""
    from lmlab.checkpoint import load_model
    from lmlab.infer.prepare import for_inference
    from lmlab.model.rowsum_linear import RowSumLinear

    torch._dynamo.reset()  # compile from scratch, whatever compiled before in this process
    compiled = for_inference(load_model(tiny_run)[0], "bfloat16", torch.device("cpu"), compile=True)
    inner = compiled._orig_mod
    assert any(type(m) is nn.Linear for m in inner.modules())
    assert all(type(m.inner) is nn.Linear for m in inner.modules() if isinstance(m, RowSumLinear))
    assert not any(isinstance(m, PackedLinear) for m in inner.modules())
    x = torch.randint(0, inner.cfg.vocab_size, (2, 9))

    unchanged = copy.deepcopy(inner)

    def decode(m, rows):  # a 2-token prompt (eager) from the unchanged model, then the compiled one-token steps
        cache = m.new_cache()
        unchanged(x[:rows, :2], cache=cache)
        return torch.cat([m(x[:rows, t:t + 1], cache=cache)[0] for t in range(2, x.shape[1])], 1)

    with torch.no_grad():
        before = {rows: decode(compiled, rows) for rows in (1, 2)}
        for rows in (1, 2):
            torch.testing.assert_close(before[rows], decode(inner, rows), rtol=0.05, atol=0.05)  # bf16: rounding differs
        for layer in inner.modules():  # not the head's: it is the embedding, which a lookup reads in place
            if type(layer) is nn.Linear and layer.weight is not inner.embed.weight:
                layer.weight.zero_()
        assert torch.equal(decode(compiled, 2), before[2])
        assert not torch.allclose(decode(inner, 2), before[2], rtol=0.05, atol=0.05)
        live = decode(compiled, 1)
        torch.testing.assert_close(live, decode(inner, 1), rtol=0.05, atol=0.05)
        assert not torch.allclose(live, before[1], rtol=0.05, atol=0.05)
