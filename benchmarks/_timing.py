"""Shared timing helper for the benchmarks: interleaved repetitions, medians (robust to a shared CPU)."""
from __future__ import annotations

import platform
import statistics
import time

import torch


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def interleaved_medians(fns: dict, reps: int, warmup: int = 1, device: str = "cpu") -> dict:
    """Median seconds per call of each fn; one call of each per round, so load drift hits all alike."""
    times = {k: [] for k in fns}
    for r in range(warmup + reps):
        for k, fn in fns.items():
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            if r >= warmup:
                times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def machine(device: str) -> dict:
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": device,
            "cpu": platform.processor() or platform.machine()}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
    return info
