"""What the trainer tells modules and asks them, without knowing any architecture
(the members are documented in protocol.ModuleProtocol).

- `set_progress(model, frac)`: training progress 0..1 for modules with `set_progress` (self-guided
  structured FFNs decay their dense guide with it).
- `train_stats(model)`: numbers modules report with `train_stats()` (MoE tokens per expert), merged
  into one dict for metrics.jsonl; lists from several layers of the same key are kept per layer.
"""
from __future__ import annotations

from torch import nn


def set_progress(model: nn.Module, frac: float) -> None:
    for m in model.modules():
        if m is not model and hasattr(m, "set_progress"):
            m.set_progress(frac)


def train_stats(model: nn.Module) -> dict:
    out: dict = {}
    for m in model.modules():
        if m is not model and hasattr(m, "train_stats"):
            for key, value in m.train_stats().items():
                out.setdefault(key, []).append(value)
    # one value per layer: scalars averaged, lists kept per layer
    return {k: (sum(v) / len(v) if all(isinstance(x, (int, float)) for x in v) else v) for k, v in out.items()}
