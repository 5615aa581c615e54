"""The module protocol: what generic code (the trainer, init, crmsnorm narrowing, `lmlab convert`)
looks for on the modules of a model, so that it never needs to know an architecture.

Every member is optional: code looks each one up with getattr/hasattr on every submodule and
skips modules without it. A new variant implements only what applies to it. Nothing inherits
from this class; it is the one place where the names and their meaning are written down.
"""
from __future__ import annotations

from typing import Protocol

import torch


class ModuleProtocol(Protocol):
    residual_out: bool
    """On an nn.Linear that writes into the residual stream (attention's o_proj, an FFN's down):
    initialised with the smaller residual std (std / sqrt(2 * n_layers), GPT-2), cut to d-1
    output rows in a crmsnorm model (norms.narrow_writers) and centred by `lmlab convert`."""

    frozen: bool
    """On the input embedding: True when its matrix is a buffer that never trains (glyph, binary,
    gaussian). The Transformer then unties the output head from it."""

    aux_loss: torch.Tensor | None
    """Set by a training forward to a loss term the trainer adds to the LM loss and then resets to
    None (MoE load balancing); None in evaluation."""

    def set_progress(self, frac: float) -> None:
        """Training progress 0..1, told before every step (training_hooks.set_progress): a self-guided
        structured FFN decays its dense guide with it."""

    def train_stats(self) -> dict:
        """Numbers for metrics.jsonl (training_hooks.train_stats), e.g. MoE tokens per expert."""

    def narrow_output_(self, width: int) -> None:
        """crmsnorm: keep `width` (d-1) output coordinates of whatever this module writes into the
        residual stream; speaks for its whole subtree (norms.narrow_writers)."""

    def fold_input_gain_(self, g: torch.Tensor) -> None:
        """`lmlab convert`: multiply the gain g [d] of the norm before this mixer into the weights that
        read its input (a module without it has its reading linears found by a probe)."""

    def centre_output_(self) -> bool:
        """`lmlab convert`: make this module's residual output zero-mean in place; False when it cannot
        (then only a crmsnorm target, which centres outputs itself, is possible). Speaks for its subtree."""
