"""Sampling filters, stop strings and the bits-per-byte arithmetic, checked against hand computation."""
import math

import numpy as np
import pytest
import torch

from lmlab.errors import LmlabError
from lmlab.eval.perplexity import evaluate_ids, token_losses
from lmlab.infer.generate import generate
from lmlab.infer.sampling import apply_repetition_penalty, choose, filter_top_k, filter_top_p
from lmlab.checkpoint import load_model


def test_top_k_keeps_exactly_the_k_largest():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]])
    kept = torch.isfinite(filter_top_k(logits, 2))
    assert kept.tolist() == [[False, True, False, True, False]]


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = torch.isfinite(filter_top_p(probs.log(), 0.75))
    assert kept.tolist() == [[True, True, False, False]]  # 0.5 < 0.75 <= 0.8
    assert torch.isfinite(filter_top_p(probs.log(), 0.1)).sum() == 1  # always at least one


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    logits = torch.tensor([[2.0, -2.0, 1.0]])
    out = apply_repetition_penalty(logits, torch.tensor([[0, 1]]), 2.0)
    assert out.tolist() == [[1.0, -4.0, 1.0]]


def test_sampling_is_seeded_and_greedy_is_argmax():
    logits = torch.randn(4, 50)
    a = choose(logits, 1.0, 0, 1.0, torch.Generator().manual_seed(3))
    b = choose(logits, 1.0, 0, 1.0, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert torch.equal(choose(logits, 0.0, 0, 1.0, None), logits.argmax(-1))


def test_stop_strings_cut_the_output_and_streaming_adds_up(tiny_run):
    model, tok, _ = load_model(tiny_run)
    full = generate(model, tok, "ROMEO:", max_new_tokens=60, temperature=0)
    assert len(full) > 10
    stop = full[5:8]
    pieces = []
    cut = generate(model, tok, "ROMEO:", max_new_tokens=60, temperature=0, stop=[stop], stream=pieces.append)
    assert cut == full[: full.find(stop)] and "".join(pieces) == cut
    with pytest.raises(LmlabError, match="empty"):
        generate(model, tok, "", max_new_tokens=5)


def test_bits_per_byte_is_total_nats_over_utf8_bytes(tiny_run):
    model, tok, _ = load_model(tiny_run)
    text = "Thou art é 🦄 more lovely"
    ids = np.array(tok.encode(text))
    result = evaluate_ids(model, ids, tok.token_nbytes())
    with torch.no_grad():
        logits, _ = model(torch.tensor(ids[None, :-1]))
    nats = torch.nn.functional.cross_entropy(logits[0], torch.tensor(ids[1:]), reduction="sum").item()
    predicted_bytes = len(text.encode("utf-8")) - len(text[0].encode("utf-8"))
    assert result["bytes"] == predicted_bytes and result["tokens"] == len(ids) - 1
    assert result["bpb"] == pytest.approx(nats / math.log(2) / predicted_bytes, rel=1e-6)
    assert result["ppl"] == pytest.approx(math.exp(nats / (len(ids) - 1)), rel=1e-6)


def test_windows_tile_a_long_text_and_each_token_is_scored_once(tiny_run):
    model, _, cfg = load_model(tiny_run)
    ids = np.random.default_rng(0).integers(0, cfg.model.vocab_size, 3 * cfg.model.context + 7)
    losses = token_losses(model, ids, batch_size=2)
    assert losses.shape == (len(ids) - 1,)
    ctx = cfg.model.context
    with torch.no_grad():  # the second window, scored by hand
        logits, _ = model(torch.tensor(ids[None, ctx:2 * ctx]))
    by_hand = torch.nn.functional.cross_entropy(logits[0], torch.tensor(ids[ctx + 1:2 * ctx + 1]), reduction="none")
    np.testing.assert_allclose(losses[ctx:2 * ctx], by_hand.double().numpy(), rtol=1e-5, atol=1e-6)


def test_sampling_precision(capsys, tiny_run):
    """generate --dtype float32 is the fp32 library result exactly; bf16 weights change logits only by
    bf16 rounding; a bad dtype is a one-line error."""
    from lmlab.cli import main
    from lmlab.infer.generate import generate
    from lmlab.checkpoint import load_model
    from lmlab.infer.prepare import for_inference

    model, tok, _ = load_model(tiny_run)
    want = generate(model, tok, "ROMEO:", max_new_tokens=40, temperature=0)
    assert main(["generate", str(tiny_run), "--prompt", "ROMEO:", "--max-new-tokens", "40", "--temperature", "0",
                 "--dtype", "float32"]) == 0
    assert capsys.readouterr().out == "ROMEO:" + want + "\n"
    ids = torch.tensor([tok.encode("ROMEO: Is it a custom that")])
    with torch.no_grad():
        ref = model(ids)[0].float().log_softmax(-1)
        half = for_inference(model, "bfloat16", torch.device("cpu"))
        assert all(p.dtype == torch.bfloat16 for p in half.parameters())
        got = half(ids)[0].float().log_softmax(-1)
    probs = ref.exp()
    assert (probs * (ref - got)).sum(-1).max() < 0.02  # KL(fp32 || bf16) per position, in nats
    assert main(["generate", str(tiny_run), "--prompt", "ROMEO:", "--max-new-tokens", "5", "--dtype", "bfloat16"]) == 0
    assert capsys.readouterr().out.startswith("ROMEO:")
    assert main(["generate", str(tiny_run), "--prompt", "x", "--dtype", "float64"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "float64" in err[0] and "bfloat16" in err[0]
