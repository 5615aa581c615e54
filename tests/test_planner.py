"""The parallelism planner's formulas against hand computation, and `lmlab plan`."""
import json

import pytest

from lmlab import config
from lmlab.cli import main
from lmlab.model import Transformer
from lmlab.train import planner as P

SHAPE = P.Shape(params=1000, tp_split=800, block_params=300, n_layers=2, sublayers=4, d_model=16, vocab=10,
                context=8, n_heads=4, n_kv_heads=2, flops_per_token=6000.0, batch=2, grad_accum=1, act_bytes=2)


def test_ring_collectives():
    GB_per_s = 8.0  # Gbit/s: 1e9 bytes per second
    assert P.all_reduce_s(1e9, 4, GB_per_s) == pytest.approx(2 * 3 / 4)
    assert P.all_gather_s(1e9, 4, GB_per_s) == pytest.approx(3 / 4)
    assert P.reduce_scatter_s(1e9, 4, GB_per_s) == pytest.approx(3 / 4)
    assert P.all_reduce_s(0, 4, GB_per_s, latency_us=10) == pytest.approx(2 * 3 * 10e-6)
    assert P.all_gather_s(0, 4, GB_per_s, latency_us=10) == pytest.approx(3 * 10e-6)
    assert P.all_reduce_s(1e9, 1, GB_per_s, 10) == P.all_gather_s(1e9, 1, GB_per_s, 10) == 0.0


def test_memory_of_fsdp_x_tp_by_hand():
    m = P.memory(SHAPE, P.Layout(dp=2, tp=2, fsdp=True))
    local = 800 / 2 + 200  # split parameters over tp, the rest replicated
    assert P.local_params(SHAPE, P.Layout(dp=2, tp=2)) == local
    assert (m["weights"], m["grads"], m["optimizer"]) == (4 * local / 2, 4 * local / 2, 8 * local / 2)
    assert m["fsdp_working"] == 3 * 4 * 300 / 2
    tokens = 2 * 8
    assert m["activations"] == 2 * 34 * tokens * 16 / 2  # 2 layers, 34 B per (token, d), / tp
    assert m["logits"] == 12 * tokens * 10 / 2
    assert m["total"] == sum(m[k] for k in ("weights", "grads", "optimizer", "fsdp_working", "activations", "logits"))
    assert m["host"] == 0


def test_memory_variants_by_hand():
    ddp = P.memory(SHAPE, P.Layout(dp=4, tp=1))
    assert (ddp["weights"], ddp["grads"], ddp["optimizer"], ddp["fsdp_working"]) == (4000, 4000, 8000, 0)
    accum = P.memory(P.Shape(**{**SHAPE.__dict__, "grad_accum": 2}), P.Layout(dp=4, tp=1, fsdp=True))
    assert accum["grads"] == 4000 and accum["weights"] == 1000  # unsharded gradients while sync is off
    off = P.memory(SHAPE, P.Layout(dp=4, tp=1, fsdp=True, offload=True))
    assert (off["weights"], off["grads"], off["optimizer"], off["host"]) == (0, 0, 0, 1000 + 1000 + 2000)
    rec = P.memory(SHAPE, P.Layout(dp=1, tp=1, recompute=True))
    assert rec["activations"] == 2 * (2 * 16 * 16) + 34 * 16 * 16  # layer inputs + one layer's working set
    pp = P.memory(P.Shape(**{**SHAPE.__dict__, "grad_accum": 8}), P.Layout(dp=1, tp=1, pp=2))
    assert pp["weights"] == 4 * 1000 / 2 and pp["activations"] == 1 * 34 * 16 * 16 * 2  # 1 layer x 2 in flight


def test_step_time_by_hand():
    hw = P.Hardware(devices=4, memory_gb=1, peak_tflops=1e-6, inter_gbps=8, latency_us=0)  # 1 MFLOP/s, 1 GB/s
    t = P.step_time(SHAPE, P.Layout(dp=4, tp=1), hw)
    tokens = 2 * 8 * 4
    assert t["tokens_per_step"] == tokens
    assert t["compute"] == pytest.approx(6000 * tokens / 4 / 1e6)
    assert t["data_comm"] == pytest.approx(2 * 3 / 4 * 4000 / 1e9)
    assert t["step_s"] == pytest.approx(t["compute"] + t["data_comm"])
    assert t["step_s_overlap"] == pytest.approx(t["compute"])  # the all-reduce hides behind compute
    f = P.step_time(SHAPE, P.Layout(dp=4, tp=1, fsdp=True), hw)
    assert f["data_comm"] == pytest.approx((2 * 3 / 4 * 4000 + 3 / 4 * 4000) / 1e9)  # 2 all-gathers, 1 reduce-scatter
    tp = P.step_time(SHAPE, P.Layout(dp=1, tp=4), P.Hardware(**{**hw.__dict__, "intra_gbps": 80}))
    act = 2 * 8 * 16 * 2
    ag, ar = 3 / 4 * act / 1e10, 2 * 3 / 4 * act / 1e10  # inside the node: 10 GB/s
    assert tp["tp_comm"] == pytest.approx(4 * 4 * ag + ar + 3 * ag)  # 4 sublayers x (2 fwd + 2 bwd), embedding, head
    assert tp["data_comm"] == 0


def test_groups_beyond_a_node_use_the_slower_links():
    hw = P.Hardware(devices=16, memory_gb=1, peak_tflops=1, inter_gbps=8, intra_gbps=80, node_size=8, latency_us=0)
    inside = P.step_time(SHAPE, P.Layout(dp=4, tp=2), P.Hardware(**{**hw.__dict__, "devices": 8}))
    across = P.step_time(SHAPE, P.Layout(dp=8, tp=2), hw)
    p = P.local_params(SHAPE, P.Layout(dp=4, tp=2))
    assert inside["data_comm"] == pytest.approx(P.all_reduce_s(4 * p, 4, 80))
    assert across["data_comm"] == pytest.approx(P.all_reduce_s(4 * p, 8, 8))


def test_layouts_refuse_what_cannot_split():
    kept, refused = P.layouts(SHAPE, P.Hardware(devices=8, memory_gb=1, peak_tflops=1, node_size=4))
    why = {r["layout"]: r["why"] for r in refused}
    assert "heads (4 query, 2 key/value) do not split over tp=4" in why["dp2 tp4 pp1"]
    assert "layers do not split into pp=4" in why["dp2 tp1 pp4"]
    assert "heads (4 query, 2 key/value) do not split over tp=8" in why["dp1 tp8 pp1"]
    wide = P.Shape(**{**SHAPE.__dict__, "n_heads": 8, "n_kv_heads": 8})
    _, refused = P.layouts(wide, P.Hardware(devices=8, memory_gb=1, peak_tflops=1, node_size=4))
    assert {r["layout"]: r["why"] for r in refused}["dp1 tp8 pp1"] == "tp=8 would cross nodes of 4"
    assert all(lay.fsdp for lay in kept if lay.offload)
    assert {(lay.dp, lay.tp, lay.pp) for lay in kept} == {(8, 1, 1), (4, 2, 1), (4, 1, 2), (2, 2, 2)}
    assert P.Layout(4, 2).lmlab_parallel is None and P.Layout(4, 2, fsdp=True).lmlab_parallel == "fsdp+tp"
    assert P.Layout(1, 2).lmlab_parallel == "tp" and P.Layout(2, 1, pp=2).lmlab_parallel is None
    assert P.Layout(1, 1, fsdp=True, offload=True).lmlab_parallel is None
    assert P.Layout(2, 1, fsdp=True, offload=True).lmlab_parallel == "fsdp"


def test_a_global_batch_sets_micro_batch_and_accumulation_per_layout():
    # 64 tokens of context 8 = 8 sequences; micro-batch at most SHAPE.batch = 2
    assert P.with_global_batch(SHAPE, P.Layout(dp=2, tp=1), 64).batch == 2
    assert P.with_global_batch(SHAPE, P.Layout(dp=2, tp=1), 64).grad_accum == 2
    assert (P.with_global_batch(SHAPE, P.Layout(dp=8, tp=1), 64).batch,
            P.with_global_batch(SHAPE, P.Layout(dp=8, tp=1), 64).grad_accum) == (1, 1)
    assert P.with_global_batch(SHAPE, P.Layout(dp=16, tp=1), 64) is None
    out = P.plan(SHAPE, P.Hardware(devices=16, memory_gb=1, peak_tflops=1), global_tokens=64)
    assert {r["tokens_per_step"] for r in out["plans"]} == {64}
    assert any("exceed the 8 sequences" in r["why"] for r in out["refused"])


def test_plans_that_fit_come_first_fastest_first():
    rows = P.plan(SHAPE, P.Hardware(devices=4, memory_gb=20e-9 * 1000, peak_tflops=1e-6))["plans"]
    fits = [r["fits"] for r in rows]
    assert fits == sorted(fits, reverse=True) and any(fits) and not all(fits)
    fitting = [r["tokens_per_s"] for r in rows if r["fits"]]
    assert fitting == sorted(fitting, reverse=True)
    assert all(r["reasons"][0].startswith("fits" if r["fits"] else "does not fit") for r in rows)


def test_shape_of_a_config_is_the_model_it_builds():
    cfg = config.load("tiny", ["model.vocab_size=65", "model.n_kv_heads=2"])
    shape = P.shape_of(cfg)
    model = Transformer(cfg.model)
    assert shape.params == model.num_params()
    norms = sum(p.numel() for n, p in model.named_parameters() if "norm" in n)
    assert shape.tp_split == shape.params - norms  # everything but the norms splits
    assert shape.flops_per_token == model.flops_per_token()["train"] and shape.n_kv_heads == 2
    ssm = P.shape_of(config.load("tiny", ["model.vocab_size=65", "model.pattern=AMF"]))
    assert not ssm.tp_ok and ssm.tp_split == 0


def test_cli_prints_ranked_plans_as_json(capsys):
    assert main(["plan", "-c", "tiny", "--set", "model.vocab_size=65", "--devices", "8", "--memory-gb", "80",
                 "--peak-tflops", "100", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["hardware"]["devices"] == 8 and out["plans"]
    assert {"layout", "fits", "memory_gb", "time_s", "tokens_per_s", "reasons", "lmlab_parallel"} <= out["plans"][0].keys()
    assert main(["plan", "-c", "tiny", "--set", "model.vocab_size=65", "--devices", "2", "--memory-gb", "1",
                 "--peak-tflops", "1"]) == 0
    assert "dp2 tp1 ddp" in capsys.readouterr().out


def test_cli_refuses_bad_numbers(capsys):
    assert main(["plan", "-c", "tiny", "--devices", "0", "--memory-gb", "8"]) == 2
    assert capsys.readouterr().err.strip() == "error: lmlab plan: argument --devices: must be >= 1, got 0"


def test_measure_runs_the_best_layout_and_reports_it(capsys):
    assert main(["plan", "-c", "tiny", "--devices", "1", "--memory-gb", "8", "--peak-tflops", "1", "--json",
                 "--measure", "1", "--steps", "3", "--set", "train.batch_size=2"]) == 0
    plans = json.loads(capsys.readouterr().out)["plans"]
    measured = [r for r in plans if "measured" in r]
    assert len(measured) == 1 and measured[0]["lmlab_parallel"] == "ddp" and measured[0]["layout"] == "dp1 tp1"
    m = measured[0]["measured"]
    assert m["steps"] == 3 and m["tokens_per_s"] > 0 and 0.05 < m["peak_rss_gb"] < 8


def test_a_profiled_rate_predicts_the_profiled_run_exactly():
    """Calibration: the achieved FLOP/s of a measured one-device run, as the peak, gives back that
    run's tokens/s for the one-device layout (no communication), and half the step on 2 devices."""
    rate = P.achieved_tflops(SHAPE.flops_per_token, 1234.0)
    assert rate == 6000.0 * 1234.0 / 1e12
    one = P.step_time(SHAPE, P.Layout(dp=1, tp=1), P.Hardware(devices=1, memory_gb=1, peak_tflops=rate))
    assert one["tokens_per_s"] == pytest.approx(1234.0, rel=1e-12)
    two = P.step_time(SHAPE, P.Layout(dp=1, tp=2), P.Hardware(devices=2, memory_gb=1, peak_tflops=rate, latency_us=0))
    assert two["compute"] == pytest.approx(one["compute"] / 2, rel=1e-12)


def test_profile_steps_trains_the_config_and_uses_its_rate(capsys):
    assert main(["plan", "-c", "tiny", "--devices", "2", "--memory-gb", "8", "--json", "--profile-steps", "3",
                 "--set", "train.batch_size=2"]) == 0
    out = json.loads(capsys.readouterr().out)
    prof = out["profile"]
    assert prof["steps"] == 3 and prof["tokens_per_s"] > 0 and prof["tflops"] > 0
    assert out["hardware"]["peak_tflops"] == prof["tflops"]
    assert prof["tflops"] == P.achieved_tflops(out["shape"]["flops_per_token"], prof["tokens_per_s"])
    assert out["peak_tflops_source"].startswith("profiled")
