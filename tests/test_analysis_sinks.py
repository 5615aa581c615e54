"""Attention sinks and massive activations: statistics by hand, a planted massive dimension, the
redistribution experiment and its control checked against independent ways to compute them."""
import numpy as np
import pytest
import torch

from lmlab.analysis import hooked, run_with_cache
from lmlab.analysis.sinks import (_pattern_edit, attention_stats, massive_activations, redistribution,
                                  sink_reading)
from lmlab.eval.perplexity import evaluate_ids

from test_analysis_hooks import ARCHITECTURES, make


def text_ids(n, seed=4):
    return torch.randint(0, 61, (n,), generator=torch.Generator().manual_seed(seed)).numpy()


def test_attention_stats_equal_the_hand_computation():
    model = make(**ARCHITECTURES["gqa"])
    ids = text_ids(20)  # one window of 19 inputs
    stats = attention_stats(model, ids, top=2)
    _, cache = run_with_cache(model, [ids[:19]], ["blocks.*.attn.pattern"])
    assert stats["windows"] == 1 and [h["head"] for h in stats["heads"]] == [f"L{i}H{h}" for i in range(2) for h in range(4)]
    for h in stats["heads"]:
        pat = cache[f"blocks.{h['layer']}.attn.pattern"][0, h["index"]]
        assert h["sink_share"] == pytest.approx(float(pat[1:, 0].mean()), rel=1e-5)
        assert h["top_share"] == pytest.approx(float(pat[1:].topk(2, -1).values.sum(-1).mean()), rel=1e-5)
        received = pat.sum(0) / torch.arange(19, 0, -1)
        received[0] = -1
        assert h["top_positions"] == received.topk(2).indices.tolist()


def test_a_planted_massive_dimension_is_found_with_its_carriers_and_read_by_keys():
    model = make(**ARCHITECTURES["default"])
    with torch.no_grad():
        model.embed.weight[7, 5] = 30.0
    ids = text_ids(20)
    ids[[0, 6]] = 7
    carriers = sorted(int(i) for i in np.nonzero(ids[:19] == 7)[0])
    found = massive_activations(model, ids, token_text=lambda i: f"t{i}")
    state0 = found["states"][0]
    assert state0["name"] == "blocks.0.resid_pre" and [d["dim"] for d in state0["dims"]] == [5]
    assert [c["position"] for c in state0["dims"][0]["carriers"]] == carriers
    assert {c["token"] for c in state0["dims"][0]["carriers"]} == {"t7"}
    assert state0["dims"][0]["max_abs"] == pytest.approx(30.0, rel=1e-3)
    reading = sink_reading(model, ids, found)
    _, cache = run_with_cache(model, [ids[:19]], ["blocks.0.attn.in"])
    x0 = cache["blocks.0.attn.in"][0, 0]
    W = model.blocks[0].sublayers["attn"].mixer.k_proj.weight.detach().view(4, 8, 32)
    for h in range(4):
        want = (W[h][:, [5]] @ x0[[5]]).norm() / (W[h] @ x0).norm()
        assert reading[f"L0H{h}"] == pytest.approx(float(want), rel=1e-5)


def test_pattern_edits_spread_or_drop_the_sink_share():
    model = make()
    _, cache = run_with_cache(model, [text_ids(12)], ["blocks.1.attn.pattern"])
    pat = cache["blocks.1.attn.pattern"]
    spread = _pattern_edit({"blocks.1.attn": [0, 2]}, True)(pat, "blocks.1.attn.pattern")
    dropped = _pattern_edit({"blocks.1.attn": [0, 2]}, False)(pat, "blocks.1.attn.pattern")
    assert _pattern_edit({"blocks.1.attn": [0]}, True)(pat, "blocks.0.attn.pattern") is None
    for h in (0, 2):
        assert torch.equal(spread[0, h, 0], pat[0, h, 0]) and (spread[0, h, 1:, 0] == 0).all()
        torch.testing.assert_close(spread[0, h].sum(-1), torch.ones(12))
        torch.testing.assert_close(spread[0, h, 1:, 1:] * (1 - pat[0, h, 1:, :1]), pat[0, h, 1:, 1:])
        torch.testing.assert_close(dropped[0, h].sum(-1)[1:], 1 - pat[0, h, 1:, 0])
    assert torch.equal(spread[:, [1, 3]], pat[:, [1, 3]])


@pytest.mark.parametrize("arch", ["gpt2-like", "gqa"])
def test_redistribution_and_its_control(arch):
    model = make(**ARCHITECTURES[arch])
    ids, nbytes = text_ids(60), np.ones(61, dtype=np.int64)
    stats = attention_stats(model, ids)
    assert "skipped" in redistribution(model, ids, nbytes, stats, threshold=1.01)
    result = redistribution(model, ids, nbytes, stats, threshold=0.0)  # every head
    assert len(result["sink_heads"]) == 8 and result["bpb_before"] == evaluate_ids(model, ids, nbytes)["bpb"]

    # the same edits by another route: from each head's mix of values z, take away position 0's
    # part p0 * v0 (queries >= 1), and for the redistribution rescale the rest by 1 / (1 - p0)
    def via_z(renormalise):
        seen = {}

        def keep(act, name):
            seen[name] = act

        def edit(z, name):
            prefix = name[:-len(".z")]
            p0 = seen[prefix + ".pattern"][:, :, 1:, 0].transpose(1, 2)[..., None]   # [B, T-1, H, 1]
            v0 = seen[prefix + ".v"][:, 0]
            v0 = v0.repeat_interleave(z.shape[2] // v0.shape[1], dim=1)[:, None]   # [B, 1, H, dh]
            z = z.clone()
            z[:, 1:] = (z[:, 1:] - p0 * v0) / ((1 - p0) if renormalise else 1)
            return z

        hooks = [("blocks.*.attn.pattern", keep), ("blocks.*.attn.v", keep), ("blocks.*.attn.z", edit)]
        with hooked(model, hooks):
            return evaluate_ids(model, ids, nbytes)["bpb"]

    assert result["bpb_sink_value_removed"] == pytest.approx(via_z(False), rel=1e-5)
    assert result["bpb_redistributed"] == pytest.approx(via_z(True), rel=1e-5)
    assert abs(result["delta_redistributed"]) > 1e-4 and abs(result["delta_sink_value_removed"]) > 1e-4
