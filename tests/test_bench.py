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
                 "--threads", "1", "--bandwidth", "10")
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


def test_bandwidth(capsys):
    r = run_json(capsys, "bench", "bandwidth", "--threads", "1,2", "--mb", "8", "--reps", "2")
    assert r["buffer_mb"] == 8 and r["reps"] == 2 and set(r["by_threads"]) == {"1", "2"}
    for row in r["by_threads"].values():
        assert row["read_torch_sum_gbps"] > 0 and row["copy_torch_gbps"] > 0 and row["read_memchr_gbps"] > 0
        assert row["read_gbps"] == max(row["read_memchr_gbps"], row["read_torch_sum_gbps"])
    assert r["cpu"] == bench.cpu_info()


def test_cpu_info_names_the_instruction_sets_from_cpuinfo(monkeypatch, tmp_path):
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nmodel name\t: AMD EPYC\ncpu family\t: 25\nmodel\t\t: 17\n"
                    "flags\t\t: fpu avx2 fma avx512f avx512_vnni avx512_bf16 sse4_2\n\nprocessor\t: 1\nmodel\t\t: 99\n")
    real = bench.Path

    monkeypatch.setattr(bench, "Path", lambda p: real(fake) if p == "/proc/cpuinfo" else real(p))
    info = bench.cpu_info()
    assert info["name"] == "AMD EPYC" and (info["family"], info["model"]) == ("25", "17")  # the first CPU's
    assert info["isa"] == ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"]


def test_bandwidth_bad_input_is_one_line(capsys):
    for argv in (["--mb", "0"], ["--threads", "0"], ["--threads", "1,x"], ["--threads", ","], ["--reps", "0"],
                 ["--mb", str(10 ** 9)]):
        assert main(["bench", "bandwidth", *argv]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err


def _roofline_model():
    """2 layers, d 32, 4 heads over 2 kv heads of 8, SwiGLU of 64, vocab 40, tied, RoPE, RMSNorm."""
    import torch

    from lmlab import config
    from lmlab.model import Transformer

    cfg = config.load("tiny").model
    cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.d_ff, cfg.context = 2, 32, 4, 2, 64, 16
    cfg.vocab_size, cfg.norm, cfg.ffn, cfg.positions, cfg.tie_embeddings, cfg.bias = 40, "rmsnorm", "swiglu", "rope", True, False
    torch.manual_seed(0)
    return Transformer(cfg)


# Per token, by hand: linear weights 2 x (q 32x32 + k 16x32 + v 16x32 + o 32x32 + 3 x 64x32) = 18,432,
# head (the tied embedding) 40x32 = 1,280, norms 2 x 2 x 32 + 32 = 160, one embedding row 32, one
# row of RoPE cos and sin 2 x 4: 19,912 numbers. int8: 18,432 + 1,280 codes, one scale per output
# row (2 x 256 + 40 = 552). KV cache at 10 keys: 2 layers x (k, v) x 2 heads x 8 x 10 = 640 numbers,
# fp32 on a CPU for every sampling dtype.
@pytest.mark.parametrize("dtype, weight_bytes", [
    ("float32", 19_912 * 4),
    ("bfloat16", 19_912 * 2),
    ("int8", (18_432 + 1_280) + 552 * 2 + (160 + 32 + 8) * 2),
])
def test_decode_bytes_per_token_by_hand(dtype, weight_bytes):
    import torch

    from lmlab.infer.prepare import for_inference

    model = for_inference(_roofline_model(), dtype, torch.device("cpu"))
    got = bench.decode_bytes_per_token(model, kv_len=10)
    assert got == {"weights": weight_bytes, "kv_cache": 640 * 4, "total": weight_bytes + 640 * 4, "kv_len": 10}


def test_decode_bytes_unpacked_bf16_equal_packed():
    import torch

    from lmlab.infer.prepare import for_inference

    packed = for_inference(_roofline_model(), "bfloat16", torch.device("cpu"))
    plain = for_inference(_roofline_model(), "bfloat16", torch.device("cpu"), pack=False)
    assert bench.decode_bytes_per_token(packed, 3) == bench.decode_bytes_per_token(plain, 3)


def test_generate_roofline(capsys, tiny_run):
    r = run_json(capsys, "bench", "generate", tiny_run, "--new", "8", "--reps", "1", "--batch", "1",
                 "--threads", "1", "--bandwidth", "10", "--dtype", "float32")
    roof = r["batch1_roofline"]
    per_token = roof["bytes_per_token"]
    assert roof["bandwidth_gbps"] == 10 and roof["bandwidth_source"] == "--bandwidth"
    assert per_token["kv_len"] == 8 + 8 / 2  # the timed steps' mean cache length
    assert per_token["total"] == per_token["weights"] + per_token["kv_cache"] > r["params"] * 4
    assert roof["roofline_tokens_per_s"] == pytest.approx(10e9 / per_token["total"])
    assert roof["fraction_of_roofline"] == pytest.approx(r["batch1_tokens_per_s"] / roof["roofline_tokens_per_s"])
    assert main(["bench", "generate", str(tiny_run), "--bandwidth", "0"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --bandwidth")
