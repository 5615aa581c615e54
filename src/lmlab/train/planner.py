"""A parallelism planner: which (data, tensor, pipeline, sharding, offload, recompute) layout fits
N devices of M GB, and how fast each is expected to be. Pure arithmetic on a model's shape.

Model of a training step (every assumption is stated in docs/parallel.md, "Planner"):
- memory per device: fp32 master weights (4 B/param), fp32 gradients (4 B), AdamW moments (8 B);
  tensor parallelism divides the parameters its plan splits (tp.py), pipeline stages divide the
  layers, FSDP divides what is left by the data ranks and adds the gathered working set; FSDP2
  keeps full (unsharded) gradients while accumulation has syncing off (lmlab's grad_accum > 1);
  offload (FSDP2 CPUOffloadPolicy) moves the sharded weights, gradients and optimizer state to host
  memory. Activations per layer and micro-batch sequence: 34 * s * h bytes at 16-bit activations
  (Korthikanti et al. 2022, SDPA: no s^2 scores), divided by tp (sequence parallelism); with full
  recomputation 2 * s * h per layer plus one layer's working set; logits 12 B per (token, vocab).
- time per step: compute = training FLOPs (3x forward; 4x with recomputation) / devices / peak;
  pipeline bubble (pp - 1) / micro-batches; collectives on a ring: all-reduce 2(n-1)/n * bytes / bw,
  all-gather and reduce-scatter (n-1)/n * bytes / bw, plus a latency per ring step; TP: an
  all-gather and a reduce-scatter of the [b, s, h] activations around every sublayer, forward and
  backward; offload: host-device copies and the optimizer step at host memory bandwidth. No
  overlap of communication and compute is assumed (`step_s`); `step_s_overlap` hides the data-
  parallel collectives behind compute (the best case).
"""
from __future__ import annotations

import dataclasses
import itertools

GB = 1e9
MASTER, GRAD, ADAM = 4, 4, 8            # bytes per parameter: fp32 weights, fp32 grads, AdamW m and v
ACT_PER_LAYER = 34                      # bytes per (token, d_model) of one layer at 16-bit activations
LOGIT_BYTES = 12                        # per (token, vocab): 16-bit logits, fp32 copy, fp32 gradient
ADAM_HOST_BYTES = 28                    # per parameter touched by a host AdamW step (read p g m v, write p m v)


@dataclasses.dataclass
class Shape:
    """What the formulas need to know about a model and its batch."""
    params: int                  # all trainable parameters
    tp_split: int                # of those, the ones tensor parallelism splits over tp ranks
    block_params: int            # parameters of the largest block (FSDP's unit)
    n_layers: int
    sublayers: int               # mixers + FFNs over all layers (each has a TP gather/scatter)
    d_model: int
    vocab: int
    context: int
    n_heads: int
    n_kv_heads: int
    flops_per_token: float       # training (forward + backward) matmul FLOPs per token
    batch: int                   # sequences per data rank per micro-step (train.batch_size)
    grad_accum: int
    act_bytes: int = 2           # 2 under bf16 autocast, 4 in fp32
    tp_ok: bool = True           # the architecture has a TP plan (tp.check)


@dataclasses.dataclass
class Hardware:
    devices: int
    memory_gb: float
    peak_tflops: float           # achievable matmul rate per device
    inter_gbps: float = 100.0    # Gbit/s per device between nodes (or between processes)
    intra_gbps: float = 0.0      # Gbit/s within a node (0 = inter_gbps)
    node_size: int = 8           # devices per node: TP stays inside one
    latency_us: float = 10.0     # per ring step of a collective
    host_gbps: float = 200.0     # Gbit/s of host-device copies (PCIe) for offload
    host_mem_gbps: float = 400.0  # Gbit/s of host memory, for the offloaded optimizer step


@dataclasses.dataclass(frozen=True)
class Layout:
    dp: int
    tp: int
    pp: int = 1
    fsdp: bool = False
    offload: bool = False
    recompute: bool = False

    @property
    def name(self) -> str:
        parts = [f"dp{self.dp}", f"tp{self.tp}"] + ([f"pp{self.pp}"] if self.pp > 1 else [])
        parts += ["fsdp"] if self.fsdp else ["ddp"] if self.dp > 1 else []
        return " ".join(parts + (["offload"] if self.offload else []) + (["recompute"] if self.recompute else []))

    @property
    def lmlab_parallel(self) -> str | None:
        """The train.parallel value that runs this layout, or None where lmlab has none (pipeline
        stages, recomputation, DDP x TP, offload in one process)."""
        if self.pp > 1 or self.recompute or (self.tp > 1 and self.dp > 1 and not self.fsdp):
            return None
        if self.offload and self.dp * self.tp == 1:
            return None  # FSDP2's offload needs a process group of several ranks
        if self.tp > 1:
            return "fsdp+tp" if self.fsdp else "tp"
        return "fsdp" if self.fsdp else "ddp"


# collectives on a ring of n ranks; `nbytes` is the full (gathered / reduced) tensor --------------
def all_reduce_s(nbytes: float, n: int, gbps: float, latency_us: float = 0.0) -> float:
    if n <= 1:
        return 0.0
    return 2 * (n - 1) / n * nbytes / (gbps * 1e9 / 8) + 2 * (n - 1) * latency_us * 1e-6


def all_gather_s(nbytes: float, n: int, gbps: float, latency_us: float = 0.0) -> float:
    if n <= 1:
        return 0.0
    return (n - 1) / n * nbytes / (gbps * 1e9 / 8) + (n - 1) * latency_us * 1e-6


reduce_scatter_s = all_gather_s  # the same traffic, the other way round


def local_params(shape: Shape, lay: Layout) -> float:
    """Parameters one device holds before FSDP sharding (TP split, pipeline stage)."""
    return (shape.tp_split / lay.tp + (shape.params - shape.tp_split)) / lay.pp


def memory(shape: Shape, lay: Layout) -> dict:
    """Bytes per device, by part (and host bytes per device under offload)."""
    p = local_params(shape, lay)
    shard = lay.dp if lay.fsdp else 1
    weights, grads, optim = MASTER * p / shard, GRAD * p / shard, ADAM * p / shard
    if lay.fsdp and shape.grad_accum > 1:
        grads = GRAD * p  # FSDP2 accumulates unsharded gradients while sync is off
    working = 0.0
    if lay.fsdp:  # a gathered block, the next one prefetched, and its unsharded gradient
        working = 3 * MASTER * shape.block_params / lay.tp
    host = 0.0
    if lay.offload:
        host = weights + optim + (GRAD * p / shard)
        weights, optim = 0.0, 0.0
        if shape.grad_accum == 1:
            grads = 0.0
    tokens = shape.batch * shape.context
    layers = shape.n_layers / lay.pp
    layer_act = ACT_PER_LAYER * tokens * shape.d_model * shape.act_bytes / 2 / lay.tp
    if lay.recompute:
        acts = layers * 2 * tokens * shape.d_model * shape.act_bytes / 2 / lay.tp + layer_act
    else:
        acts = layers * layer_act
    if lay.pp > 1:  # 1F1B: the first stage holds pp micro-batches in flight
        acts *= min(lay.pp, shape.grad_accum)
    logits = LOGIT_BYTES * tokens * shape.vocab / lay.tp
    parts = {"weights": weights, "grads": grads, "optimizer": optim, "fsdp_working": working,
             "activations": acts, "logits": logits}
    parts["total"] = sum(parts.values())
    parts["host"] = host
    return parts


def _bandwidths(lay: Layout, hw: Hardware) -> tuple[float, float]:
    """(tp group, data group) Gbit/s: a group inside one node gets the node's links."""
    intra = hw.intra_gbps or hw.inter_gbps
    tp_bw = intra if lay.tp <= hw.node_size else hw.inter_gbps
    dp_bw = intra if lay.tp * lay.dp <= hw.node_size else hw.inter_gbps
    return tp_bw, dp_bw


def step_time(shape: Shape, lay: Layout, hw: Hardware) -> dict:
    """Seconds per optimizer step, by part."""
    tokens_step = shape.batch * shape.grad_accum * shape.context * lay.dp
    flops = shape.flops_per_token * tokens_step * (4 / 3 if lay.recompute else 1.0)
    compute = flops / (lay.dp * lay.tp * lay.pp) / (hw.peak_tflops * 1e12)
    bubble = compute * (lay.pp - 1) / shape.grad_accum if lay.pp > 1 else 0.0
    tp_bw, dp_bw = _bandwidths(lay, hw)
    p = local_params(shape, lay)
    lat = hw.latency_us
    if lay.fsdp:
        gathers = 2 + (1 if lay.recompute else 0)  # forward, backward (and the recomputed forward)
        data = (gathers * shape.grad_accum * all_gather_s(MASTER * p, lay.dp, dp_bw, lat)
                + reduce_scatter_s(GRAD * p, lay.dp, dp_bw, lat))
    else:
        data = all_reduce_s(GRAD * p, lay.dp, dp_bw, lat)
    act = shape.batch * shape.context * shape.d_model * shape.act_bytes
    per_sub = (4 + (2 if lay.recompute else 0)) * all_gather_s(act, lay.tp, tp_bw, lat)
    ends = all_reduce_s(act, lay.tp, tp_bw, lat) + 3 * all_gather_s(act, lay.tp, tp_bw, lat)  # embedding, head
    tensor = shape.grad_accum * (shape.sublayers / lay.pp * per_sub + ends) if lay.tp > 1 else 0.0
    pipe = 0.0
    if lay.pp > 1:
        pipe = shape.grad_accum * 2 * act / (hw.inter_gbps * 1e9 / 8)
    offload = 0.0
    if lay.offload:
        shard = p / lay.dp
        copies = (2 * shape.grad_accum * MASTER + GRAD) * shard / (hw.host_gbps * 1e9 / 8)
        offload = copies + ADAM_HOST_BYTES * shard / (hw.host_mem_gbps * 1e9 / 8)
    parts = {"compute": compute, "bubble": bubble, "data_comm": data, "tp_comm": tensor, "pp_comm": pipe,
             "offload": offload}
    parts["step_s"] = sum(parts.values())
    parts["step_s_overlap"] = parts["step_s"] - data + max(0.0, data - compute)
    parts["tokens_per_step"] = tokens_step
    parts["tokens_per_s"] = tokens_step / parts["step_s"]
    return parts


def achieved_tflops(flops_per_token: float, tokens_per_s: float) -> float:
    """The compute rate a measured run achieved: training FLOPs per token x tokens per second. As
    `peak_tflops` it makes step_time's compute term reproduce that run's speed exactly."""
    return flops_per_token * tokens_per_s / 1e12


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def layouts(shape: Shape, hw: Hardware) -> tuple[list[Layout], list[dict]]:
    """Every layout of hw.devices, and the ones refused with why."""
    kept, refused = [], []
    for tp, pp in itertools.product(divisors(hw.devices), divisors(hw.devices)):
        if hw.devices % (tp * pp):
            continue
        dp = hw.devices // (tp * pp)
        why = None
        if tp > 1 and not shape.tp_ok:
            why = "the architecture has no tensor-parallel plan"
        elif tp > 1 and (shape.n_heads % tp or shape.n_kv_heads % tp):
            why = f"heads ({shape.n_heads} query, {shape.n_kv_heads} key/value) do not split over tp={tp}"
        elif tp > hw.node_size:
            why = f"tp={tp} would cross nodes of {hw.node_size}"
        elif shape.n_layers % pp:
            why = f"{shape.n_layers} layers do not split into pp={pp} stages"
        if why:
            refused.append({"layout": f"dp{dp} tp{tp} pp{pp}", "why": why})
            continue
        for fsdp, offload, recompute in itertools.product((False, True), (False, True), (False, True)):
            if offload and not fsdp:
                continue  # offload is FSDP2's CPUOffloadPolicy
            if fsdp and dp == 1 and not offload:
                continue  # FSDP over one data rank shards nothing
            kept.append(Layout(dp, tp, pp, fsdp, offload, recompute))
    return kept, refused


def _reasons(shape: Shape, lay: Layout, mem: dict, t: dict, hw: Hardware) -> list[str]:
    cap = hw.memory_gb * GB
    big = max(("weights", "grads", "optimizer", "fsdp_working", "activations", "logits"), key=lambda k: mem[k])
    out = [f"{'fits' if mem['total'] <= cap else 'does not fit'}: {mem['total'] / GB:.2f} of {hw.memory_gb:g} GB "
           f"(largest part: {big} {mem[big] / GB:.2f} GB)"]
    slow = max(("data_comm", "tp_comm", "pp_comm", "bubble", "offload"), key=lambda k: t[k])
    out.append(f"compute {100 * t['compute'] / t['step_s']:.0f}% of the step"
               + (f"; most of the rest: {slow} {1e3 * t[slow]:.1f} ms" if t[slow] > 0 else ""))
    if lay.fsdp and shape.grad_accum > 1:
        out.append("FSDP keeps full gradients during accumulation (grad_accum > 1)")
    if lay.pp > 1 and shape.grad_accum < 4 * lay.pp:
        out.append(f"pipeline bubble {100 * (lay.pp - 1) / shape.grad_accum:.0f}% of compute "
                   f"(grad_accum {shape.grad_accum} micro-batches for {lay.pp} stages)")
    if lay.lmlab_parallel is None:
        out.append("on paper only: lmlab has no " + ("pipeline stages" if lay.pp > 1 else
                   "activation recomputation" if lay.recompute else
                   "offload in one process" if lay.offload else "DDP x TP (use fsdp+tp)"))
    return out


def with_global_batch(shape: Shape, lay: Layout, tokens: int) -> Shape | None:
    """The shape with micro-batch and accumulation that give `tokens` per step over lay.dp data
    ranks (micro-batch at most shape.batch sequences), or None if dp exceeds the batch's sequences."""
    seqs = tokens // shape.context
    if seqs < lay.dp:
        return None
    per_rank = seqs // lay.dp
    accum = -(-per_rank // shape.batch)
    return dataclasses.replace(shape, batch=-(-per_rank // accum), grad_accum=accum)


def plan(shape: Shape, hw: Hardware, global_tokens: int = 0) -> dict:
    """Every layout with its memory, time and reasons; those that fit first, fastest first.
    With `global_tokens`, every layout trains on about that many tokens per step (else on
    shape.batch x shape.grad_accum sequences per data rank, as lmlab's train.batch_size is)."""
    kept, refused = layouts(shape, hw)
    rows = []
    base = shape
    for lay in kept:
        shape = with_global_batch(base, lay, global_tokens) if global_tokens else base
        if shape is None:
            refused.append({"layout": lay.name, "why": f"{lay.dp} data ranks exceed the {global_tokens // base.context} "
                                                       f"sequences of the global batch"})
            continue
        mem, t = memory(shape, lay), step_time(shape, lay, hw)
        rows.append({"layout": lay.name, "dp": lay.dp, "tp": lay.tp, "pp": lay.pp, "fsdp": lay.fsdp,
                     "offload": lay.offload, "recompute": lay.recompute, "lmlab_parallel": lay.lmlab_parallel,
                     "fits": mem["total"] <= hw.memory_gb * GB, "memory_gb": {k: v / GB for k, v in mem.items()},
                     "time_s": {k: v for k, v in t.items() if k not in ("tokens_per_s", "tokens_per_step")},
                     "micro_batch": shape.batch, "grad_accum": shape.grad_accum,
                     "tokens_per_step": t["tokens_per_step"], "tokens_per_s": t["tokens_per_s"],
                     "mfu": shape.flops_per_token * t["tokens_per_s"] / (hw.devices * hw.peak_tflops * 1e12),
                     "reasons": _reasons(shape, lay, mem, t, hw)})
    rows.sort(key=lambda r: (not r["fits"], -r["tokens_per_s"], r["memory_gb"]["total"]))
    return {"plans": rows, "refused": refused, "shape": dataclasses.asdict(base),
            "hardware": dataclasses.asdict(hw)}


def shape_of(cfg) -> Shape:
    """A config's Shape, from the model built on the meta device (no memory, no data):
    model.vocab_size must be set."""
    import torch

    from ..model import Transformer
    from . import tp

    with torch.device("meta"):
        model = Transformer(cfg.model)
    split = tp.split_parameters(model) if tp.missing_plan(cfg.model) is None else set()
    params = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    return Shape(params=sum(params.values()), tp_split=sum(v for n, v in params.items() if n in split),
                 block_params=max(sum(p.numel() for p in b.parameters()) for b in model.blocks),
                 n_layers=cfg.model.n_layers, sublayers=sum(len(b.sublayers) for b in model.blocks),
                 d_model=cfg.model.d_model, vocab=cfg.model.vocab_size, context=cfg.model.context,
                 n_heads=cfg.model.n_heads, n_kv_heads=cfg.model.n_kv_heads or cfg.model.n_heads,
                 flops_per_token=model.flops_per_token(cfg.model.context)["train"], batch=cfg.train.batch_size,
                 grad_accum=cfg.train.grad_accum, act_bytes=4 if cfg.train.dtype == "float32" else 2,
                 tp_ok=tp.missing_plan(cfg.model) is None)
