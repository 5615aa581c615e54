"""Pre-LN -> Pre-RMSNorm / Pre-CRMSNorm, exactly (Jiang et al. 2023).

A Pre-LN model only ever normalises the residual stream, so the stream's mean is invisible to the
function. Making the stream zero-mean (centre every vector written to it) turns every LayerNorm into
an RMSNorm; folding each norm's gain into the linears that read it makes the norms parameter-free.

Steps, all on a copy in float64:
1. untie a tied head (it keeps the original embedding; the input embedding gets centred);
2. fold each norm's gain into its readers: W <- W diag(g) (the final gain into the head);
3. centre the token and learned-position embeddings (rows minus their mean) and every
   residual-writing projection (W - mean over output rows, b - mean(b));
4. crmsnorm: keep d-1 rows of each writer (the last is minus the sum of the others).
Readers are found by running the model once and noting which linears receive the norm's output;
a mixer may instead define `fold_input_gain_(g)` / `centre_output_()` (structured FFNs, MoE).
"""
from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from .block import Residual

TARGETS = ("rmsnorm", "crmsnorm")


class ConversionError(ValueError):
    pass


def _readers(model: nn.Module, norm: nn.Module, mixer: nn.Module, probe: torch.Tensor) -> list[nn.Linear]:
    """Linears inside `mixer` whose input is (a view of) the output of `norm` in a forward pass."""
    seen: dict = {}
    found: list[nn.Linear] = []

    def on_norm(mod, inp, out):
        seen["out"] = out

    def on_linear(mod, args):
        out = seen.get("out")
        a = args[0]
        if out is not None and a.data_ptr() == out.data_ptr() and a.numel() == out.numel() and mod not in found:
            found.append(mod)

    handles = [norm.register_forward_hook(on_norm)]
    handles += [m.register_forward_pre_hook(on_linear) for m in mixer.modules() if isinstance(m, nn.Linear)]
    try:
        with torch.no_grad():
            model(probe)
    finally:
        for h in handles:
            h.remove()
    return found


@torch.no_grad()
def _fold_gain(model, residual: Residual, probe) -> None:
    # fold_input_gain_, centre_output_ and residual_out: protocol.ModuleProtocol
    norm, mixer = residual.norm, residual.mixer
    if norm.weight is None:
        return
    g = norm.weight.detach().clone()
    if hasattr(mixer, "fold_input_gain_"):
        mixer.fold_input_gain_(g)
    else:
        readers = _readers(model, norm, mixer, probe)
        if not readers:
            raise ConversionError(f"cannot find the linear layers that read the norm of {type(mixer).__name__}")
        for lin in readers:
            lin.weight.mul_(g.to(lin.weight.dtype)[None, :])
    norm.weight.fill_(1.0)


@torch.no_grad()
def _centre_writers(module: nn.Module, target: str) -> None:
    """Centre every residual writer below `module` (a module with `centre_output_` speaks for its subtree)."""
    for m in module.children():
        if hasattr(m, "centre_output_"):
            if not m.centre_output_() and target != "crmsnorm":  # crmsnorm centres such outputs itself
                raise ConversionError(f"{type(m).__name__} cannot centre its output in place; convert to crmsnorm")
        elif isinstance(m, nn.Linear) and getattr(m, "residual_out", False):
            m.weight.sub_(m.weight.mean(0, keepdim=True))
            if m.bias is not None:
                m.bias.sub_(m.bias.mean())
        else:
            _centre_writers(m, target)


def convert_norm(model, target: str):
    """A new Transformer computing the same logits as the Pre-LN `model`, with `target` norms."""
    from .transformer import Transformer

    cfg = model.cfg
    if target not in TARGETS:
        raise ConversionError(f"unknown target norm {target!r}; valid: {', '.join(TARGETS)}")
    if cfg.norm != "layernorm":
        raise ConversionError(f"only a Pre-LN model (model.norm=layernorm) converts exactly; this one has {cfg.norm}")
    if cfg.bias:
        raise ConversionError("model.bias=true is not supported: the LM head has no bias to absorb the final norm's bias")
    if cfg.meta_tokens:
        raise ConversionError("models with meta-tokens are not supported by convert")
    for m in model.modules():  # a training forward's aux_loss (protocol.py) holds a graph that cannot be copied
        if getattr(m, "aux_loss", None) is not None:
            m.aux_loss = None
    src = copy.deepcopy(model).double().eval()
    V = cfg.vocab_size
    probe = torch.randint(0, V, (1, min(cfg.context, 16)))
    was_tied = src.tied
    head = (src.embed.weight if was_tied else src.lm_head.weight).detach().clone()

    # 2. gains into readers (sublayers first: the probe needs the original embedding and head)
    residuals = [m for m in src.modules() if isinstance(m, Residual)]
    for r in residuals:
        _fold_gain(src, r, probe)
    if src.final_norm.weight is not None:
        head = head * src.final_norm.weight.detach()[None, :]
    # 3. centre what writes to the stream
    with torch.no_grad():
        src.embed.weight.sub_(src.embed.weight.mean(1, keepdim=True))
        if src.pos_embed is not None:
            src.pos_embed.weight.sub_(src.pos_embed.weight.mean(1, keepdim=True))
    _centre_writers(src, target)

    new_cfg = dataclasses.replace(cfg, norm=target, norm_affine=False,
                                  tie_embeddings=cfg.tie_embeddings and not was_tied)
    new = Transformer(new_cfg)  # its tensors, the frozen embedding included, all come from src below
    state = src.state_dict()
    if "lm_head.weight" in new.state_dict():
        state["lm_head.weight"] = head
    out = {}
    for k, v in new.state_dict().items():
        if k not in state:
            raise ConversionError(f"converted model has a tensor {k} the source lacks")
        t = state[k]
        if t.shape != v.shape:  # 4. crmsnorm: writers keep d-1 outputs (one dimension one shorter)
            diff = [i for i, (a, b) in enumerate(zip(t.shape, v.shape)) if a != b]
            if t.dim() != v.dim() or len(diff) != 1 or t.shape[diff[0]] != v.shape[diff[0]] + 1:
                raise ConversionError(f"{k}: shape {tuple(t.shape)} cannot become {tuple(v.shape)}")
            t = t.narrow(diff[0], 0, v.shape[diff[0]])
        out[k] = t.to(v.dtype)
    new.load_state_dict(out, strict=True)
    return new.eval()


@torch.no_grad()
def max_logit_diff(a, b, idx: torch.Tensor) -> float:
    a.eval(), b.eval()
    la, _ = a(idx)
    lb, _ = b(idx)
    return (la - lb).abs().max().item()
