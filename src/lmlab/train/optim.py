"""AdamW with weight decay only on matrices that are not embeddings (norms, biases and
embeddings are left undecayed, as in GPT-2/nanoGPT practice)."""
from __future__ import annotations

import torch


def param_groups(model, weight_decay: float):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_embedding = name.startswith(("embed.", "pos_embed.")) or ".embed" in name
        (decay if p.dim() >= 2 and not is_embedding else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def make_optimizer(model, tcfg, device: torch.device) -> torch.optim.Optimizer:
    # The fused kernel exists for CUDA and CPU in current PyTorch; it is one pass over all params.
    kwargs = {"fused": True} if device.type in ("cuda", "cpu") else {}
    return torch.optim.AdamW(param_groups(model, tcfg.weight_decay), lr=tcfg.lr,
                             betas=(tcfg.beta1, tcfg.beta2), eps=1e-8, **kwargs)
