"""Tensor and sequence parallelism for lmlab's Transformer, applied from outside the model.

The plan (torchtitan's, on PyTorch's DTensor and `parallelize_module`):
- the residual stream between sublayers is sharded over the sequence (SequenceParallel norms);
- each mixer gathers its normed input (PrepareModuleInput, Shard(1) -> Replicate), attention and
  feed-forward layers split their first matrices by output (ColwiseParallel: q, k, v, up, gate)
  and their last by input (RowwiseParallel: o, down), which reduce-scatters back to sequence shards;
  attention thus runs on n_heads / tp local heads (and n_kv_heads / tp key/value heads);
- the input embedding is split over the vocabulary and its output all-reduced (the full sequence
  is needed for learned positions); the first block takes its sequence shard;
- the head (tied to the embedding or not) gives logits split over the vocabulary, and the loss is
  computed on them without gathering (loss_parallel), so no rank ever holds [B, T, V];
- modules with no split (MoE experts, learned positions) keep full replicated weights, stored as
  replicated DTensors so that the optimizer, clipping and FSDP see one kind of parameter.

Variants with no plan are refused by `check` before any rank starts work.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import LmlabError

SUPPORTED_FFNS = ("mlp", "swiglu", "moe")


def missing_plan(mcfg) -> str | None:
    """What of the architecture has no tensor-parallel plan, or None."""
    letters = set("".join(mcfg.pattern.split()))
    if letters - {"A", "F"}:
        return f"model.pattern letters {''.join(sorted(letters - {'A', 'F'}))} (only A and F)"
    if mcfg.ffn not in SUPPORTED_FFNS:
        return f"model.ffn={mcfg.ffn!r} (only {', '.join(SUPPORTED_FFNS)})"
    if mcfg.meta_tokens:
        return "model.meta_tokens"
    return None


def check(mcfg, tp: int) -> None:
    """One-line error for a model that has no tensor-parallel plan over `tp` ranks."""
    missing = missing_plan(mcfg)
    if missing:
        raise LmlabError(f"tensor parallelism has no plan for {missing}; use train.parallel=ddp or fsdp")
    kv = mcfg.n_kv_heads or mcfg.n_heads
    for name, value in (("model.n_heads", mcfg.n_heads), ("model.n_kv_heads", kv)):
        if value % tp:
            raise LmlabError(f"{name}={value} is not divisible by the tensor-parallel size {tp}")
    if mcfg.d_ff and mcfg.ffn != "moe" and mcfg.d_ff % tp:
        raise LmlabError(f"model.d_ff={mcfg.d_ff} is not divisible by the tensor-parallel size {tp}")
    if mcfg.context % tp:
        raise LmlabError(f"model.context={mcfg.context} is not divisible by the tensor-parallel size {tp} "
                         f"(the sequence is split over the ranks)")


def _vocab_embedding(mesh):
    """The input embedding split over the vocabulary: each rank looks up its rows, the partial
    results are summed (all-reduce), and every rank gets the full [B, T, d] as a plain tensor."""
    from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_module, distribute_tensor

    def partition(name, module, mesh):
        for pname, p in list(module.named_parameters(recurse=False)):
            module.register_parameter(pname, nn.Parameter(distribute_tensor(p, mesh, [Shard(0)]),
                                                          requires_grad=p.requires_grad))

    def inputs(module, args, mesh):
        return tuple(DTensor.from_local(a, mesh, [Replicate()], run_check=False) for a in args)

    def outputs(module, out, mesh):
        return out.redistribute(placements=[Replicate()]).to_local()

    return partition, inputs, outputs


def _swap_params(module: nn.Module, to_local: bool) -> None:
    """Replace a module's DTensor parameters by their local tensors for one forward (and back).
    Autograd flows from the local tensors to the DTensor parameters through `to_local`."""
    for m in module.modules():
        if to_local:
            saved = {n: p for n, p in m._parameters.items() if p is not None and hasattr(p, "to_local")}
            m.__dict__["_tp_saved"] = saved
            for n, p in saved.items():
                m._parameters[n] = p.to_local()
        else:
            m._parameters.update(m.__dict__.pop("_tp_saved", {}))


def _replicated_local(mesh, out_shard: int | None):
    """A module with no split (MoE routing has data-dependent shapes that DTensor cannot
    propagate): weights stored as replicated DTensors, forward run on full local tensors, output
    handed on as the sequence shard (`out_shard`) or whole."""
    from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor

    def partition(name, module, mesh):
        for pname, p in list(module.named_parameters(recurse=False)):
            module.register_parameter(pname, nn.Parameter(distribute_tensor(p, mesh, [Replicate()]),
                                                          requires_grad=p.requires_grad))

    def inputs(module, args, mesh):
        _swap_params(module, True)
        return tuple(a.redistribute(placements=[Replicate()]).to_local() if isinstance(a, DTensor) else a
                     for a in args)

    def outputs(module, out, mesh):
        _swap_params(module, False)
        if out_shard is None:
            return out
        return DTensor.from_local(out, mesh, [Replicate()], run_check=False).redistribute(
            placements=[Shard(out_shard)]).to_local()

    return partition, inputs, outputs


def _distribute(module, mesh, fns) -> None:
    from torch.distributed.tensor import distribute_module

    partition, inputs, outputs = fns
    # distribute_module calls partition_fn on every submodule; ours act on the top one only
    distribute_module(module, mesh, lambda name, m, mesh: partition(name, m, mesh) if m is module else None,
                      inputs, outputs)


def _mixer_plan(prefix: str, mixer: nn.Module) -> dict:
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import ColwiseParallel, PrepareModuleInput, RowwiseParallel

    from ..model.attention import CausalSelfAttention
    from ..model.ffn import MLP, SwiGLU

    gather = PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),))
    scatter = RowwiseParallel(output_layouts=Shard(1))
    if isinstance(mixer, CausalSelfAttention):
        return {prefix: gather, f"{prefix}.q_proj": ColwiseParallel(), f"{prefix}.k_proj": ColwiseParallel(),
                f"{prefix}.v_proj": ColwiseParallel(), f"{prefix}.o_proj": scatter}
    if isinstance(mixer, SwiGLU):
        return {prefix: gather, f"{prefix}.gate": ColwiseParallel(), f"{prefix}.up": ColwiseParallel(),
                f"{prefix}.down": scatter}
    if isinstance(mixer, MLP):
        return {prefix: gather, f"{prefix}.up": ColwiseParallel(), f"{prefix}.down": scatter}
    return {}


def plan(model: nn.Module) -> tuple[dict, list]:
    """(the parallelize_module plan, [(module kept whole, sequence dim of its output or None)])."""
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import (ColwiseParallel, PrepareModuleInput, PrepareModuleOutput,
                                                   SequenceParallel)

    styles = {"blocks.0": PrepareModuleInput(input_layouts=(Replicate(),), desired_input_layouts=(Shard(1),),
                                             use_local_output=True),
              "final_norm": SequenceParallel(),
              "hook_final": PrepareModuleOutput(output_layouts=Shard(1), desired_output_layouts=Replicate(),
                                                use_local_output=False)}
    if model.lm_head is not None:
        styles["lm_head"] = ColwiseParallel(output_layouts=Shard(-1), use_local_output=False)
    whole = []
    for i, block in enumerate(model.blocks):
        for key, sub in block.sublayers.items():
            prefix = f"blocks.{i}.sublayers.{key}"
            styles[f"{prefix}.norm"] = SequenceParallel()
            mixer_plan = _mixer_plan(f"{prefix}.mixer", sub.mixer)
            if mixer_plan:
                styles.update(mixer_plan)
            else:
                whole.append((sub.mixer, 1))
    if model.pos_embed is not None:
        whole.append((model.pos_embed, None))
    return styles, whole


def split_parameters(model: nn.Module) -> set[str]:
    """Names of the parameters the plan splits over the tp ranks (the others are replicated)."""
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel

    styles, _ = plan(model)
    split = {f"{key}.{n}" for key, style in styles.items() if isinstance(style, (ColwiseParallel, RowwiseParallel))
             for n, _ in model.get_submodule(key).named_parameters()}
    return split | {f"embed.{n}" for n, _ in model.embed.named_parameters()}


def parallelize(model: nn.Module, mesh) -> nn.Module:
    """Apply the plan to `model` in place over the 1-D device mesh `mesh` (the tp dimension)."""
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor.parallel import parallelize_module

    check(model.cfg, mesh.size())
    styles, whole = plan(model)
    parallelize_module(model, mesh, styles)
    if any(True for _ in model.embed.parameters()):
        _distribute(model.embed, mesh, _vocab_embedding(mesh))
    for module, shard in whole:
        _distribute(module, mesh, _replicated_local(mesh, shard))
    plain = [n for n, p in model.named_parameters() if not isinstance(p, DTensor)]
    if plain:  # the optimizer's fused kernels refuse a mix of DTensors and tensors
        raise RuntimeError(f"tensor-parallel plan left parameters unsharded: {plain[:3]}")
    model.register_forward_hook(_local_outputs)
    return model


def _local_outputs(module, args, output):
    """Without targets (evaluation, generation) the caller gets full logits, as from one process;
    with targets the loss (replicated) as a plain tensor, the logits left split over the vocabulary."""
    logits, loss = output
    if loss is None:
        return logits.full_tensor() if hasattr(logits, "full_tensor") else logits, None
    return logits, loss.full_tensor() if hasattr(loss, "full_tensor") else loss


def loss_context():
    """Forward and backward of a tensor-parallel model's loss run under this: the cross-entropy
    over logits split by vocabulary is DTensor's own (loss_parallel), never gathered."""
    from torch.distributed.tensor.parallel import loss_parallel

    return loss_parallel()
