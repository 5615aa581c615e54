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
    layer.use_kernel = False  # one row: bf16 F.linear (the kernel's own test is below)
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
        if slow:  # it built (or found) the kernel, and every layer's one row takes it
            from lmlab import kernels

            assert kernels.loaded() == (kernels.error() is None)
            assert all(x.use_kernel == kernels.loaded() for x in m.modules() if isinstance(x, WidenedLinear))
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


@pytest.fixture
def bf16_kernel():
    from lmlab import kernels

    if not kernels.load():
        pytest.skip(f"lmlab's kernels could not be built here: {kernels.error()}")
    return torch.ops.lmlab.bf16_rows


@pytest.mark.parametrize("x_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows,n,k,bias", [(1, 3072, 768, True), (1, 37, 40, False), (3, 5, 7, True), (2, 70, 781, False)])
@torch.no_grad()
def test_bf16_kernel_is_the_fp32_sum_of_the_exact_products(bf16_kernel, x_dtype, rows, n, k, bias):
    torch.manual_seed(0)
    x, w = torch.randn(rows, k).to(x_dtype), torch.randn(n, k).to(torch.bfloat16)
    b = torch.randn(n).to(torch.bfloat16) if bias else None
    got = bf16_kernel(x, w, b)
    assert got.dtype == x_dtype and got.shape == (rows, n)
    exact = x.double() @ w.double().t() + (0 if b is None else b.double())
    # fp32 summation of k terms: at most k ulps of the sum of magnitudes; bf16 output: half a bf16 step more
    bound = k * 2.0 ** -24 * (x.double().abs() @ w.double().abs().t() + (0 if b is None else b.double().abs()))
    if x_dtype == torch.bfloat16:
        bound = bound + exact.abs() * 2.0 ** -8
    assert ((got.double() - exact).abs() <= bound + 1e-30).all()
    # every row and column is its own sum: a wrong stride or tail would break the exactness above,
    # and a row alone gives the same numbers as with the others
    assert torch.equal(bf16_kernel(x[-1:], w, b), got[-1:])


@torch.no_grad()
def test_one_row_goes_to_the_bf16_kernel_when_it_is_built(bf16_kernel, linear_input_dtypes):
    from lmlab.model.rowsum_linear import RowSumLinear

    torch.manual_seed(0)
    lin = nn.Linear(48, 20).to(torch.bfloat16)
    layer = WidenedLinear.over(lin.weight, lin.bias)
    assert layer.use_kernel  # built in this process: new layers take it
    one = torch.randn(1, 1, 48).to(torch.bfloat16)
    got = layer(one)
    assert linear_input_dtypes == [] and got.shape == (1, 1, 20)
    assert torch.equal(got.view(1, 20), bf16_kernel(one.view(1, 48), lin.weight, lin.bias))
    wrapped = RowSumLinear(layer)  # the compiled decoder's layer takes the kernel too, rows or not
    assert torch.equal(wrapped(one), got)
    rows = torch.randn(4, 48).to(torch.bfloat16)
    assert torch.equal(wrapped(rows), layer(rows)) and linear_input_dtypes == [torch.float32, torch.float32]
    layer.use_kernel = False  # no kernel: the row-sum layer's own sum
    row_sum = ((lin.weight.float() * one.view(1, 48).float()).sum(-1) + lin.bias.float()).to(torch.bfloat16)
    assert torch.equal(wrapped(one), row_sum.view(1, 1, 20))
    layer.use_kernel = True
    with torch.enable_grad():  # gradients wanted: PyTorch's differentiable product, not the kernel
        assert wrapped(one).requires_grad and linear_input_dtypes[-1] == torch.bfloat16


@torch.no_grad()
def test_the_compiled_layer_calls_the_bf16_kernel(bf16_kernel):
    from lmlab.model.rowsum_linear import RowSumLinear

    torch.manual_seed(0)
    lin = nn.Linear(32, 16, bias=False).to(torch.bfloat16)
    layer = RowSumLinear(WidenedLinear.over(lin.weight))
    one = torch.randn(1, 1, 32).to(torch.bfloat16)
    compiled = torch.compile(layer, fullgraph=True)  # the op's registered shape lets dynamo trace it
    assert torch.equal(compiled(one), bf16_kernel(one.view(1, 32), lin.weight, None).view(1, 1, 16))
