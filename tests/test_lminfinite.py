import pytest
import torch

from lmlab.config import ModelConfig
from lmlab.errors import LmlabError
from lmlab.infer import lminfinite
from lmlab.model import Transformer


def make_model(n_layers=2, n_kv_heads=0, positions="rope", context=16):
    torch.manual_seed(0)
    cfg = ModelConfig(n_layers=n_layers, d_model=32, n_heads=4, n_kv_heads=n_kv_heads, context=context,
                      vocab_size=40, positions=positions)
    return Transformer(cfg).eval()


@torch.no_grad()
@pytest.mark.parametrize("n_kv_heads", [0, 2])
def test_n_local_covering_the_sequence_gives_exactly_vanilla_logits(n_kv_heads):
    model = make_model(n_kv_heads=n_kv_heads)
    ids = torch.randint(0, 40, (2, 16))
    vanilla = model(ids)[0]
    with lminfinite.lm_infinite(model, n_global=2, n_local=16):
        lmi = model(ids)[0]
    assert torch.equal(vanilla, lmi)
    # The same through the cache, prompt chunk then one token at a time.
    cache_v = model.new_cache(16)
    out_v = [model(ids[:, :5], cache=cache_v)[0]] + [model(ids[:, t:t + 1], cache=cache_v)[0] for t in range(5, 16)]
    with lminfinite.lm_infinite(model, n_global=2, n_local=16):
        cache = lminfinite.new_cache(model)
        out = [model(ids[:, :5], cache=cache)[0]] + [model(ids[:, t:t + 1], cache=cache)[0] for t in range(5, 16)]
    assert torch.equal(torch.cat(out_v, 1), torch.cat(out, 1))
    # Disabling restores the vanilla forward.
    assert torch.equal(model(ids)[0], vanilla)


@torch.no_grad()
def test_middle_tokens_are_masked_beyond_the_receptive_field():
    model = make_model(n_layers=1)
    n_global, n_local, T = 3, 6, 40
    ids = torch.randint(0, 40, (1, T))
    changed = ids.clone()
    changed[0, 10] = (ids[0, 10] + 1) % 40   # a middle token: not global
    with lminfinite.lm_infinite(model, n_global=n_global, n_local=n_local):
        a, b = model(ids)[0], model(changed)[0]
    diff = (a - b).abs().amax(-1)[0]
    assert torch.all(diff[:10] == 0)                      # causal
    assert diff[10:10 + n_local].min() > 0                # seen while local
    assert torch.all(diff[10 + n_local:] == 0)            # then masked out
    # A global token stays visible at every later position (through the distance cap).
    changed = ids.clone()
    changed[0, 1] = (ids[0, 1] + 1) % 40
    with lminfinite.lm_infinite(model, n_global=n_global, n_local=n_local):
        b = model(changed)[0]
    assert (a - b).abs().amax(-1)[0, 1:].min() > 0


@torch.no_grad()
def test_distance_cap_makes_far_logits_shift_invariant():
    """With n_global=0, a query only sees the last n_local tokens at relative distances: the
    logits at position t depend on ids[t-n_local+1 .. t] alone, wherever t is."""
    model = make_model(n_layers=1)
    ids = torch.randint(0, 40, (1, 30))
    with lminfinite.lm_infinite(model, n_global=0, n_local=5):
        full = model(ids)[0]
        window = model(ids[:, 20 - 4:21])[0]
    torch.testing.assert_close(full[0, 20], window[0, -1], rtol=1e-5, atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("chunk", [1, 4, 7])
def test_cached_decoding_matches_full_forward_and_memory_is_bounded(chunk):
    model = make_model(n_kv_heads=2)
    ids = torch.randint(0, 40, (2, 50))   # > 3x the context
    with lminfinite.lm_infinite(model, n_global=4, n_local=8):
        full = model(ids)[0]
        cache = lminfinite.new_cache(model)
        chunked = lminfinite.chunked_logits(model, ids, chunk, cache)
    torch.testing.assert_close(full, chunked, rtol=1e-5, atol=1e-5)
    for layer in cache.layers:
        attn = layer[0]
        assert attn["buf_k"].shape[2] == 4 + 8 and attn["glob_k"].shape[2] == 4
        assert sorted(lminfinite.ring_positions(attn, 8).tolist()) == list(range(42, 50))


def test_bad_models_and_policies_are_clear_errors():
    with pytest.raises(LmlabError, match="RoPE"):
        lminfinite.enable(make_model(positions="learned"))
    with pytest.raises(LmlabError, match="n_local"):
        lminfinite.enable(make_model(), n_global=2, n_local=-1)


def test_long_eval_rows_and_identical_1x_rows():
    import numpy as np
    from lmlab.eval.long import evaluate_long
    model = make_model()
    ids = np.random.default_rng(0).integers(0, 40, size=400)
    r = evaluate_long(model, ids, np.ones(40), multipliers=(1, 2, 4), n_windows=2, n_global=2)
    rows = {(x["method"], x["multiplier"]): x for x in r["rows"]}
    assert len(rows) == 6 and len(r["profile"]["lminfinite"]) == 16
    assert rows["vanilla", 1]["bpb"] == rows["lminfinite", 1]["bpb"] == rows["vanilla", 1]["bpb_last_context"]
    assert rows["vanilla", 4]["bpb"] != rows["lminfinite", 4]["bpb"]
    with pytest.raises(LmlabError, match="window"):
        evaluate_long(model, ids[:40], np.ones(40))


def test_greedy_continue_and_passkey_prompts():
    from lmlab.eval import passkey
    from lmlab.eval.long import greedy_continue
    from lmlab.infer.generate import sample_ids
    from lmlab.tokenizers.char import CharTokenizer
    model = make_model()
    prompt = [1, 2, 3, 4]
    assert greedy_continue(model, prompt, 8) == list(sample_ids(model, prompt, 8, temperature=0))
    assert greedy_continue(model, prompt, 8, "lminfinite", n_global=2) == greedy_continue(model, prompt, 8)
    p = passkey.make_prompt("12345", 600, 0.0)
    assert p.startswith(passkey.INTRO + passkey.needle("12345")) and p.endswith(passkey.QUESTION)
    assert abs(len(p) - 600) < len(passkey.FILLER)
    late = passkey.make_prompt("12345", 600, 1.0)   # the key sentence right before the question
    assert late.endswith("\n" + passkey.needle("12345") + passkey.QUESTION) and len(late) == len(p)
    mid = passkey.make_prompt("12345", 600, 0.5)
    assert mid.index(passkey.needle("12345")) > len(passkey.INTRO) and len(mid) == len(p)
    tok = CharTokenizer.train(passkey.corpus(3, 300))
    torch.manual_seed(0)
    m = Transformer(ModelConfig(n_layers=1, d_model=32, n_heads=4, context=64, vocab_size=tok.vocab_size)).eval()
    rows = passkey.evaluate(m, tok, [128], n_per_length=2, depths=(0.5,), method="lminfinite")
    assert len(rows) == 1 and 0 <= rows[0]["digit_accuracy"] <= 1 and rows[0]["tokens"] > 64


def test_lminfinite_sampling_runs_past_the_context_with_a_long_prompt():
    model = make_model()
    prompt = torch.randint(0, 40, (40,)).tolist()   # 2.5x the context
    greedy = list(lminfinite.sample_ids(model, prompt, 10, temperature=0, n_global=2))
    with lminfinite.lm_infinite(model, n_global=2):
        logits = model(torch.tensor([prompt + greedy]))[0][0]
    assert greedy == logits[len(prompt) - 1:-1].argmax(-1).tolist()
    assert len(list(lminfinite.sample_ids(model, prompt, 5, temperature=1.0, seed=3))) == 5


def test_cli_long_eval_and_generation(tiny_run, capsys):
    import json
    from lmlab.cli import main
    assert main(["eval", str(tiny_run), "--long", "--multipliers", "1,2", "--n-windows", "1"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [(r["method"], r["multiplier"]) for r in rows] == [("vanilla", 1), ("vanilla", 2), ("lminfinite", 1),
                                                               ("lminfinite", 2)]
    assert main(["generate", str(tiny_run), "--prompt", "ROMEO:", "--lm-infinite", "--max-new-tokens", "100",
                 "--temperature", "0"]) == 0
    assert capsys.readouterr().out.startswith("ROMEO:")
    assert main(["generate", str(tiny_run), "--prompt", "A", "--lm-infinite", "--beam", "2"]) == 2
    assert "choose one of" in capsys.readouterr().err


@torch.no_grad()
@pytest.mark.parametrize("n_global,n_local,n_kv_heads", [(3, 8, 2), (10, 4, 0), (0, 6, 0)])
def test_fast_decode_step_matches_the_general_masked_path(n_global, n_local, n_kv_heads, monkeypatch):
    """decode_step (one fused attention over [globals rotated to p - n_local | ring]) against the
    general path (separate local/global scores and masks): same logits at every step, including
    the first n_global steps past n_local where some globals are still inside the ring."""
    model = make_model(n_kv_heads=n_kv_heads)
    ids = torch.randint(0, 40, (2, 45))

    def decode(fast):
        monkeypatch.setattr(lminfinite, "FAST_DECODE", fast)
        with lminfinite.lm_infinite(model, n_global=n_global, n_local=n_local):
            cache = lminfinite.new_cache(model)
            out = [model(ids[:, :3], cache=cache)[0]] + [model(ids[:, t:t + 1], cache=cache)[0] for t in range(3, 45)]
        return torch.cat(out, 1), cache

    (fast, cache_f), (slow, cache_s) = decode(True), decode(False)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    assert not torch.equal(fast[:, -1], fast[:, -2])
    # The fast path leaves the same ring behind: bit for bit in the first layer (same inputs, and its
    # one-position rotation is apply_rope's arithmetic), within rounding in later ones.
    first_f, first_s = cache_f.layers[0][0], cache_s.layers[0][0]
    assert torch.equal(first_f["ring_k"], first_s["ring_k"]) and torch.equal(first_f["ring_v"], first_s["ring_v"])
    for lf, ls in zip(cache_f.layers, cache_s.layers):
        torch.testing.assert_close(lf[0]["ring_k"], ls[0]["ring_k"], rtol=1e-5, atol=1e-5)
        assert lf[0]["ring_hi"] == ls[0]["ring_hi"] == 44


def test_one_position_rotation_is_bit_identical_to_apply_rope():
    from lmlab.model.positions import apply_rope, rope_tables
    cos, sin = rope_tables(16, 300, 10000.0)
    x = torch.randn(3, 4, 1, 16)
    for p in (0, 7, 299):
        c, s = cos[p], sin[p]
        got = lminfinite._rotate_one(x.view(3, 4, 1, 2, 8), c, torch.stack([-s, s])).view(3, 4, 1, 16)
        assert torch.equal(got, apply_rope(x, cos[p:p + 1], sin[p:p + 1]))


@torch.no_grad()
def test_model_rope_tables_grow_once_and_keep_their_rows():
    model = make_model()
    cos0, sin0 = model.rope_cos.clone(), model.rope_sin.clone()
    cos, sin = model.rope(3 * cos0.shape[0] + 1)
    assert cos.shape[0] >= 3 * cos0.shape[0] + 1 and model.rope(cos0.shape[0] + 5)[0] is cos
    assert torch.equal(cos[:cos0.shape[0]], cos0) and torch.equal(sin[:sin0.shape[0]], sin0)
    assert "rope_cos" not in model.state_dict()  # still a non-persistent buffer: checkpoints unchanged


def test_decode_speed_table_rows_cover_every_cell_and_leave_the_model_as_it_was():
    from lmlab.eval.long import decode_speed_table
    model = make_model()
    ids = torch.randint(0, 40, (1, 20))
    before = model(ids)[0]
    rows = decode_speed_table(model, multipliers=(1, 3), batches=(1, 2), n_new=2, repeats=2, n_global=2)
    assert [(r["batch"], r["multiplier"], r["prompt_len"]) for r in rows] == [(1, 1, 16), (1, 3, 48), (2, 1, 16),
                                                                             (2, 3, 48)]
    assert all(r["vanilla"] > 0 and r["lminfinite"] > 0 and r["speedup"] == r["lminfinite"] / r["vanilla"] for r in rows)
    from lmlab.model.attention import CausalSelfAttention
    assert "rope" not in model.__dict__
    assert not any("forward" in m.__dict__ for m in model.modules() if isinstance(m, CausalSelfAttention))
    assert torch.equal(model(ids)[0], before)


@torch.no_grad()
def test_fast_decode_step_under_bfloat16_autocast(monkeypatch):
    model = make_model()
    ids = torch.randint(0, 40, (1, 30))
    outs = []
    for fast in (True, False):
        monkeypatch.setattr(lminfinite, "FAST_DECODE", fast)
        with torch.autocast("cpu", dtype=torch.bfloat16), lminfinite.lm_infinite(model, n_global=2, n_local=8):
            cache = lminfinite.new_cache(model)
            out = [model(ids[:, :3], cache=cache)[0]] + [model(ids[:, t:t + 1], cache=cache)[0] for t in range(3, 30)]
        assert cache.layers[0][0]["ring_k"].dtype == torch.bfloat16
        outs.append(torch.cat(out, 1).float())
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=2e-2)
