"""benchmarks/parallel_gpu.py: its CPU mode runs the GPU script's code paths (DDP, FSDP2, offload,
TP through lmlab's wrapping, under torchrun) end to end on gloo, so the script cannot rot on a
machine without a GPU; and without CUDA its GPU mode is one `error:` line and exit 2."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "parallel_gpu.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_cpu_quick_runs_every_layout_on_two_ranks():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--set", "train.dtype=float32"],
                          capture_output=True, text=True, timeout=600, env=ENV)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["ranks"] == 2 and out["device_name"] == "cpu" and out["peak_tflops"] > 0
    rows = {r["layout"]: r for r in out["rows"]}
    assert list(rows) == ["ddp", "fsdp", "fsdp offload", "tp"]
    for r in rows.values():
        assert r["tokens_per_s"] > 0 and r["mfu"] > 0 and len(r["ranks"]) == 2
    # the same initial weights and batches in every layout: the same first loss (fp32)
    first = rows["ddp"]["loss_first"]
    assert all(r["loss_first"] == pytest.approx(first, rel=1e-5) for r in rows.values())
    assert rows["tp"]["tokens_per_step"] == rows["ddp"]["tokens_per_step"] // 2  # one data rank
    # FSDP's two ranks hold one copy of the weights between them, DDP's ranks one each
    weights = {name: [rk["state_bytes"]["weights"]["cpu"] for rk in r["ranks"]] for name, r in rows.items()}
    assert sum(weights["fsdp"]) == sum(weights["fsdp offload"]) == weights["ddp"][0] == weights["ddp"][1]
    assert max(weights["fsdp"]) < weights["ddp"][0]
    assert out["offload_saved"]["measure"] == "peak_rss_bytes" and len(out["offload_saved"]["bytes_per_rank"]) == 2


def test_one_rank_shards_with_fsdp2_itself_and_skips_ddp_and_tp():
    """--gpus 1 (one H200): lmlab's wrap leaves one process unwrapped, so FSDP2 is applied over
    the one-rank group; its rows run and hold every weight, DDP and TP are skipped."""
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--gpus", "1",
                           "--set", "train.dtype=float32"], capture_output=True, text=True, timeout=600, env=ENV)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = {r["layout"]: r for r in json.loads(proc.stdout)["rows"]}
    assert "skipped" in rows["ddp"] and "skipped" in rows["tp"]
    for name in ("fsdp", "fsdp offload"):
        assert rows[name]["tokens_per_s"] > 0 and len(rows[name]["ranks"]) == 1
        assert rows[name]["ranks"][0]["state_bytes"]["weights"]["cpu"] == 4 * rows[name]["params"]
    assert rows["fsdp"]["loss_first"] == pytest.approx(rows["fsdp offload"]["loss_first"], rel=1e-6)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here")
def test_without_cuda_the_gpu_mode_is_one_line_and_exit_2():
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120, env=ENV)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: no CUDA device"), proc.stderr
    assert proc.stdout == ""
