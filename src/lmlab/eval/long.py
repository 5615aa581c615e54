"""Quality beyond the training length: bits per byte in windows of 1x, 2x, 4x, 8x the context.

Windows of every length start at the same places in the text, so the rows differ only in how
far back each prediction can look. "vanilla" runs the model as it is (RoPE extrapolated past the
trained positions); "lminfinite" runs it under LM-Infinite (Lambda mask + distance cap), fed in
chunks through its bounded cache. Two figures per row: bpb over the whole window and over its
last `context` tokens (for 1x they are the same tokens), plus a bpb-vs-position profile.
"""
from __future__ import annotations

import copy
import math
import os
import statistics
import time
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import LmlabError
from ..infer import lminfinite

METHODS = ("vanilla", "lminfinite")


def _check(model, method: str):
    if method not in METHODS:
        raise LmlabError(f"unknown long-context method {method!r}; valid: {', '.join(METHODS)}")
    if model.cfg.positions != "rope":
        raise LmlabError("long-context evaluation needs RoPE positions; learned positions stop at model.context")


@torch.no_grad()
def window_logits(model, x: torch.Tensor, method: str, n_global: int = 10, n_local: int | None = None,
                  chunk: int | None = None) -> torch.Tensor:
    _check(model, method)
    if method == "vanilla":
        return model(x)[0]
    with lminfinite.lm_infinite(model, n_global, n_local) as policy:
        return lminfinite.chunked_logits(model, x, chunk or policy.n_local)


def window_starts(n_tokens: int, length: int, n_windows: int) -> list[int]:
    if n_tokens < length + 1:
        raise LmlabError(f"the held-out text has {n_tokens} tokens; a window of {length} needs {length + 1}")
    return np.linspace(0, n_tokens - length - 1, n_windows).astype(int).tolist()


@torch.no_grad()
def position_losses(model, ids: np.ndarray, length: int, starts: list[int], method: str, **kw) -> np.ndarray:
    """Loss (nats) [n_windows, length] of each target in windows ids[s : s + length + 1]."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for s in starts:
        w = torch.from_numpy(np.asarray(ids[s:s + length + 1], dtype=np.int64)).to(device)
        logits = window_logits(model, w[None, :-1], method, **kw)[0]
        out.append(F.cross_entropy(logits.float(), w[1:], reduction="none").cpu().numpy())
    return np.stack(out)


def evaluate_long(model, ids, token_nbytes: np.ndarray, multipliers=(1, 2, 4, 8), n_windows: int = 4,
                  methods=METHODS, n_global: int = 10, n_local: int | None = None, profile_bins: int = 16) -> dict:
    ids = np.asarray(ids, dtype=np.int64)
    ctx = model.cfg.context
    longest = ctx * max(multipliers)
    starts = window_starts(len(ids), longest, n_windows)
    rows, profile = [], {}
    for method in methods:
        for m in multipliers:
            L = ctx * m
            losses = position_losses(model, ids, L, starts, method, n_global=n_global, n_local=n_local)
            nbytes = np.stack([token_nbytes[ids[s + 1:s + 1 + L]] for s in starts]).astype(np.float64)
            tail = slice(L - ctx, L)
            rows.append({"method": method, "multiplier": m, "length": L,
                         "bpb": float(losses.sum() / math.log(2) / nbytes.sum()),
                         "bpb_last_context": float(losses[:, tail].sum() / math.log(2) / nbytes[:, tail].sum())})
            if L == longest:
                edges = np.linspace(0, L, profile_bins + 1).astype(int)
                profile[method] = [{"start": int(a), "end": int(b),
                                    "bpb": float(losses[:, a:b].sum() / math.log(2) / nbytes[:, a:b].sum())}
                                   for a, b in zip(edges[:-1], edges[1:])]
    return {"context": ctx, "n_windows": n_windows, "n_global": n_global, "n_local": n_local or ctx,
            "rows": rows, "profile": profile}


@torch.no_grad()
def greedy_continue(model, ids: list[int], n_new: int, method: str = "vanilla", n_global: int = 10,
                    n_local: int | None = None) -> list[int]:
    """Greedy continuation of a prompt of any length (the prompt may exceed the context)."""
    _check(model, method)
    device = next(model.parameters()).device
    x = torch.tensor([ids], device=device)

    def run():
        cache = lminfinite.new_cache(model) if method == "lminfinite" else model.new_cache(len(ids) + n_new)
        chunk = model.cfg.context
        logits = lminfinite.chunked_logits(model, x, chunk, cache)[:, -1]
        out = []
        for _ in range(n_new):
            nxt = logits.argmax(-1)
            out.append(int(nxt))
            logits = model(nxt[:, None], cache=cache)[0][:, -1]
        return out

    if method == "vanilla":
        return run()
    with lminfinite.lm_infinite(model, n_global, n_local):
        return run()


@torch.no_grad()
def decode_speed(model, prompt_len: int, n_new: int = 64, method: str = "vanilla", n_global: int = 10,
                 n_local: int | None = None, repeats: int = 3, seed: int = 0, batch: int = 1) -> dict:
    """Greedy decoding tokens/s (per sequence) after a prompt of `prompt_len` tokens, `batch`
    sequences at once (prefill not timed); median of runs.

    Vanilla is the usual KV cache (preallocated, every position attended with one fused attention
    call); both methods use the model's RoPE tables, grown once past the context (Transformer.rope).
    """
    _check(model, method)
    device = next(model.parameters()).device
    x = torch.randint(0, model.cfg.vocab_size, (batch, prompt_len),
                      generator=torch.Generator().manual_seed(seed)).to(device)

    def once() -> float:
        cache = lminfinite.new_cache(model) if method == "lminfinite" else model.new_cache(prompt_len + n_new)
        logits = lminfinite.chunked_logits(model, x, model.cfg.context, cache)[:, -1]
        t0 = time.perf_counter()
        for _ in range(n_new):
            logits = model(logits.argmax(-1)[:, None], cache=cache)[0][:, -1]
        return n_new / (time.perf_counter() - t0)

    if method == "vanilla":
        runs = [once() for _ in range(repeats)]
    else:
        with lminfinite.lm_infinite(model, n_global, n_local):
            runs = [once() for _ in range(repeats)]
    return {"method": method, "prompt_len": prompt_len, "n_new": n_new, "batch": batch,
            "tok_per_s": statistics.median(runs), "runs": runs}


@torch.no_grad()
def decode_speed_table(model, multipliers=(1, 2, 4, 8), batches=(1,), n_new: int = 32, repeats: int = 5,
                       n_global: int = 10, n_local: int | None = None, seed: int = 0, echo=None) -> list[dict]:
    """Greedy decoding tokens/s, vanilla vs LM-Infinite, after prompts of m x the context.

    Per (batch, multiplier): each method's cache is filled once (prefill, not timed) and copied for
    every timed run, so runs start from the same state; the two methods' runs alternate (a load
    change on a shared machine hits both). tok/s counts tokens of all `batch` sequences; the main
    figures are from each method's fastest run, `*_median` from the median one.
    """
    _check(model, "lminfinite")
    device = next(model.parameters()).device
    ctx = model.cfg.context
    rows = []
    for batch in batches:
        for m in multipliers:
            P = m * ctx
            x = torch.randint(0, model.cfg.vocab_size, (batch, P),
                              generator=torch.Generator().manual_seed(seed)).to(device)
            filled = {}
            for method in METHODS:
                with lminfinite.lm_infinite(model, n_global, n_local) if method == "lminfinite" else nullcontext():
                    cache = lminfinite.new_cache(model) if method == "lminfinite" else model.new_cache(P + n_new)
                    logits = lminfinite.chunked_logits(model, x, ctx, cache)[:, -1]
                filled[method] = (cache, logits)
            times = {method: [] for method in METHODS}
            for _ in range(repeats):
                for method in METHODS:
                    cache, logits = copy.deepcopy(filled[method])
                    with lminfinite.lm_infinite(model, n_global, n_local) if method == "lminfinite" else nullcontext():
                        t0 = time.perf_counter()
                        for _ in range(n_new):
                            logits = model(logits.argmax(-1)[:, None], cache=cache)[0][:, -1]
                        times[method].append(time.perf_counter() - t0)
                    del cache
            del filled
            # Best of the runs: other jobs on a shared CPU only ever add time. Medians kept too.
            tps = {k: batch * n_new / min(v) for k, v in times.items()}
            med = {k: batch * n_new / statistics.median(v) for k, v in times.items()}
            rows.append({"batch": batch, "multiplier": m, "prompt_len": P, "vanilla": tps["vanilla"],
                         "lminfinite": tps["lminfinite"], "speedup": tps["lminfinite"] / tps["vanilla"],
                         "vanilla_median": med["vanilla"], "lminfinite_median": med["lminfinite"],
                         "speedup_median": med["lminfinite"] / med["vanilla"],
                         "runs": repeats, "n_new": n_new, "load_avg_1min": os.getloadavg()[0]})
            if echo:
                echo(rows[-1])
    return rows

