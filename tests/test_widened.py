"""bf16 layers whose products of several rows run in fp32 where bf16 matmuls are slow (model/widened.py),
and the same for int8's dequantised products."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lmlab.model import widened
from lmlab.model.int8 import Int8Linear
from lmlab.model.widened import WidenedLinear, widen_linears


@pytest.fixture
def linear_input_dtypes(monkeypatch):
    """The dtype of the input of every F.linear call (nn.Linear's too), in order."""
    seen, real = [], F.linear

    def spy(x, w, b=None):
        seen.append(x.dtype)
        return real(x, w, b)

    monkeypatch.setattr(F, "linear", spy)
    return seen


def bf16_of_exact(x, w, b):
    """The exact product (float64: bf16 x bf16 products and their sums here lose nothing) rounded to bf16."""
    return (x.double() @ w.double().t() + b.double()).to(torch.bfloat16)


def test_rows_run_in_fp32_one_row_in_bf16_and_both_are_the_product(linear_input_dtypes):
    torch.manual_seed(0)
    lin = nn.Linear(64, 24).to(torch.bfloat16)
    layer = WidenedLinear.over(lin.weight, lin.bias)
    assert layer.weight is lin.weight and layer.bias is lin.bias  # the same parameters, no copy
    rows = torch.randn(3, 5, 64).to(torch.bfloat16)
    got = layer(rows)
    assert linear_input_dtypes == [torch.float32] and got.dtype == torch.bfloat16 and got.shape == (3, 5, 24)
    # fp32 sums of 64 exact products: at most one bf16 step from the exactly rounded result
    want = bf16_of_exact(rows, lin.weight, lin.bias)
    step = want.float().abs() * 2.0 ** -7
    assert ((got.float() - want.float()).abs() <= step + 1e-6).all()
    one = rows[:1, :1]
    assert torch.equal(layer(one), lin(one)) and linear_input_dtypes[-2:] == [torch.bfloat16, torch.bfloat16]
    fp32 = WidenedLinear.over(nn.Parameter(lin.weight.float()))  # not bf16: the plain layer
    assert torch.equal(fp32(rows.float()), F.linear(rows.float(), lin.weight.float()))


def test_widening_covers_every_plain_linear_and_the_tied_head():
    from lmlab import config
    from lmlab.model.transformer import Transformer

    model = Transformer(config.load("tiny", ["model.vocab_size=16", "model.tie_embeddings=true"]).model).to(torch.bfloat16)
    assert model.tied
    n_plain = sum(type(m) is nn.Linear for m in model.modules())
    assert widen_linears(model) == n_plain
    assert not any(type(m) is nn.Linear for m in model.modules())
    assert isinstance(model.lm_head, WidenedLinear) and model.lm_head.weight is model.embed.weight


@pytest.mark.parametrize("slow", [True, False])
def test_for_inference_widens_bf16_only_where_bf16_matmuls_are_slow(monkeypatch, tiny_run, slow):
    from lmlab.checkpoint import load_model
    from lmlab.infer import prepare

    monkeypatch.setattr(prepare, "bf16_matmul_is_slow", lambda device: slow)
    model, tok, _ = load_model(tiny_run)
    ids = torch.tensor([tok.encode("ROMEO: Is it a custom")])
    with torch.no_grad():
        want = model.to(torch.bfloat16)(ids)[0].float()
        m = prepare.for_inference(load_model(tiny_run)[0], "bfloat16", torch.device("cpu"), pack=False)
        assert any(isinstance(x, WidenedLinear) for x in m.modules()) == slow
        got = m(ids)[0].float()
        fp32 = prepare.for_inference(load_model(tiny_run)[0], "float32", torch.device("cpu"))
        assert not any(isinstance(x, WidenedLinear) for x in fp32.modules())  # fp32 is never widened
    torch.testing.assert_close(got, want, rtol=0.05, atol=0.05)  # bf16 rounding of each layer's output
    if not slow:
        assert torch.equal(got, want)


def test_int8_rows_run_in_fp32_where_bf16_matmuls_are_slow(linear_input_dtypes):
    torch.manual_seed(0)
    q = Int8Linear(torch.randn(24, 64), None, torch.bfloat16)
    x = torch.randn(40, 64).to(torch.bfloat16)  # past the int8 kernel's rows
    q.widen_rows = True
    got = q(x)
    assert linear_input_dtypes == [torch.float32]
    want = (x.double() @ q.codes.double().t() * q.scales.double()).to(torch.bfloat16)
    assert ((got.float() - want.float()).abs() <= want.float().abs() * 2.0 ** -7 + 1e-6).all()
    q.widen_rows = False
    q(x)
    assert linear_input_dtypes[-1] == torch.bfloat16
    assert q.widen_rows is False and Int8Linear(torch.randn(4, 16), None, torch.bfloat16).widen_rows == \
        widened.bf16_matmul_is_slow(torch.device("cpu"))
