"""Throughput measurements: matmul peak, training step, generation. Each returns a JSON-able dict.

Timings are medians over repetitions (robust to a shared CPU); memory is the process's resident
peak (VmHWM, reset before each measurement where the kernel allows) or CUDA's allocator peak.
"""
from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from . import runtime
from .errors import LmlabError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def reset_peak_rss() -> None:
    """Make VmHWM restart from the current RSS (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def rss_mb(field: str = "VmHWM") -> float:
    """Resident set size in MiB: the peak (VmHWM) or the current one (VmRSS)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_gflops(dtype: torch.dtype, n: int = 2048, reps: int = 10, device="cpu") -> dict:
    """GFLOP/s of an n x n x n matmul (2 n^3 flops): best and median of `reps` timed calls."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.mm(a, b)  # warm-up: oneDNN/cuBLAS pick kernels on the first call
    times = []
    for _ in range(reps):
        _sync(device)
        t = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        times.append(time.perf_counter() - t)
    flops = 2 * n ** 3
    return {"best_gflops": flops / min(times) / 1e9, "median_gflops": flops / statistics.median(times) / 1e9}


def peak(n: int = 2048, reps: int = 10, device="cpu") -> dict:
    """The machine's fp32 and bf16 matmul peak; `best` is the peak (a shared CPU only ever lowers it)."""
    out = {"device": str(device), "threads": torch.get_num_threads(), "n": n, "reps": reps,
           "loadavg": loadavg(), "process_settings": runtime.configure()}
    for name, dt in DTYPES.items():
        out[name] = matmul_gflops(dt, n, reps, device)
    out["bf16_over_fp32"] = out["bfloat16"]["best_gflops"] / out["float32"]["best_gflops"]
    return out


def train(cfg, steps: int = 20, warmup: int = 3, peak_n: int = 2048) -> dict:
    """Run the real training loop for `steps` steps (no eval, one final checkpoint in a temp dir) and
    report its median step time, tokens/s, MFU against the measured peak of the dtype it used."""
    from . import checkpoint
    from .train.loop import train as run_train

    if steps <= warmup:
        raise LmlabError(f"--steps must be more than the {warmup} warm-up steps")
    cfg.train.max_steps = steps
    cfg.train.eval_every = 0
    cfg.train.ckpt_every = 0
    cfg.train.log_every = 1
    cfg.train.progress = False
    cfg.train.max_minutes = 0.0
    load_before = loadavg()
    reset_peak_rss()
    with tempfile.TemporaryDirectory(prefix="lmlab-bench-") as tmp:
        result = run_train(cfg, tmp, echo=lambda *a: None)
        rss = rss_mb()
        cuda_peak = torch.cuda.max_memory_allocated() / 2 ** 20 if torch.cuda.is_available() else None
        records = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
        model, _, _ = checkpoint.load_model(tmp)
    tokens_per_step = cfg.train.batch_size * cfg.train.grad_accum * cfg.model.context
    step_s = [tokens_per_step / r["tok_per_s"] for r in records if "tok_per_s" in r][warmup:]
    step_med = statistics.median(step_s)
    tok_s = tokens_per_step / step_med
    dtype = result["dtype"]
    device = result["device"]
    pk = matmul_gflops(DTYPES.get(dtype, torch.float32), peak_n, 5, device)["best_gflops"]
    flops = model.flops_per_token(cfg.model.context)["train"]
    params = model.num_params()
    out = {"tokens_per_s": tok_s, "step_ms": step_med * 1e3, "step_ms_min": min(step_s) * 1e3,
           "mfu": flops * tok_s / (pk * 1e9), "peak_gflops": pk, "dtype": dtype, "device": device,
           "params": params, "train_flops_per_token": flops, "tokens_per_step": tokens_per_step,
           "steps_timed": len(step_s), "peak_rss_mb": rss, "rss_bytes_per_param": rss * 2 ** 20 / params,
           "threads": torch.get_num_threads(), "loadavg_before": load_before, "loadavg_after": loadavg(),
           "final_loss": result["loss"], "process_settings": runtime.configure()}
    if cuda_peak is not None:
        out["cuda_peak_mb"] = cuda_peak
    return out


@torch.no_grad()
def generate(model, batch_sizes=(1, 16), new_tokens: int = 64, prompt_tokens: int = 1000, reps: int = 3,
             temperature: float = 0.8, top_k: int = 0, seed: int = 0, params: int | None = None) -> dict:
    """Decode tokens/s with the KV cache at each batch size, and time to first token of a long prompt.

    The decode rate counts the new tokens after the first (the first pays for the prompt); each shape
    gets one untimed pass first (warmup_s: their total, which includes any compiling). A prompt
    longer than the model's context is cut to the context (reported as ttft_prompt_tokens).
    `params` overrides the count of a model whose weights are no longer parameters (int8).
    """
    from .infer.generate import decode_steps

    model.eval()
    params = params or model.num_params()
    device = next(model.parameters()).device
    vocab, context = model.cfg.vocab_size, model.cfg.context
    gen = torch.Generator().manual_seed(seed)
    out = {"device": str(device), "threads": torch.get_num_threads(), "params": params,
           "context": context, "new_tokens": new_tokens, "loadavg_before": loadavg()}
    # a short prompt, and room to decode without the cache's sliding-window refill
    n_new = max(2, min(new_tokens, context - 8))
    warmup_s = 0.0
    for b in batch_sizes:
        prompt = torch.randint(0, vocab, (b, 8), generator=gen).to(device)
        rates = []
        t = time.perf_counter()  # one untimed pass per shape: first-call allocations, or compiling
        for _ in decode_steps(model, prompt, 3, temperature=temperature, top_k=top_k, seed=seed):
            pass
        _sync(device)
        warmup_s += time.perf_counter() - t
        reset_peak_rss()
        for r in range(reps):
            steps = decode_steps(model, prompt, n_new, temperature=temperature, top_k=top_k, seed=seed + r)
            next(steps)
            _sync(device)
            t = time.perf_counter()
            for _ in steps:
                pass
            _sync(device)
            rates.append(b * (n_new - 1) / (time.perf_counter() - t))
        out[f"batch{b}_tokens_per_s"] = statistics.median(rates)
        out[f"batch{b}_peak_rss_mb"] = rss_mb()
    p = min(prompt_tokens, context)
    prompt = torch.randint(0, vocab, (1, p), generator=gen).to(device)
    ttft = []
    t = time.perf_counter()
    next(decode_steps(model, prompt, 1, temperature=temperature, top_k=top_k, seed=seed))
    _sync(device)
    warmup_s += time.perf_counter() - t
    for r in range(reps):
        _sync(device)
        t = time.perf_counter()
        next(decode_steps(model, prompt, 1, temperature=temperature, top_k=top_k, seed=seed + r))
        _sync(device)
        ttft.append(time.perf_counter() - t)
    out.update({"ttft_ms": statistics.median(ttft) * 1e3, "ttft_prompt_tokens": p,
                "ttft_prompt_note": "" if p == prompt_tokens else
                f"model context is {context}: the prompt was cut to {p} tokens",
                "peak_rss_mb": rss_mb(), "rss_bytes_per_param": rss_mb() * 2 ** 20 / params,
                "warmup_s": warmup_s, "loadavg_after": loadavg(), "process_settings": runtime.configure()})
    if torch.cuda.is_available() and device.type == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return out


def set_threads(n: int) -> None:
    if n:
        torch.set_num_threads(n)
        os.environ.setdefault("OMP_NUM_THREADS", str(n))
