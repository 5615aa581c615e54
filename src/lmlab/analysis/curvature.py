"""K-FAC curvature of linear layers, and editing weights by it.

For a linear layer s = W a, K-FAC approximates the Fisher block of W by A ⊗ G with A = E[a aᵀ]
(layer inputs) and G = E[g gᵀ] (gradients of the loss with respect to the outputs s, one per
token). In the eigenbases A = U_A diag(l) U_Aᵀ, G = U_G diag(m) U_Gᵀ, the weight component
C[i, j] = (U_Gᵀ W U_A)[i, j] has curvature m_i · l_j. Directions of high curvature are shared by
many examples; memorised one-offs live in the flat tail, so keeping only the components that hold
a fraction `rho` of the total curvature mass removes recitation while sparing general ability.

The gradients use labels sampled from the model's own next-token distribution, not the corpus'
tokens: E_{y~p_model}[g gᵀ] is the true Fisher (a curvature of the model alone, positive
semi-definite, the expected Hessian of the log-likelihood); the corpus' own labels would give the
"empirical Fisher", which measures how the model fits that text rather than how the loss bends.
Biases are left alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LmlabError

KINDS = ("ffn", "attn")


def target_linears(model: nn.Module, kinds=("ffn",)) -> dict[str, nn.Linear]:
    """{name: nn.Linear} of the feed-forward (and/or attention) projections of an lmlab model."""
    from ..model.attention import CausalSelfAttention
    from ..model.ffn import MLP, SwiGLU

    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise LmlabError(f"unknown layer kind(s) {bad or kinds!r}; valid: {', '.join(KINDS)}")
    owners = {"ffn": (MLP, SwiGLU), "attn": (CausalSelfAttention,)}
    wanted = tuple(c for k in kinds for c in owners[k])
    found = {}
    for name, module in model.named_modules():
        if isinstance(module, wanted):
            for child_name, child in module.named_children():
                if isinstance(child, nn.Linear):
                    found[f"{name}.{child_name}"] = child
    if not found:
        raise LmlabError(f"the model has no {'/'.join(kinds)} linear layers (model.ffn mlp or swiglu needed)")
    return found


@dataclass
class Factors:
    """K-FAC factors of one linear layer: A (in x in), G (out x out), from `tokens` positions."""
    A: torch.Tensor
    G: torch.Tensor
    tokens: int

    def eig(self):
        """(l, U_A, m, U_G): eigenvalues (clipped at 0) and eigenvectors of A and G, in float64."""
        l, ua = torch.linalg.eigh(self.A.double())
        m, ug = torch.linalg.eigh(self.G.double())
        return l.clamp_min(0), ua, m.clamp_min(0), ug


def collect_factors(model, layers: dict[str, nn.Linear], batches, seed: int = 0) -> dict[str, Factors]:
    """A and G of each layer over `batches` (iterable of id tensors [B, T]), labels sampled from the model.

    The loss is summed over positions, so each position's output gradient is its own (not divided
    by the batch size); the factors are then averaged over positions.
    """
    device = next(model.parameters()).device
    sums = {n: [torch.zeros(m.in_features, m.in_features, dtype=torch.float64, device=device),
                torch.zeros(m.out_features, m.out_features, dtype=torch.float64, device=device)]
            for n, m in layers.items()}
    counts = {n: 0 for n in layers}

    def forward_hook(name):
        def hook(module, inputs, output):
            a = inputs[0].detach().reshape(-1, module.in_features).double()
            sums[name][0] += a.T @ a
            counts[name] += a.shape[0]
        return hook

    def backward_hook(name):
        def hook(module, grad_input, grad_output):
            g = grad_output[0].detach().reshape(-1, module.out_features).double()
            sums[name][1] += g.T @ g
        return hook

    handles = []
    for n, m in layers.items():
        handles.append(m.register_forward_hook(forward_hook(n)))
        handles.append(m.register_full_backward_hook(backward_hook(n)))
    gen = torch.Generator(device="cpu").manual_seed(seed)
    was_training = model.training
    model.eval()  # no dropout: the curvature of the model that is used
    try:
        for x in batches:
            model.zero_grad(set_to_none=True)
            logits, _ = model(x.to(device))
            flat = logits.float().flatten(0, 1)
            with torch.no_grad():
                y = torch.multinomial(F.softmax(flat, -1).cpu(), 1, generator=gen).squeeze(1).to(device)
            F.cross_entropy(flat, y, reduction="sum").backward()
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    out = {}
    for n in layers:
        if counts[n] == 0:
            raise LmlabError("no tokens to collect curvature on")
        out[n] = Factors(sums[n][0] / counts[n], sums[n][1] / counts[n], counts[n])
    return out


def curvature_mask(l: torch.Tensor, m: torch.Tensor, rho: float) -> torch.Tensor:
    """Boolean [out, in] mask keeping components (i, j) by curvature m_i·l_j, largest first,
    until they hold at least `rho` of the total. rho = 1 keeps all, zero-curvature ones included."""
    curv = torch.outer(m, l).flatten()
    order = torch.argsort(curv, descending=True)
    total = curv.sum()
    keep = torch.zeros_like(curv, dtype=torch.bool)
    if total <= 0 or rho >= 1:
        keep[:] = True
        return keep.view(len(m), len(l))
    cum = torch.cumsum(curv[order], 0) / total
    n_keep = int(torch.searchsorted(cum, torch.tensor(rho, dtype=cum.dtype) - 1e-12).item()) + 1
    keep[order[:min(n_keep, curv.numel())]] = True
    return keep.view(len(m), len(l))


def random_mask_like(mask: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A mask with as many kept components as `mask`, at random places (the control)."""
    keep = torch.zeros(mask.numel(), dtype=torch.bool)
    keep[torch.randperm(mask.numel(), generator=gen)[: int(mask.sum())]] = True
    return keep.view(mask.shape)


def masked_weight(W: torch.Tensor, ua: torch.Tensor, ug: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """W' = U_G (C ⊙ mask) U_Aᵀ with C = U_Gᵀ W U_A, in W's dtype."""
    C = ug.T @ W.double() @ ua
    return (ug @ (C * mask.to(C.dtype)) @ ua.T).to(W.dtype)


@torch.no_grad()
def edit(layers: dict[str, nn.Linear], factors: dict[str, Factors], rho: float, control: bool = False,
         seed: int = 0) -> dict:
    """Replace each layer's weight by its curvature-masked version (in place); per layer, the
    fraction of components kept. With `control`, the same number of components at random places."""
    check_rho(rho)
    gen = torch.Generator().manual_seed(seed)
    kept = {}
    for name, layer in layers.items():
        l, ua, m, ug = factors[name].eig()
        mask = curvature_mask(l.cpu(), m.cpu(), rho)
        if control:
            mask = random_mask_like(mask, gen)
        W = layer.weight
        layer.weight.copy_(masked_weight(W, ua, ug, mask.to(ua.device)))
        kept[name] = float(mask.float().mean())
    return kept


def check_rho(rho: float) -> None:
    if not 0 < rho <= 1:  # NaN fails this too
        raise LmlabError(f"--curvature-mass must be in (0, 1], got {rho}")


def token_batches(ids, context: int, batch_size: int, max_tokens: int = 0):
    """Non-overlapping windows of `context` ids from `ids`, in batches (up to `max_tokens` in all)."""
    ids = np.asarray(ids, dtype=np.int64)
    if max_tokens:
        ids = ids[:max_tokens]
    n = len(ids) // context
    if n == 0:
        raise LmlabError(f"need at least {context} tokens (one context) to collect curvature, got {len(ids)}")
    windows = torch.from_numpy(ids[: n * context].reshape(n, context))
    return [windows[i:i + batch_size] for i in range(0, n, batch_size)]


def edit_model(model, ids, rho: float, kinds=("ffn",), max_tokens: int = 0, batch_size: int = 8,
               control: bool = False, seed: int = 0) -> dict:
    """Collect factors on `ids` and edit `model` in place; a summary for state.json / reports."""
    check_rho(rho)
    layers = target_linears(model, kinds)
    factors = collect_factors(model, layers, token_batches(ids, model.cfg.context, batch_size, max_tokens), seed)
    kept = edit(layers, factors, rho, control=control, seed=seed)
    return {"curvature_mass": rho, "layers": list(kept), "kept_fraction": kept, "control": control,
            "tokens": next(iter(factors.values())).tokens, "seed": seed}
