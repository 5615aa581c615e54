"""Swapping a trained model's linear layers for inference-only ones (int8, prepacked bf16)."""
from __future__ import annotations

from typing import Callable

from torch import nn


def replace_linears(module: nn.Module, make: Callable[[nn.Linear], nn.Module | None]) -> int:
    """Replace every plain nn.Linear under `module` by make(layer) (None keeps it); returns how many."""
    n = 0
    for name, child in list(module.named_children()):
        if type(child) is nn.Linear:
            new = make(child)
            if new is not None:
                setattr(module, name, new)
                n += 1
        else:
            n += replace_linears(child, make)
    return n


def untie_head(model: nn.Module, make: Callable) -> None:
    """Give a tied head its own layer make(embedding weight); the input lookup keeps the embedding."""
    if model.tied:
        model.lm_head, model.tied = make(model.embed.weight), False
