"""generate.compile: the torch.compile'd decoder gives the eager decoder's logits, through the KV cache."""
import copy

import pytest
import torch

from lmlab.errors import LmlabError
from lmlab.infer.prepare import compiled_for_decoding


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test compiles from scratch: dynamo's caches, recompile counts and counters are per process."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("rowsum", [None, True], ids=["default", "rowsum"])  # a tiny model: plain layers by default
def test_compiled_decoder_matches_eager_through_the_cache(tiny_run, capsys, rowsum):
    from lmlab.cli import main
    from lmlab.checkpoint import load_model

    model, tok, _ = load_model(tiny_run)
    eager = copy.deepcopy(model)
    compiled = compiled_for_decoding(model, torch.device("cpu"), rowsum=rowsum)
    x = torch.tensor([tok.encode("ROMEO: Is it a custom that you should")])

    def logits(m):
        cache = m.new_cache()
        parts = [m(x[:, :7], cache=cache)[0]] + [m(x[:, t:t + 1], cache=cache)[0] for t in range(7, x.shape[1])]
        return torch.cat(parts, 1)

    with torch.no_grad():
        want, got = logits(eager), logits(compiled)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)  # fp32: only the order of float sums differs
    # the 7-token prompt ran eager: only the one-token step was compiled, and a one-token prompt
    # (an empty cache, another branch) compiles nothing more
    with torch.no_grad():
        cache = compiled.new_cache()
        for t in range(4):
            compiled(x[:, t:t + 1], cache=cache)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    from torch._inductor import config as inductor_config

    assert inductor_config.freezing is False and inductor_config.cpp_wrapper is False  # only inside its calls
    assert main(["generate", str(tiny_run), "--prompt", "ROMEO:", "--max-new-tokens", "6", "--compile",
                 "--dtype", "int8"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("ROMEO:") and "compiling the decoder" in out.err


@pytest.mark.parametrize("arch", [
    dict(positions="learned"), dict(positions="rope"),
    dict(norm="rmsnorm", ffn="swiglu", tie_embeddings=False, n_kv_heads=2), dict(norm="crmsnorm"),
    dict(pattern="AF MF LF", n_layers=3),  # selective SSM and LMU mixers
])  # not MoE: its top-k routing makes data-dependent shapes, a graph break by nature (it still compiles)
def test_decoding_traces_as_one_graph_with_dynamic_shapes(arch):
    """A graph break (e.g. a symbolic bool handed to SDPA's is_causal) silently splits the compiled
    decoder into per-layer pieces with the weights as inputs, which blocks freezing and made
    compiled bf16 decoding slower than eager. fullgraph=True turns any break into an error."""
    from lmlab.config import ModelConfig
    from lmlab.model import Transformer

    cfg = dict(vocab_size=50, d_model=32, n_layers=2, n_heads=4, context=32, dropout=0.0)
    model = Transformer(ModelConfig(**{**cfg, **arch})).eval()
    traced = torch.compile(model, dynamic=True, fullgraph=True, backend="eager")
    x = torch.randint(0, 50, (2, 12))
    with torch.no_grad():
        cache = traced.new_cache()
        got = torch.cat([traced(x[:, :5], cache=cache)[0], traced(x[:, 5:9], cache=cache)[0]]
                        + [traced(x[:, t:t + 1], cache=cache)[0] for t in range(9, 12)], 1)
        torch.testing.assert_close(got, model(x)[0], rtol=1e-5, atol=1e-5)


def test_compile_without_a_cxx_compiler_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(LmlabError, match="C\\+\\+ compiler"):
        compiled_for_decoding(torch.nn.Linear(2, 2), torch.device("cpu"))


def _tiny(seed, **arch):
    from lmlab.config import ModelConfig
    from lmlab.model import Transformer

    torch.manual_seed(seed)
    cfg = dict(vocab_size=50, d_model=32, n_layers=2, n_heads=4, context=32, dropout=0.0)
    return Transformer(ModelConfig(**{**cfg, **arch})).eval()


def _stepwise_logits(model, x, prompt=3, max_len=None):
    with torch.no_grad():
        cache = model.new_cache(max_len)
        parts = [model(x[:, :prompt], cache=cache)[0]]
        parts += [model(x[:, t:t + 1], cache=cache)[0] for t in range(prompt, x.shape[1])]
    return torch.cat(parts, 1)


def test_two_compiled_models_of_one_class_each_run_their_own_graphs():
    """The compiled steps drop dynamo's guards on the model (prepare.compiled_step), so nothing
    in the guards tells two models of one class apart; each step's own code object does. With
    plain layers the batch-1 graph is frozen (the weights are its constants): run under the other
    model's calls, it would give that model's logits."""
    models = [_tiny(0), _tiny(1)]
    x = torch.randint(0, 50, (1, 7), generator=torch.Generator().manual_seed(0))
    want = [_stepwise_logits(m, x) for m in models]
    compiled = [compiled_for_decoding(copy.deepcopy(m), torch.device("cpu"), rowsum=False) for m in models]
    for i in (0, 1, 0, 1):
        torch.testing.assert_close(_stepwise_logits(compiled[i], x), want[i], rtol=1e-4, atol=1e-4)


def test_the_compiled_steps_still_check_positions_and_shapes():
    """The guards kept are those on the call's inputs and shapes: decoding past the trained
    context makes RoPE grow its tables (another branch of the model's code), so the step from
    position 8 on needs another graph, and the guard on the cache position must say so."""
    model = _tiny(0, positions="rope", context=8)
    x = torch.randint(0, 50, (1, 14), generator=torch.Generator().manual_seed(0))
    want = _stepwise_logits(copy.deepcopy(model), x, max_len=16)
    compiled = compiled_for_decoding(model, torch.device("cpu"))
    torch.testing.assert_close(_stepwise_logits(compiled, x, max_len=16), want, rtol=1e-4, atol=1e-4)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 2  # before and past position 8



def test_weights_moved_after_compiling_compile_again():
    """Without guards on the model dynamo would run the fp32 graphs on the converted weights (the
    kernels reading bf16 tensors as fp32; the KV cache stays fp32 for a bf16 model on a CPU, so
    no input's guard notices); the compiled decoder checks the weights' dtype and device itself
    and compiles new steps."""
    model = _tiny(0)
    eager = copy.deepcopy(model)
    compiled = compiled_for_decoding(model, torch.device("cpu"))
    x = torch.randint(0, 50, (1, 5), generator=torch.Generator().manual_seed(0))
    _stepwise_logits(compiled, x)
    model.to(torch.bfloat16), eager.to(torch.bfloat16)
    got = _stepwise_logits(compiled, x)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got, _stepwise_logits(eager, x), rtol=0.05, atol=0.05)  # bf16 rounding
