"""Layer voids / L2 Adaptive Computation (LAC): find, per token, the layers that do (almost) nothing.

For residual states h_0 (block 0 input) .. h_L (block outputs) of one token, with
D_l = ||h_l|| - ||h_(l-1)||, layer l >= 2 is *void* if D_l < alpha * (max_(k<l) D_k - min_(k<l) D_k);
layer 1 has no earlier change to compare with and counts as active. alpha = 0.8 in the paper.

Modes (attached with forward hooks, so any decoding loop or evaluation runs unchanged):
  detect  record the void mask only; outputs are untouched
  last    answer from the last non-void layer: its state replaces the final one (then final norm, head)
  skip    a void layer's update is dropped for that token (h_l := h_(l-1)), later layers see that
Every layer is still computed: detection needs its output, so voids save no time here.
`first_layers(model, k)` is the compute-saving baseline to compare with: only blocks 1..k run.
"""
from __future__ import annotations

import contextlib

import torch

from ..errors import LmlabError

MODES = ("detect", "last", "skip")


def is_void(d: torch.Tensor, earlier: list[torch.Tensor], alpha: float) -> torch.Tensor:
    """Void flags for one layer's norm change d [...], given the earlier layers' changes."""
    if not earlier:
        return torch.zeros_like(d, dtype=torch.bool)
    prev = torch.stack(earlier, -1)
    return d < alpha * (prev.amax(-1) - prev.amin(-1))


def void_mask(deltas: torch.Tensor, alpha: float = 0.8) -> torch.Tensor:
    """Void flags [..., L] from norm changes D [..., L] (layer 1 = index 0 never void)."""
    cols = deltas.unbind(-1)
    return torch.stack([is_void(cols[l], list(cols[:l]), alpha) for l in range(len(cols))], -1)


@contextlib.contextmanager
def first_layers(model, k: int):
    """Within the block, `model` runs its first k blocks only (then its final norm and head)."""
    if not 1 <= k <= len(model.blocks):
        raise LmlabError(f"first_layers: k must be in 1..{len(model.blocks)}, not {k}")
    blocks = model.blocks
    model.blocks = torch.nn.ModuleList(list(blocks)[:k])
    try:
        yield model
    finally:
        model.blocks = blocks


class LayerVoids:
    """Context manager: `with LayerVoids(model, alpha, mode) as lv: ...`; then `lv.rates()`.

    Each forward call is recorded with its active-layer mask [B, T, L] under `self.phase`, or,
    when that is None, as "prompt" (several tokens at once) or "generation" (one token).
    """

    def __init__(self, model, alpha: float = 0.8, mode: str = "detect"):
        if mode not in MODES:
            raise LmlabError(f"unknown void mode {mode!r}; valid: {', '.join(MODES)}")
        self.model, self.alpha, self.mode = model, alpha, mode
        self.records: list[tuple[str, torch.Tensor]] = []
        self.phase: str | None = None  # None: one token at a time = generation, several = prompt
        self._handles = []

    def __enter__(self):
        blocks = self.model.blocks
        self._n_layers = len(blocks)
        self._handles.append(blocks[0].hook_resid_pre.register_forward_hook(self._start))
        for i, b in enumerate(blocks):
            self._handles.append(b.hook_resid_post.register_forward_hook(
                lambda mod, inp, out, i=i: self._after_layer(i, out)))
        if self.mode == "last":
            self._handles.append(self.model.final_norm.register_forward_pre_hook(self._last_state))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()

    # --- hooks ---------------------------------------------------------------------------
    def _start(self, mod, inp, out):
        self._prev = out
        self._prev_norm = out.float().norm(dim=-1)
        self._deltas, self._void = [], []
        self._last = out

    def _after_layer(self, i: int, out: torch.Tensor):
        norm = out.float().norm(dim=-1)
        d = norm - self._prev_norm
        void = is_void(d, self._deltas, self.alpha)
        self._deltas.append(d)
        self._void.append(void)
        if self.mode == "skip":
            out = torch.where(void[..., None], self._prev, out)
            norm = torch.where(void, self._prev_norm, norm)
        elif self.mode == "last":
            self._last = torch.where(void[..., None], self._last, out)
        self._prev, self._prev_norm = out, norm
        if i == self._n_layers - 1:
            T = out.shape[1]
            phase = self.phase or ("generation" if T == 1 else "prompt")
            self.records.append((phase, ~torch.stack(self._void, -1).cpu()))
        return out

    def _last_state(self, mod, args):
        return (self._last,)

    # --- results -------------------------------------------------------------------------
    def active(self, phase: str | None = None) -> torch.Tensor:
        """Active-layer flags [N, L] of every recorded token (of one phase, if given)."""
        rows = [m.reshape(-1, m.shape[-1]) for p, m in self.records if phase in (None, p)]
        return torch.cat(rows) if rows else torch.zeros(0, self._n_layers, dtype=torch.bool)

    def void_share(self) -> float:
        """Fraction of (token, layer) updates that were void: the layers a skip would drop."""
        a = self.active()
        return float((~a).float().mean()) if len(a) else 0.0

    def rates(self) -> dict:
        """Per-layer fraction of tokens for which the layer is active, per phase."""
        out = {}
        for phase in ("prompt", "generation"):
            a = self.active(phase)
            if len(a):
                out[phase] = a.float().mean(0).tolist()
        return out
