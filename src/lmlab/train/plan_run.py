"""What `lmlab plan` needs besides arithmetic: a config's vocabulary size, this machine's matmul
peak, and `--measure`: a few real training steps of a layout under torchrun, next to its estimate."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from ..errors import LmlabError


def resolve_vocab(cfg) -> None:
    """model.vocab_size as training would find it (the tokenizer built from the corpus)."""
    if cfg.model.vocab_size:
        return
    from .. import tokenizers
    from ..data.corpora import read_corpus

    tok = tokenizers.build(cfg.tokenizer, lambda: "".join(
        d.text for d in read_corpus(cfg.data.corpus, cfg.data.text_field, cfg.data.cache_dir)))
    cfg.model.vocab_size = tok.vocab_size


def measured_peak_tflops(cfg, threads: int = 1) -> float:
    """Matmul TFLOP/s of one training process here (one thread per rank, as --measure runs them),
    in the dtype the config trains in."""
    from .. import bench
    from ..device import pick_device, pick_dtype

    device = pick_device(cfg.train.device)
    dtype = pick_dtype(cfg.train.dtype, device)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return bench.matmul_gflops(dtype, 1024, 5, device)["best_gflops"] / 1e3
    finally:
        torch.set_num_threads(saved)


def settings_for(row: dict) -> list[str]:
    kind = row["lmlab_parallel"]
    out = [f"train.parallel={kind}", f"train.tp_size={row['tp'] if kind == 'fsdp+tp' else 0}",
           f"train.batch_size={row['micro_batch']}", f"train.grad_accum={row['grad_accum']}"]
    if row["offload"]:
        out.append("train.offload=optimizer")
    return out


def measure(config: str, overrides: list[str], row: dict, devices: int, steps: int = 6) -> dict:
    """Train the layout for `steps` steps on `devices` local processes (one thread each): median
    tokens/s over the steps after the second, and the largest process's peak RSS."""
    if row["lmlab_parallel"] is None:
        raise LmlabError(f"layout {row['layout']} cannot run in lmlab")
    with tempfile.TemporaryDirectory(prefix="lmlab-plan-") as tmp:
        sets = [*overrides, *settings_for(row), f"train.max_steps={steps}", "train.eval_every=0",
                "train.ckpt_every=0", "train.progress=false", "train.max_minutes=0"]
        cmd = ["-m", "lmlab.cli", "train", "-c", config, "-o", str(Path(tmp) / "run")]
        for s in sets:
            cmd += ["--set", s]
        if devices > 1:
            cmd = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(devices), *cmd]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with open(Path(tmp) / "stderr", "w+") as err, open(Path(tmp) / "stdout", "w+") as out:
            proc = subprocess.Popen([sys.executable, *cmd], env=env, stdout=out, stderr=err)
            _, status, usage = os.wait4(proc.pid, 0)  # its rusage: the largest of it and its ranks
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                err.seek(0)
                tail = [line for line in err.read().splitlines() if line.strip()][-1:]
                raise LmlabError(f"measuring {row['layout']} failed: {tail[0] if tail else proc.returncode}")
            out.seek(0)
            printed = out.read()
        from .metrics import read

        records = read(Path(tmp) / "run")
    summary = json.loads(printed[printed.index("{"):])  # rank 0's summary of `lmlab train`
    timed = [r["tok_per_s"] for r in records[2:]] or [r["tok_per_s"] for r in records]
    return {"tokens_per_s": statistics.median(timed), "peak_rss_gb": usage.ru_maxrss * 1024 / 1e9,
            "steps": len(records), "rank0_memory_bytes": summary.get("memory_bytes", {})}
