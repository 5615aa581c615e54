"""Several processes on PyTorch's own engine: DDP, FSDP2 (fully_shard), tensor parallelism
(tp.py) and FSDP x TP on a 2-D device mesh.

Launched by torchrun, which sets RANK / WORLD_SIZE / LOCAL_RANK (and MASTER_ADDR/PORT) for every
process; without them (or with WORLD_SIZE=1) everything here is a no-op and training runs in one
process exactly as before. The training loop calls these helpers; model code never sees them.
Under tensor parallelism the ranks of one tp group see the same batch: "data ranks" (dp_rank,
dp_world) are what batches, token counts and dropout seeds follow.
"""
from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist

from .. import config
from ..errors import LmlabError


def launched() -> bool:
    """True in a process that torchrun started as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


_mesh = None  # the device mesh of a tensor-parallel run (dims "dp", "tp"), set by wrap


def rank() -> int:
    return dist.get_rank() if active() else int(os.environ.get("RANK", "0"))


def world() -> int:
    return dist.get_world_size() if active() else 1


def dp_world() -> int:
    """Number of data-parallel groups (ranks that draw different batches)."""
    return _mesh["dp"].size() if _mesh is not None else world()


def planned_dp_world(tc) -> int:
    """dp_world() as it will be once wrap() has run with this TrainConfig (callable before it)."""
    return world() // tp_size(tc.parallel, tc.tp_size, world()) if world() > 1 else 1


def dp_rank() -> int:
    return _mesh["dp"].get_local_rank() if _mesh is not None else rank()


def tp_size(kind: str, tp: int, n: int) -> int:
    """Ranks per tensor-parallel group for `n` ranks (1 without tensor parallelism)."""
    if kind == "tp":
        if tp not in (0, n):
            raise LmlabError(f"train.parallel=tp splits every layer over all {n} ranks (train.tp_size={tp}); "
                             f"for data x tensor parallelism use train.parallel=fsdp+tp")
        return n
    if kind == "fsdp+tp":
        if tp < 1 or n % tp:
            raise LmlabError(f"train.parallel=fsdp+tp needs train.tp_size dividing the {n} ranks (got {tp})")
        return tp
    if tp > 1:
        raise LmlabError(f"train.tp_size={tp} needs train.parallel=tp or fsdp+tp (got {kind})")
    return 1


def check(cfg) -> None:
    """Refuse a parallel layout that cannot run, before any rank joins or computes anything."""
    kind, offload = cfg.train.parallel, cfg.train.offload
    # configs built in code skip config.validate(); the choices are config's, checked again here
    config.check_field("train.parallel", kind)
    config.check_field("train.offload", offload)
    n = int(os.environ.get("WORLD_SIZE", "1"))
    if offload and (n == 1 or kind not in ("fsdp", "fsdp+tp")):
        raise LmlabError("train.offload=optimizer is FSDP2's CPU offload: it needs several ranks under torchrun "
                         f"and train.parallel=fsdp or fsdp+tp (got {n} rank(s), {kind})")
    if n > 1:
        tp = tp_size(kind, cfg.train.tp_size, n)
        if tp > 1:
            from . import tp as tp_plan

            tp_plan.check(cfg.model, tp)


def is_main() -> bool:
    """Rank 0 writes the run directory; the others only compute."""
    return rank() == 0


def init(device: torch.device, cfg=None) -> tuple[torch.device, bool]:
    """Join the process group if torchrun launched us: nccl on CUDA (one GPU per local rank),
    gloo on CPU. Returns (device to use, whether this call created the group). With a config,
    its parallel layout is checked first."""
    if cfg is not None:
        check(cfg)
    if not launched() or active():
        return device, False
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    timeout = group_timeout()
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                            device_id=device if device.type == "cuda" else None,
                            **({"timeout": timeout} if timeout else {}))
    return device, True


TIMEOUT_ENV = "LMLAB_DIST_TIMEOUT"


def group_timeout():
    """$LMLAB_DIST_TIMEOUT seconds: how long a collective waits for a silent rank before it fails
    (unset: torch's default, 30 minutes for gloo; a rank that dies outright fails at once)."""
    from datetime import timedelta

    raw = os.environ.get(TIMEOUT_ENV, "")
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise LmlabError(f"{TIMEOUT_ENV} must be a positive number of seconds, not {raw!r}")
    return timedelta(seconds=seconds)


def lost_rank(error: BaseException) -> LmlabError | None:
    """The one-line error for a collective that failed because another rank died or went silent."""
    if not (isinstance(error, dist.DistError) or (isinstance(error, RuntimeError) and "gloo" in str(error).lower())):
        return None
    first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    return LmlabError(f"rank {rank()}: lost contact with another rank ({first}); stopped. Continue from the last "
                      f"complete checkpoint with --resume")


def shutdown() -> None:
    global _mesh
    _mesh = None
    if active():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, device: torch.device, kind: str = "ddp", tp: int = 0,
         offload: str = "") -> torch.nn.Module:
    """kind "ddp": DDP around the model (rank 0's weights are broadcast to all ranks here). No
    search for unused parameters (an extra autograd-graph walk per step): every parameter of the
    models here gets a gradient each step (MoE experts are slices of shared tensors).
    kind "fsdp": FSDP2 shards each block and the rest (embeddings, head) over the ranks, in place:
    the module's parameters become DTensors, so the optimizer must be made afterwards.
    kind "tp": every layer split over all ranks (tp.py), in place. kind "fsdp+tp": a (dp, tp)
    mesh, layers split over tp ranks and then sharded with FSDP2 over dp ranks. offload
    "optimizer" (FSDP kinds): the sharded weights, gradients and optimizer state live in host
    memory and the optimizer steps there (CPUOffloadPolicy); only gathered layers visit the device."""
    global _mesh
    config.check_field("train.parallel", kind)
    if world() == 1:
        return model
    tp = tp_size(kind, tp, world())
    if tp > 1:
        from torch.distributed.device_mesh import init_device_mesh

        from . import tp as tp_plan

        _mesh = init_device_mesh(device.type, (world() // tp, tp), mesh_dim_names=("dp", "tp"))
        tp_plan.parallelize(model, _mesh["tp"])
    if kind in ("fsdp", "fsdp+tp"):
        return fsdp_shard(model, device, _mesh["dp"] if _mesh is not None else None, offload)
    if tp > 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def fsdp_shard(model: torch.nn.Module, device: torch.device, mesh=None, offload: str = "") -> torch.nn.Module:
    """FSDP2 over `mesh` (None: every rank of the group), each block its own unit, in place."""
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

    # pinned host memory speeds up copies to a GPU; on a CPU there is nothing to pin for
    policy = CPUOffloadPolicy(pin_memory=device.type == "cuda") if offload else OffloadPolicy()
    for block in model.blocks:
        fully_shard(block, mesh=mesh, offload_policy=policy)
    fully_shard(model, mesh=mesh, offload_policy=policy)
    return model


def sharded(model: torch.nn.Module) -> bool:
    """The model's parameters are DTensors (FSDP, TP): collectives in forward, new optimizer."""
    if not active():
        return False
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def _grad_sync(model: torch.nn.Module, last: bool):
    from torch.distributed.fsdp import FSDPModule

    if isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(last)  # FSDP2: no reduce-scatter until the last
        return contextlib.nullcontext()
    if last or not hasattr(model, "no_sync"):
        return contextlib.nullcontext()
    return model.no_sync()


@contextlib.contextmanager
def micro_step(model: torch.nn.Module, last: bool):
    """Around one micro-batch's forward and backward: skip the gradient all-reduce on all but the
    last micro-step of gradient accumulation; under TP, the vocabulary-parallel loss."""
    with _grad_sync(model, last):
        if _mesh is None:
            yield
        else:
            from .tp import loss_context

            with loss_context():
                yield


def micro_index(micro: int) -> int:
    """Which of the step's micro-batches this rank draws: N data ranks with A micro-steps each see
    exactly the batches (seed, step, 0..A*N-1) that one process with grad_accum A*N sees."""
    return micro * dp_world() + dp_rank()


def step_seed(seed: int, step: int) -> int:
    """The torch seed a rank uses for one step's random draws (dropout): different on every data
    rank, so ranks do not drop the same units in lockstep, and a function of (seed, step, rank)
    only, so a resumed run draws exactly what the uninterrupted one did. The ranks of a tp group
    share it: their replicated activations (embeddings) must be dropped alike."""
    return (seed * 1_000_003 + step) * 4099 + dp_rank()


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


def eval_part(model: torch.nn.Module) -> tuple[int, int]:
    """(part, parts) of the evaluation batches this rank scores. A sharded model all-gathers in
    every forward, so all ranks must run the same forwards: each scores everything."""
    return (0, 1) if sharded(model) else (rank(), world())


def all_finite(params) -> bool:
    """Every parameter finite, on every rank (a sharded rank checks its own shard)."""
    params = list(params)
    ok = all(torch.isfinite(p.to_local() if hasattr(p, "to_local") else p).all() for p in params)
    if world() == 1:
        return ok
    t = torch.tensor([0.0 if ok else 1.0], device=params[0].device)
    dist.all_reduce(t)
    return t.item() == 0


def save_checkpoint(out, step: int, model: torch.nn.Module, optimizer, tokenizer, cfg, state: dict,
                    keep_last: int):
    """A collective: a sharded model (FSDP, TP) is written by every rank, each its own shards
    (checkpoint_dcp, nothing gathered); otherwise rank 0 writes the plain module's files."""
    from .. import checkpoint, checkpoint_dcp

    if sharded(model):
        checkpoint_dcp.save(out, step, model, optimizer, tokenizer, cfg, state, keep_last)
    elif is_main():
        checkpoint.save(out, step, model, optimizer, tokenizer, cfg, state, keep_last)


def load_sharded_optimizer(model: torch.nn.Module, optimizer, saved: dict) -> None:
    """Load a full, position-keyed optimizer state (as checkpoints hold it) into the optimizer of
    a sharded model; every rank passes the same full state and keeps its shard."""
    if not saved.get("state"):
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    names = {id(p): n for n, p in model.named_parameters()}
    fqn = [names[id(p)] for g in optimizer.param_groups for p in g["params"]]
    osd = {"state": {fqn[i]: v for i, v in saved["state"].items()},
           "param_groups": [{**g, "params": [fqn[i] for i in g["params"]]} for g in saved["param_groups"]]}
    set_optimizer_state_dict(model, optimizer, osd, options=StateDictOptions(full_state_dict=True))
    for group, was in zip(optimizer.param_groups, saved["param_groups"]):  # it turns tuples (betas) into lists
        group.update({k: v for k, v in was.items() if k != "params"})


def memory_accounting(model: torch.nn.Module, optimizer) -> dict:
    """Bytes this rank holds of weights, gradients and optimizer state, by device type (its own
    shards: DTensors count their local part)."""
    out: dict = {}

    def add(part: str, t) -> None:
        local = t.to_local() if hasattr(t, "to_local") else t
        where = out.setdefault(part, {})
        where[local.device.type] = where.get(local.device.type, 0) + local.numel() * local.element_size()

    for p in model.parameters():
        add("weights", p)
        if p.grad is not None:
            add("grads", p.grad)
    for state in optimizer.state.values():
        for v in state.values():
            if isinstance(v, torch.Tensor):
                add("optimizer", v)
    return out


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
