"""`lmlab bench`: the JSON each verb promises, internally consistent (no wall-clock thresholds)."""
import json

import pytest

from lmlab import bench
from lmlab.cli import main


def run_json(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_peak(capsys):
    r = run_json(capsys, "bench", "peak", "--n", "128", "--reps", "2", "--threads", "1")
    for dt in ("float32", "bfloat16"):
        assert r[dt]["best_gflops"] >= r[dt]["median_gflops"] > 0
    assert r["bf16_over_fp32"] == pytest.approx(r["bfloat16"]["best_gflops"] / r["float32"]["best_gflops"])


def test_train(capsys):
    r = run_json(capsys, "bench", "train", "-c", "tiny", "--steps", "6", "--threads", "1")
    assert r["dtype"] == "float32" and r["steps_timed"] == 3
    assert r["tokens_per_step"] == 8 * 64
    assert r["tokens_per_s"] == pytest.approx(r["tokens_per_step"] / (r["step_ms"] / 1e3))
    assert r["mfu"] == pytest.approx(r["train_flops_per_token"] * r["tokens_per_s"] / (r["peak_gflops"] * 1e9))
    assert 0 < r["mfu"] < 1.5 and r["params"] > 0 and r["peak_rss_mb"] > 10


def test_generate(capsys, tiny_run):
    r = run_json(capsys, "bench", "generate", tiny_run, "--new", "8", "--reps", "1", "--batch", "1,4",
                 "--threads", "1")
    assert r["batch1_tokens_per_s"] > 0 and r["batch4_tokens_per_s"] > 0
    assert r["ttft_prompt_tokens"] == r["context"] == 64  # 1,000 does not fit the tiny model's context
    assert "cut to 64" in r["ttft_prompt_note"] and r["ttft_ms"] > 0


def test_generate_from_config(capsys):
    r = run_json(capsys, "bench", "generate", "-c", "tiny", "--set", "model.context=32", "--new", "4", "--reps", "1",
                 "--batch", "2", "--prompt", "20", "--threads", "1")
    assert r["weights"] == "random init" and r["context"] == 32 and r["batch2_tokens_per_s"] > 0
    assert r["ttft_prompt_tokens"] == 20 and r["ttft_prompt_note"] == ""


def test_bad_input_is_one_line(capsys, tiny_run):
    for argv in (["bench", "train"], ["bench", "generate", tiny_run, "--batch", "x"],
                 ["bench", "train", "-c", "tiny", "--steps", "2"], ["bench", "generate"],
                 ["bench", "generate", tiny_run, "-c", "tiny"]):
        assert main([str(a) for a in argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err


def test_rss_reset_and_read():
    bench.reset_peak_rss()
    assert bench.rss_mb("VmHWM") >= bench.rss_mb("VmRSS") * 0.99 > 0
