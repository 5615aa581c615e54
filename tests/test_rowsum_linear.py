"""RowSumLinear (model/rowsum_linear.py): the batch-1 product written as a multiply-and-sum gives the
wrapped layer's result up to the order of the float sums; more rows go to the layer itself, exactly;
the bytes a decoding step reads are counted once; the compiled decoder uses it at batch 1."""
import copy

import pytest
import torch
from torch import nn

from lmlab import bench
from lmlab.config import ModelConfig
from lmlab.model import Transformer
from lmlab.model.int8 import Int8Linear
from lmlab.model.rowsum_linear import RowSumLinear, wrap_linears


def layers(dtype):
    torch.manual_seed(0)
    lin = nn.Linear(64, 40)
    if dtype == "int8":
        return Int8Linear.from_linear(lin, torch.bfloat16)
    return lin.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, "int8"])
@torch.no_grad()
def test_one_row_is_the_layer_up_to_summation_order_and_more_rows_are_the_layer_exactly(dtype):
    inner = layers(dtype)
    wrapped = RowSumLinear(inner)
    act = torch.float32 if dtype == torch.float32 else torch.bfloat16
    one = torch.randn(1, 1, 64).to(act)
    # the reference in fp32 from the same weights: the row-sum accumulates in fp32 too
    want = (one.float().reshape(1, 64) @ inner.weight.float().T + inner.bias.float()).view(1, 1, 40)
    got = wrapped(one)
    assert got.shape == (1, 1, 40) and got.dtype == act
    tol = 1e-5 if dtype == torch.float32 else 1e-2  # bf16: the output's rounding
    torch.testing.assert_close(got.float(), want, rtol=tol, atol=tol)
    many = torch.randn(3, 2, 64).to(act)
    assert torch.equal(wrapped(many), inner(many))


def test_wrapping_shares_the_weights_and_counts_their_bytes_once():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=4, context=16)  # tied head
    model = Transformer(cfg).eval()
    before = bench.decode_bytes_per_token(model, 10)
    wrapped = copy.deepcopy(model)
    n = wrap_linears(wrapped)
    assert n == 2 * 6 + 1  # q, k, v, out, up, down in each layer, and the head given its own layer
    assert bench.decode_bytes_per_token(wrapped, 10) == before
    assert wrapped.lm_head.inner.weight is wrapped.embed.weight  # the tied head: no copy
    x = torch.randint(0, 50, (1, 9))
    with torch.no_grad():
        assert torch.equal(wrapped(x)[0], model(x)[0])  # 9 rows: the layers' own kernels


def test_widened_bf16_layers_are_wrapped_and_keep_their_rows_in_fp32():
    from lmlab.model.widened import WidenedLinear, widen_linears

    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=4, context=16)).to(torch.bfloat16)
    widen_linears(model)
    assert wrap_linears(model) == 2 * 6 + 1
    assert all(isinstance(m.inner, WidenedLinear) for m in model.modules() if isinstance(m, RowSumLinear))
    many = torch.randn(3, 32).to(torch.bfloat16)
    head = model.lm_head
    assert torch.equal(head(many), head.inner(many))


def test_the_compiled_decoder_takes_the_row_sum_where_it_was_measured_to_pay(monkeypatch):
    """fp32 and bf16 always (they won at every size); int8 only past a quarter of the last-level cache
    (from a small cache footprint `_weight_int8pack_mm` was faster) and only with AVX-512."""
    from lmlab.infer import prepare

    cfg = ModelConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=4, context=16)
    cpu = torch.device("cpu")
    fp32 = prepare.for_inference(Transformer(cfg).eval(), "float32", cpu)
    bf16 = prepare.for_inference(Transformer(cfg).eval(), "bf16", cpu, pack=False)
    int8 = prepare.for_inference(Transformer(cfg).eval(), "int8", cpu)
    assert prepare.rowsum_pays(fp32) and prepare.rowsum_pays(bf16)  # a few KB, in cache: still taken
    assert not prepare.rowsum_pays(int8)  # a few KB of int8 codes: the int8 kernel
    codes = bench.decode_bytes_per_token(int8, 0)["weights"]
    assert codes > 2 * 12 * 32 * 32 + 50 * 32  # at least q/k/v/out and up/down per layer, and the head, a byte each
    monkeypatch.setattr(prepare, "last_level_cache_bytes", lambda: 4 * codes - 4)
    monkeypatch.setattr(bench, "cpu_info", lambda: {"isa": ["avx2", "fma"]})
    assert not prepare.rowsum_pays(int8)  # AVX2 only: inductor's int8 loop is scalar there
    assert prepare.rowsum_pays(fp32) and prepare.rowsum_pays(bf16)
    monkeypatch.setattr(bench, "cpu_info", lambda: {"isa": ["avx2", "fma", "avx512f", "avx512bw"]})
    assert prepare.rowsum_pays(int8)
    monkeypatch.setattr(prepare, "last_level_cache_bytes", lambda: 4 * codes)
    assert not prepare.rowsum_pays(int8)
    monkeypatch.setattr(prepare, "last_level_cache_bytes", lambda: 1024)
    compiled = prepare.compiled_for_decoding(int8, cpu)  # lazily: nothing compiles until a call
    assert isinstance(compiled._orig_mod.lm_head, RowSumLinear)


@torch.no_grad()
def test_a_row_summed_in_parts_is_the_same_product():
    inner = layers(torch.float32)
    whole, parts = RowSumLinear(inner), RowSumLinear(inner)
    parts.chunks = 4
    x = torch.randn(1, 64)
    torch.testing.assert_close(parts(x), whole(x), rtol=1e-5, atol=1e-5)
    parts.chunks = 5  # 64 does not split in 5: the whole row
    assert torch.equal(parts(x), whole(x))


@torch.no_grad()
def test_the_compiled_loop_over_w_reads_w_and_one_stored_row():
    """Inductor inlines pointwise producers into a reduction: without the realized row, the residual
    add and the norm before a layer were recomputed inside the loop, once per row of W (the 100M
    decoder ran 1.2-1.4x slower; docs/performance.md). The loop must load W and the row, nothing else."""
    from torch._inductor.utils import run_and_get_code

    inner = layers(torch.bfloat16)
    wrapped = RowSumLinear(inner)
    gain = torch.rand(64).bfloat16() + 0.5

    def step(x, r):  # a residual add and an RMSNorm before the layer, as in a block
        h = (x + r).float()
        return wrapped((h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-5)).bfloat16() * gain)

    x, r = torch.randn(1, 64).bfloat16(), torch.randn(1, 64).bfloat16()
    got, (code,) = run_and_get_code(torch.compile(step, dynamic=False), x, r)
    torch.testing.assert_close(got.float(), step(x, r).float(), rtol=1e-2, atol=1e-2)
    start = code.index("x0<static_cast<int64_t>(40L)")  # the loop over W's 40 rows
    body = code[start:code.index("vec_reduce_all", start)]
    assert body.count("loadu(") == 2, body
