"""Throughput measurements: matmul peak, memory bandwidth, training step, generation, and the
roofline of batch-1 decoding. Each returns a JSON-able dict.

Timings are medians over repetitions (robust to a shared CPU); memory is the process's resident
peak (VmHWM, reset before each measurement where the kernel allows) or CUDA's allocator peak.
"""
from __future__ import annotations

import ctypes
import json
import mmap
import os
import platform
import statistics
import tempfile
import threading
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


# the instruction sets the matrix-vector kernels here depend on (lmlab/kernels, oneDNN's bf16 paths)
_ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")


def cpu_info() -> dict:
    """The CPU a figure was measured on: its name, family and model (a virtual machine's name may
    hide the generation; these do not) and which of the vector instruction sets above it has."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = set(fields.get("flags", "").split())
    return {"name": fields.get("model name", platform.processor() or platform.machine()),
            "family": fields.get("cpu family"), "model": fields.get("model"), "cores": os.cpu_count(),
            "isa": [f for f in _ISA_FLAGS if f in flags]}


def available_mb() -> float | None:
    """MemAvailable in MiB (Linux), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


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
           "cpu": cpu_info(), "loadavg": loadavg(), "process_settings": runtime.configure()}
    for name, dt in DTYPES.items():
        out[name] = matmul_gflops(dt, n, reps, device)
    out["bf16_over_fp32"] = out["bfloat16"]["best_gflops"] / out["float32"]["best_gflops"]
    return out


def _timed_median(fn, reps: int) -> float:
    """Median seconds of `reps` calls of fn, after one untimed call (page faults, thread start-up)."""
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _memchr():
    """glibc's memchr (vectorised, and ctypes releases the GIL around it) or None where absent."""
    try:
        f = ctypes.CDLL(None).memchr
    except (OSError, AttributeError):
        return None
    f.restype, f.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    return f


def _parallel_memchr(memchr, buf: torch.Tensor, threads: int):
    """A function that scans `buf` (all zeros) for a 1 with `threads` OS threads, one slice each."""
    step = buf.numel() // threads
    slices = [(buf.data_ptr() + i * step, step) for i in range(threads)]

    def scan():
        workers = [threading.Thread(target=memchr, args=(ptr, 1, n)) for ptr, n in slices]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    return scan


def llc_mb() -> float | None:
    """The last-level cache in MiB (Linux sysfs), or None where unknown."""
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    sizes = []
    for index in base.glob("index*"):
        try:
            text = (index / "size").read_text().strip()
        except OSError:
            continue
        scale = {"K": 1 / 1024, "M": 1.0, "G": 1024.0}.get(text[-1:], None)
        if scale is not None:
            sizes.append(float(text[:-1]) * scale)
    return max(sizes) if sizes else None


def bandwidth(threads=(1, 2), mb: int = 512, reps: int = 7) -> dict:
    """Sustained memory read bandwidth, GB/s (1e9 bytes), at each thread count, over a buffer of `mb`
    MiB (far larger than the last-level cache, so every pass streams from memory); medians of `reps`
    passes after an untimed one. Three ways, each a cross-check of the others:
    - read_memchr: glibc's memchr over a zeroed buffer (reads only), one slice per OS thread;
    - read_torch_sum: torch.sum of the buffer as fp32 with torch's threads (reads only);
    - copy_torch: Tensor.copy_ into a second buffer, counting bytes read + written.
    `read_gbps` is the faster read, the limit a decoder streaming weights can reach."""
    nbytes = mb * 2 ** 20 // 64 * 64
    # mapped here, not from torch's allocator: the heap that runtime.configure keeps would hold
    # the buffers after they are freed and count them in later peak-memory figures
    src_map, dst_map = mmap.mmap(-1, nbytes), mmap.mmap(-1, nbytes)
    buf, dst = torch.frombuffer(src_map, dtype=torch.uint8), torch.frombuffer(dst_map, dtype=torch.uint8)
    buf.fill_(0)  # every page written: no lazily mapped zero page
    dst.fill_(0)
    as_fp32 = buf.view(torch.float32)
    memchr = _memchr()
    before = torch.get_num_threads()
    out = {"buffer_mb": nbytes / 2 ** 20, "llc_mb": llc_mb(), "reps": reps, "loadavg_before": loadavg(),
           "cpu_count": os.cpu_count(), "cpu": cpu_info(), "by_threads": {}}
    try:
        for n in threads:
            torch.set_num_threads(n)
            row = {}
            if memchr is not None:
                row["read_memchr_gbps"] = nbytes / _timed_median(_parallel_memchr(memchr, buf, n), reps) / 1e9
            row["read_torch_sum_gbps"] = nbytes / _timed_median(as_fp32.sum, reps) / 1e9
            row["copy_torch_gbps"] = 2 * nbytes / _timed_median(lambda: dst.copy_(buf), reps) / 1e9
            row["read_gbps"] = max(row.get("read_memchr_gbps", 0.0), row["read_torch_sum_gbps"])
            out["by_threads"][str(n)] = row
    finally:
        torch.set_num_threads(before)
        del buf, dst, as_fp32
        src_map.close()
        dst_map.close()
    out["loadavg_after"] = loadavg()
    return out


def _linear_weight_bytes(m) -> tuple[int, torch.dtype] | None:
    """(bytes of weights + scales + bias, output dtype) of a linear layer of any kind, else None."""
    from .model.int8 import Int8Linear
    from .model.packed import PackedLinear
    from .model.rowsum_linear import RowSumLinear

    if isinstance(m, RowSumLinear):  # the wrapped layer's bytes (counted once: its child is skipped)
        return _linear_weight_bytes(m.inner)
    bias = m.bias.nbytes if getattr(m, "bias", None) is not None else 0
    if isinstance(m, Int8Linear):
        return m.codes.nbytes + m.scales.nbytes + bias, m.scales.dtype
    if isinstance(m, PackedLinear):  # oneDNN's blocked layout of the same bf16 weights
        return m.out_features * m.in_features * 2 + bias, torch.bfloat16
    if isinstance(m, torch.nn.Linear):
        return m.weight.nbytes + bias, m.weight.dtype
    return None


def decode_bytes_per_token(model, kv_len: int) -> dict:
    """Bytes of memory one batch-1 decoding step must read, at their stored precision: every weight
    matrix once (int8 codes + scales, bf16, packed or not, fp32), norms and biases, one row of each
    table indexed by token or position (embeddings, RoPE), the head (the embedding matrix when
    tied), the top-k experts of a mixture of experts, and the KV cache at `kv_len` keys in its own
    dtype. Activations, logits and recurrent states are left out (small at batch 1)."""
    from .model.attention import CausalSelfAttention, cache_dtype
    from .model.moe import MoE

    model = getattr(model, "_orig_mod", model)  # a compiled model: the same weights, frozen
    tables = {id(model.embed)} | ({id(model.pos_embed)} if model.pos_embed is not None else set())
    weights = rows = kv = 0
    from .model.rowsum_linear import RowSumLinear

    wrapped = {id(m.inner) for m in model.modules() if isinstance(m, RowSumLinear)}
    for m in model.modules():
        if id(m) in wrapped:
            continue
        linear = _linear_weight_bytes(m)
        if linear is not None:
            weights += linear[0]
            continue
        if isinstance(m, CausalSelfAttention):
            out_dtype = _linear_weight_bytes(m.qkv_proj if m.qkv_proj is not None else m.k_proj)[1]
            device = next(m.parameters(), next(model.parameters())).device
            item = torch.empty(0, dtype=cache_dtype(torch.empty(0, dtype=out_dtype, device=device))).element_size()
            kv += 2 * m.n_kv_heads * m.head_dim * kv_len * item
        own = list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False))
        for name, t in own:
            if t is None or not t.is_floating_point():
                continue
            if id(m) in tables or name in ("rope_cos", "rope_sin"):
                rows += t.shape[-1] * t.element_size()  # one row per token
            elif isinstance(m, MoE) and name.startswith(("w_", "b_")):
                weights += t.nbytes * m.top_k // m.n_experts  # batch 1 reads its top-k experts only
            else:
                weights += t.nbytes
    if model.tied:  # the head reads the whole embedding matrix
        weights += model.embed.weight.nbytes
    return {"weights": weights + rows, "kv_cache": kv, "total": weights + rows + kv, "kv_len": kv_len}


def roofline(model, tokens_per_s: float, bandwidth_gbps: float, kv_len: float) -> dict:
    """Batch-1 decoding's memory roofline: tokens/s if every step only streamed its bytes at
    `bandwidth_gbps`, and the fraction of it that `tokens_per_s` achieves."""
    per_token = decode_bytes_per_token(model, kv_len)
    limit = bandwidth_gbps * 1e9 / per_token["total"]
    return {"bandwidth_gbps": bandwidth_gbps, "bytes_per_token": per_token, "roofline_tokens_per_s": limit,
            "fraction_of_roofline": tokens_per_s / limit,
            "effective_gbps": tokens_per_s * per_token["total"] / 1e9}


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
             temperature: float = 0.8, top_k: int = 0, seed: int = 0, params: int | None = None,
             bandwidth_gbps: float | None = None) -> dict:
    """Decode tokens/s with the KV cache at each batch size, and time to first token of a long prompt.

    The decode rate counts the new tokens after the first (the first pays for the prompt); each shape
    gets one untimed pass first (warmup_s: their total, which includes any compiling). A prompt
    longer than the model's context is cut to the context (reported as ttft_prompt_tokens).
    `params` overrides the count of a model whose weights are no longer parameters (int8).
    With `bandwidth_gbps` (memory read GB/s) and batch 1: the roofline, bandwidth over the bytes a
    timed step reads (decode_bytes_per_token at the timed steps' mean KV length), and the fraction
    of it achieved.
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
        if b == 1 and bandwidth_gbps:
            # the timed steps run the tokens at cache lengths 9 .. 8 + n_new - 1 (after the prompt of 8)
            out["batch1_roofline"] = roofline(model, out["batch1_tokens_per_s"], bandwidth_gbps, 8 + n_new / 2)
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
