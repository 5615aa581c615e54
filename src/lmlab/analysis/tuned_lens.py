"""The tuned lens (Belrose et al. 2023): one learned affine map per state before the logit lens.

State k's translator is h -> h + A_k h + b_k, starting at zero (so at first it is the plain logit
lens), trained to minimise KL(model's output || the lens's decoding of state k) over the windows
of a text, the model frozen. The last state keeps no translator: its lens is the output itself.
Train on one text and measure on another (`lmlab analyze --what lens --tuned-lens STEPS` trains
on the first half of the text and reports both lenses on the second half).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .hooks import as_ids
from .lens import decode, residual_states
from .windows import scored_windows


class TunedLens(torch.nn.Module):
    def __init__(self, n_states: int, width: int):
        super().__init__()
        self.maps = torch.nn.ModuleList(torch.nn.Linear(width, width) for _ in range(n_states - 1))
        for m in self.maps:
            torch.nn.init.zeros_(m.weight)
            torch.nn.init.zeros_(m.bias)

    def forward(self, k: int, states: torch.Tensor) -> torch.Tensor:
        """State k's states [..., width], translated (the last state unchanged)."""
        if k == len(self.maps):
            return states
        m = self.maps[k]
        return states + m(states.to(m.weight.dtype)).to(states.dtype)


def _all_states(model, ids, context: int):
    """[(states [n_states, T, width], last-state log-probs [T, V])] per window, the model frozen."""
    out = []
    with torch.no_grad():
        for x, _, _ in scored_windows(ids, context):
            _, states = residual_states(model, as_ids(model, x))
            states = states[:, 0].float()
            out.append((states, F.log_softmax(decode(model, states[-1]).float(), -1)))
    return out


def train_tuned_lens(model, ids, steps: int, lr: float = 1e-3, context: int | None = None,
                     seed: int = 0) -> TunedLens:
    """Translators for every state but the last, `steps` Adam steps over the text's windows in turn."""
    model.eval()
    data = _all_states(model, ids, context or model.cfg.context)
    lens = TunedLens(data[0][0].shape[0], data[0][0].shape[-1])
    torch.manual_seed(seed)
    opt = torch.optim.Adam(lens.parameters(), lr=lr)
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        for step in range(steps):
            states, last = data[step % len(data)]
            loss = sum(F.kl_div(F.log_softmax(decode(model, lens(k, states[k])).float(), -1), last,
                                log_target=True, reduction="batchmean") for k in range(len(lens.maps)))
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    return lens.eval()
