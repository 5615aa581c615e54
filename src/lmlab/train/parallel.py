"""Data parallelism on PyTorch's own engine (torch.distributed + DistributedDataParallel).

Launched by torchrun, which sets RANK / WORLD_SIZE / LOCAL_RANK (and MASTER_ADDR/PORT) for every
process; without them (or with WORLD_SIZE=1) everything here is a no-op and training runs in one
process exactly as before. The training loop calls these helpers; model code never sees them.
"""
from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist


def launched() -> bool:
    """True in a process that torchrun started as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else int(os.environ.get("RANK", "0"))


def world() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 writes the run directory; the others only compute."""
    return rank() == 0


def init(device: torch.device) -> tuple[torch.device, bool]:
    """Join the process group if torchrun launched us: nccl on CUDA (one GPU per local rank),
    gloo on CPU. Returns (device to use, whether this call created the group)."""
    if not launched() or active():
        return device, False
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                            device_id=device if device.type == "cuda" else None)
    return device, True


def shutdown() -> None:
    if active():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DDP around the model (rank 0's weights are broadcast to all ranks here). No search for
    unused parameters (an extra autograd-graph walk per step): every parameter of the models here
    gets a gradient each step (MoE experts are slices of shared tensors)."""
    if world() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def no_sync(model: torch.nn.Module, last: bool):
    """Skip the gradient all-reduce on all but the last micro-step of gradient accumulation."""
    if last or not hasattr(model, "no_sync"):
        return contextlib.nullcontext()
    return model.no_sync()


def micro_index(micro: int) -> int:
    """Which of the step's micro-batches this rank draws: N ranks with A micro-steps each see
    exactly the batches (seed, step, 0..A*N-1) that one process with grad_accum A*N sees."""
    return micro * world() + rank()


def mean_and_flags(value: torch.Tensor, *flags: bool) -> tuple:
    """One all-reduce per step: the loss averaged over ranks, and for each flag whether any rank
    raised it (SIGTERM, time budget), so that every rank takes the same decision at the same step."""
    if world() == 1:
        return (value.item(), *flags)
    t = torch.tensor([0.0, *map(float, flags)], device=value.device)
    t[0] = value.detach().float().reshape(())
    dist.all_reduce(t)  # SUM
    total = t.tolist()
    return (total[0] / world(), *(f > 0 for f in total[1:]))


def sum_floats(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum over ranks, in float64 (evaluation totals)."""
    if world() == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def barrier() -> None:
    if world() > 1:
        dist.barrier()


@contextlib.contextmanager
def main_first():
    """Rank 0 runs the block first (e.g. building the token cache), then the others."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()
