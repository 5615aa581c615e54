"""int8 weight-only decoding (model/int8.py, generate.dtype = int8) and the fp32 KV cache on CPU."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lmlab.model.int8 import Int8Linear, quantize_linears, quantize_rows


def test_rounding_is_per_row_and_within_half_a_step():
    torch.manual_seed(0)
    w = torch.randn(40, 48) * torch.linspace(0.01, 10, 40)[:, None]  # rows of very different size
    w[3] = 0.0  # an all-zero row must not divide by zero
    codes, scales = quantize_rows(w)
    assert codes.dtype == torch.int8 and codes.abs().max() <= 127
    assert (codes.abs().amax(1)[torch.arange(40) != 3] == 127).all()  # each row's largest weight uses the full range
    err = (codes.float() * scales[:, None] - w).abs()
    assert (err <= scales[:, None] / 2 * (1 + 1e-6)).all()
    assert (codes[3] == 0).all()


@pytest.mark.parametrize("in_features,rows,dtype", [(64, 1, torch.bfloat16), (64, 16, torch.bfloat16), (64, 40, torch.bfloat16), (20, 1, torch.bfloat16), (64, 1, torch.float32)])  # kernel, kernel, then dequantised
def test_int8_linear_is_the_dequantised_linear(in_features, rows, dtype):
    torch.manual_seed(0)
    lin = nn.Linear(in_features, 24)
    q = Int8Linear.from_linear(lin, dtype)
    x = torch.randn(2, rows, in_features)
    want = F.linear(x, q.codes.float() * q.scales.float()[:, None], lin.bias.to(dtype).float())
    got = q(x.to(dtype))
    assert got.shape == (2, rows, 24) and got.dtype == dtype
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-5  # bf16 activations and output
    torch.testing.assert_close(got.float(), want, rtol=tol, atol=tol)
    assert torch.equal(q.weight, q.codes.to(dtype) * q.scales[:, None])


def test_quantize_replaces_plain_linears_only():
    net = nn.Sequential(nn.Linear(16, 16), nn.Sequential(nn.ReLU(), nn.Linear(16, 8)), nn.Embedding(4, 16))
    assert quantize_linears(net, torch.bfloat16) == 2
    assert isinstance(net[0], Int8Linear) and isinstance(net[1][1], Int8Linear) and isinstance(net[2], nn.Embedding)


def test_int8_model_stays_close_to_fp32(tiny_run, capsys):
    from lmlab.cli import main
    from lmlab.checkpoint import load_model
    from lmlab.infer.prepare import for_inference

    model, tok, _ = load_model(tiny_run)
    ids = torch.tensor([tok.encode("ROMEO: Is it a custom that you should")])
    with torch.no_grad():
        ref = model(ids)[0].float().log_softmax(-1)
        q = for_inference(load_model(tiny_run)[0], "int8", torch.device("cpu"))
        assert not any(type(m) is nn.Linear for m in q.modules())
        assert q.lm_head is not None and isinstance(q.lm_head, Int8Linear)  # tied head: its own int8 copy
        assert q.embed.weight.dtype == torch.bfloat16  # the input lookup stays float
        got = q(ids)[0].float().log_softmax(-1)
        # one token at a time through the KV cache (the int8 kernel) agrees with the full forward (dense path)
        cache = q.new_cache()
        steps = torch.cat([q(ids[:, t:t + 1], cache=cache)[0] for t in range(ids.shape[1])], 1)
        assert cache.layers[0][0]["k"].dtype == torch.float32  # CPU keeps the KV cache in fp32
    assert (ref.exp() * (ref - got)).sum(-1).max() < 0.02  # KL(fp32 || int8) per position, in nats
    torch.testing.assert_close(steps.float().log_softmax(-1), got, rtol=0.05, atol=0.05)
    assert main(["generate", str(tiny_run), "--prompt", "ROMEO:", "--max-new-tokens", "8", "--dtype", "int8"]) == 0
    assert capsys.readouterr().out.startswith("ROMEO:")
    assert main(["bench", "generate", str(tiny_run), "--dtype", "int8", "--batch", "1", "--new", "4",
                 "--prompt", "8", "--reps", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dtype"] == "int8 weights, bfloat16 activations" and out["batch1_tokens_per_s"] > 0
    assert out["params"] == model.num_params()


def test_bf16_cached_decoding_matches_the_full_forward():
    """The fp32 KV cache of a bf16 model: cached logits equal the full forward's up to bf16 rounding."""
    from lmlab.config import ModelConfig
    from lmlab.model.transformer import Transformer

    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=50, n_layers=2, d_model=32, n_heads=4, context=16)).eval().bfloat16()
    x = torch.randint(0, 50, (2, 12))
    with torch.no_grad():
        full = model(x)[0].float()
        cache = model.new_cache()
        parts = [model(x[:, :5], cache=cache)[0]] + [model(x[:, t:t + 1], cache=cache)[0] for t in range(5, 12)]
    assert all(p.dtype == torch.bfloat16 for p in parts)
    torch.testing.assert_close(torch.cat(parts, 1).float(), full, rtol=0.03, atol=0.03)


def test_eval_with_int8_weights(tiny_run, capsys):
    from lmlab.cli import main

    scores = {}
    for dtype in ("float32", "int8"):
        assert main(["eval", str(tiny_run), "--dtype", dtype, "--max-tokens", "2000"]) == 0
        scores[dtype] = json.loads(capsys.readouterr().out)
    assert scores["int8"]["dtype"] == "int8" and scores["int8"]["tokens"] == scores["float32"]["tokens"]
    assert scores["int8"]["bpb"] != scores["float32"]["bpb"]  # the weights really changed...
    assert abs(scores["int8"]["bpb"] - scores["float32"]["bpb"]) < 0.01 * scores["float32"]["bpb"]  # ...a little
    assert main(["eval", str(tiny_run), "--dtype", "int4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "int4" in err[0] and "int8" in err[0]


ARCHITECTURES = {
    "gpt2-like": dict(positions="learned", norm="layernorm", ffn="mlp", bias=True),
    "llama-like": dict(norm="rmsnorm", ffn="swiglu", tie_embeddings=False, n_kv_heads=2),
    "crmsnorm": dict(norm="crmsnorm"),
    "moe": dict(ffn="moe"),
    "lowrank": dict(ffn="lowrank"),
    "hybrid-ssm-lmu": dict(pattern="AF MF LF"),
    "binary-codes": dict(embedding="binary"),
}


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_int8_decoding_works_for_every_architecture(name):
    """Every architecture decodes under int8: close to its fp32 self, cached = full forward."""
    from lmlab.config import ModelConfig
    from lmlab.model.transformer import Transformer
    from lmlab.infer.prepare import for_inference

    torch.manual_seed(0)
    cfg = dict(vocab_size=37, n_layers=3, d_model=64, n_heads=4, context=24, init_std=0.2)
    model = Transformer(ModelConfig(**{**cfg, **ARCHITECTURES[name]})).eval()
    x = torch.randint(0, 37, (2, 16))
    with torch.no_grad():
        ref = model(x)[0].float().log_softmax(-1)
        q = for_inference(model, "int8", torch.device("cpu"))
        assert any(isinstance(m, Int8Linear) for m in q.modules())
        got = q(x)[0].float().log_softmax(-1)
        cache = q.new_cache()
        steps = torch.cat([q(x[:, :5], cache=cache)[0]] + [q(x[:, t:t + 1], cache=cache)[0] for t in range(5, 16)], 1)
    assert (ref.exp() * (ref - got)).sum(-1).max() < 0.05
    if name == "moe":
        # top-k routing is discrete: the cached path rounds differently and flips near-tied expert
        # choices (measured over 20 random models: 1.3% of routing decisions change in bf16 alone,
        # 2.2% with int8), and a flip spreads to later positions through attention; so for MoE in
        # reduced precision only a working cache is checked (fp32 caching is exact: test_moe.py)
        assert torch.isfinite(steps).all() and steps.shape == got.shape
    else:
        torch.testing.assert_close(steps.float().log_softmax(-1), got, rtol=0.05, atol=0.05)
