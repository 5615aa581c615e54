"""int8 weights and activations (generate.dtype = w8a8): the W8A8Linear layer, lmlab's CPU kernel
lmlab::w8a8_rows (lmlab/kernels/w8a8.cpp) against its integer definition, and the model paths."""
import copy
import json

import pytest
import torch
from torch import nn

from lmlab import kernels
from lmlab.model.int8 import Int8Linear, W8A8Linear, quantize_activations


@pytest.fixture(scope="module")
def kernel():
    if not kernels.load():
        pytest.skip(f"the w8a8 kernel could not be built here: {kernels.error()}")


def _reference(x, codes, scales):
    """The kernel's definition in integers: per-row int8 activations, exact int64 sums."""
    q, s = quantize_activations(x)
    acc = q.long() @ codes.long().t()
    return (acc.float() * (s * scales.float())).to(x.dtype)


@pytest.mark.parametrize("rows,k,n,dtype", [(1, 768, 96, torch.bfloat16), (1, 256, 70, torch.float32),
                                            (3, 128, 64, torch.bfloat16), (1, 100, 5, torch.bfloat16),
                                            (2, 7, 3, torch.float32)])  # K % 64 != 0: the scalar tail
def test_kernel_equals_its_integer_definition(kernel, rows, k, n, dtype):
    torch.manual_seed(0)
    w = torch.randn(n, k)
    layer = W8A8Linear(w, None, dtype)
    x = (torch.randn(rows, k) * torch.linspace(0.1, 8, k)).to(dtype)  # uneven magnitudes across features
    got = torch.ops.lmlab.w8a8_rows(x, layer.codes, layer.scales, layer.code_sums)
    assert got.dtype == dtype and got.shape == (rows, n)
    assert torch.equal(got, _reference(x, layer.codes, layer.scales))


def test_kernel_rounds_ties_to_even_and_survives_a_zero_row(kernel):
    # max |x| = 127 makes the scale exactly 1, so x / scale are the halves themselves (in the
    # 16-wide vector loop and in the scalar tail); torch.round and the kernel both round ties to even
    halves = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -126.5])
    x = torch.cat([torch.tensor([127.0]), halves, halves, torch.zeros(3)]).repeat(1, 2)[:, :33]
    codes = torch.eye(33, dtype=torch.int8)  # y = q * 1 * scale: the quantised activations themselves
    scales = torch.ones(33)
    y = torch.ops.lmlab.w8a8_rows(x, codes, scales, codes.sum(1, dtype=torch.int32))
    assert torch.equal(y, torch.round(x).clamp(-127, 127))
    assert y[0, 1:4].tolist() == [0.0, 2.0, 2.0]
    zero = torch.ops.lmlab.w8a8_rows(torch.zeros(1, 33), codes, scales, codes.sum(1, dtype=torch.int32))
    assert torch.equal(zero, torch.zeros(1, 33))


@pytest.mark.parametrize("rows", [1, 4])
def test_layer_kernel_and_torch_paths_agree_to_the_bit(kernel, rows):
    torch.manual_seed(1)
    lin = nn.Linear(192, 48)
    layer = W8A8Linear.from_linear(lin, torch.bfloat16)
    assert layer.use_kernel  # built before the layer was made
    x = torch.randn(2, rows, 192).bfloat16()
    with torch.no_grad():
        fast = layer(x)
        layer.use_kernel = False
        slow = layer(x)
    assert fast.shape == (2, rows, 48) and torch.equal(fast, slow)
    # the activations' rounding really happens: not the weight-only int8 layer's output...
    weight_only = Int8Linear.from_linear(lin, torch.bfloat16)(x)
    assert not torch.equal(fast, weight_only)
    # ...and stays close to it (per-token int8 steps are max|x| / 127)
    torch.testing.assert_close(fast.float(), weight_only.float(), rtol=0.05, atol=0.05)


def test_prompts_take_the_kernel_unless_it_is_the_vnni_build(kernel, monkeypatch):
    torch.manual_seed(2)
    layer = W8A8Linear.from_linear(nn.Linear(256, 40), torch.bfloat16)
    assert layer.kernel_all_rows == (kernels.isa() != "avx512_vnni")
    x = torch.randn(5, 256).bfloat16()
    with torch.no_grad():
        ref = _reference(x, layer.codes, layer.scales) + layer.bias
        layer.kernel_all_rows = True

        def refuse(*args):
            raise AssertionError("torch._int_mm called for rows the kernel takes")

        monkeypatch.setattr(torch, "_int_mm", refuse)
        assert torch.equal(layer(x), ref)  # five rows, through the kernel
        monkeypatch.undo()
        layer.kernel_all_rows = False
        assert torch.equal(layer(x), ref)  # through torch._int_mm: the same numbers


def test_w8a8_model_decodes_close_to_fp32(tiny_run, capsys):
    from lmlab.checkpoint import load_model
    from lmlab.cli import main
    from lmlab.infer.prepare import for_inference, rowsum_pays

    model, tok, _ = load_model(tiny_run)
    ids = torch.tensor([tok.encode("ROMEO: Is it a custom that you should")])
    with torch.no_grad():
        ref = model(ids)[0].float().log_softmax(-1)
        q = for_inference(load_model(tiny_run)[0], "w8a8", torch.device("cpu"))
        assert all(type(m) is W8A8Linear for m in q.modules() if isinstance(m, (nn.Linear, Int8Linear)))
        assert not rowsum_pays(q)  # the compiled decoder keeps the layers: the row-sum has no int8 activations
        got = q(ids)[0].float().log_softmax(-1)
        cache = q.new_cache()
        steps = torch.cat([q(ids[:, t:t + 1], cache=cache)[0] for t in range(ids.shape[1])], 1)
    assert (ref.exp() * (ref - got)).sum(-1).max() < 0.03  # KL(fp32 || w8a8) per position, in nats
    torch.testing.assert_close(steps.float().log_softmax(-1), got, rtol=0.05, atol=0.05)
    assert main(["generate", str(tiny_run), "--prompt", "ROMEO:", "--max-new-tokens", "8", "--dtype", "w8a8"]) == 0
    assert capsys.readouterr().out.startswith("ROMEO:")
    assert main(["bench", "generate", str(tiny_run), "--dtype", "w8a8", "--batch", "1", "--new", "4",
                 "--prompt", "8", "--reps", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["dtype"].startswith("int8 weights, int8 activations")


def test_compiled_w8a8_decoding_matches_eager(kernel):
    from lmlab.config import ModelConfig
    from lmlab.infer.prepare import for_inference
    from lmlab.model import Transformer

    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=50, d_model=64, n_layers=2, n_heads=4, context=32, dropout=0.0)
    base = Transformer(cfg).eval()
    x = torch.randint(0, 50, (1, 14))

    def stepwise(model):
        with torch.no_grad():
            cache = model.new_cache()
            parts = [model(x[:, :3], cache=cache)[0]] + [model(x[:, t:t + 1], cache=cache)[0] for t in range(3, 14)]
        return torch.cat(parts, 1).float()

    eager = stepwise(for_inference(copy.deepcopy(base), "w8a8", torch.device("cpu")))
    compiled = stepwise(for_inference(copy.deepcopy(base), "w8a8", torch.device("cpu"), compile=True))
    # the layers' products are the same integers; norms and attention are inductor's (bf16 rounding)
    torch.testing.assert_close(compiled, eager, rtol=0.03, atol=0.03)


def test_the_kernel_is_built_for_the_best_instruction_set_of_this_cpu(kernel):
    from lmlab.bench import cpu_info

    isa = set(cpu_info()["isa"])
    want = "avx512_vnni" if {"avx512f", "avx512bw", "avx512_vnni"} <= isa else "avx2" if "avx2" in isa else "scalar"
    assert kernels.isa() == want  # -march=native took effect: the vector loops are what the tests above ran


def test_a_failed_build_falls_back_to_torch_ops(monkeypatch, tiny_run):
    """No compiler: a one-line warning, then w8a8 on torch ops (the same numbers, tested above)."""
    from lmlab.checkpoint import load_model
    from lmlab.infer.prepare import for_inference

    def no_compiler():
        raise RuntimeError("no C++ compiler (c++, g++ or $CXX)")

    monkeypatch.setattr(kernels, "_state", {})
    monkeypatch.setattr(kernels, "_build", no_compiler)
    with pytest.warns(UserWarning, match="could not be built .*no C\\+\\+ compiler"):
        q = for_inference(load_model(tiny_run)[0], "w8a8", torch.device("cpu"))
    assert not kernels.loaded() and "no C++ compiler" in kernels.error()
    assert not any(m.use_kernel for m in q.modules() if isinstance(m, W8A8Linear))
    with torch.no_grad():
        assert torch.isfinite(q(torch.tensor([[1, 2, 3]]))[0]).all()
