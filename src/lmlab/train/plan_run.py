"""What `lmlab plan` needs besides arithmetic: a config's vocabulary size, this machine's matmul
peak or (`--profile-steps`) the training FLOP/s one process achieves on the config, and
`--measure`: a few real training steps of a layout under torchrun, next to its estimate."""
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


def _train(config: str, overrides: list[str], sets: list[str], devices: int, what: str):
    """`lmlab train` for a few steps on `devices` local processes (one thread each, torchrun when
    several): its per-step records, rank 0's summary and the resource usage of the largest process."""
    with tempfile.TemporaryDirectory(prefix="lmlab-plan-") as tmp:
        sets = [*overrides, *sets, "train.eval_every=0", "train.ckpt_every=0", "train.progress=false",
                "train.max_minutes=0"]
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
                raise LmlabError(f"{what} failed: {tail[0] if tail else proc.returncode}")
            out.seek(0)
            printed = out.read()
        from .metrics import read

        records = read(Path(tmp) / "run")
    summary = json.loads(printed[printed.index("{"):])  # rank 0's summary of `lmlab train`
    return records, summary, usage


def _median_tokens_per_s(records: list[dict]) -> float:
    """Median tokens/s over the steps after the second (the first ones warm up), as `lmlab train` reports it."""
    timed = [r["tok_per_s"] for r in records[2:]] or [r["tok_per_s"] for r in records]
    return statistics.median(timed)


def measure(config: str, overrides: list[str], row: dict, devices: int, steps: int = 6) -> dict:
    """Train the layout for `steps` steps on `devices` local processes (one thread each): median
    tokens/s over the steps after the second, and the largest process's peak RSS."""
    if row["lmlab_parallel"] is None:
        raise LmlabError(f"layout {row['layout']} cannot run in lmlab")
    records, summary, usage = _train(config, overrides, [*settings_for(row), f"train.max_steps={steps}"], devices,
                                     f"measuring {row['layout']}")
    return {"tokens_per_s": _median_tokens_per_s(records), "peak_rss_gb": usage.ru_maxrss * 1024 / 1e9,
            "steps": len(records), "rank0_memory_bytes": summary.get("memory_bytes", {})}


PROFILE_MIN_STEPS = 3  # the first two steps warm up and are not timed


def profiled_tflops(config: str, overrides: list[str], flops_per_token: float, steps: int) -> dict:
    """The training FLOP/s one process (one thread) achieves on the config itself, as Galvatron
    profiles instead of assuming: `steps` real steps at the config's batch, model FLOPs per token x
    the median tokens/s. It carries eager per-operator overhead the matmul peak does not."""
    if steps < PROFILE_MIN_STEPS:
        raise LmlabError(f"--profile-steps must be 0 or >= {PROFILE_MIN_STEPS}, got {steps}")
    one_process = ["train.parallel=ddp", "train.offload=", "train.tp_size=0"]  # whatever the overrides asked for
    records, _, _ = _train(config, overrides, [*one_process, f"train.max_steps={steps}"], 1, "profiling the config")
    from .planner import achieved_tflops

    tokens_per_s = _median_tokens_per_s(records)
    return {"tflops": achieved_tflops(flops_per_token, tokens_per_s), "tokens_per_s": tokens_per_s,
            "steps": len(records)}
