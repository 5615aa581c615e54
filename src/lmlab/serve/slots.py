"""The model's side of continuous batching: a fixed number of slots, each holding one sequence's
cache. `prefill` encodes a prompt into a slot (one sequence at a time); `step` advances every
occupied slot by one token.

SharedSlots: one cache of `n` rows with a position per row; a decode step is one forward pass
over all `n` rows (free rows compute on a dummy token). Its shape never changes, so a row's
numbers do not depend on which other rows are busy: a request's output is identical alone or
beside others (a matmul over a different number of rows may round differently, measured on
CPU). SeparateSlots: one cache per slot, one forward per occupied slot; for what the shared
cache does not cover (LM-Infinite's ring buffers, recurrent mixers, meta-tokens).
"""
from __future__ import annotations

import torch

from ..model.attention import CausalSelfAttention


def shares_forward(model) -> bool:
    """Whether the model's sublayers all decode with per-row positions (attention and FFNs)."""
    if getattr(model, "meta", None) is not None:
        return False
    for block in model.blocks:
        for name, sub in block.sublayers.items():
            if name.startswith("ffn"):
                continue
            if not isinstance(sub.mixer, CausalSelfAttention) or "forward" in sub.mixer.__dict__:
                return False  # another mixer, or attention replaced from outside (LM-Infinite)
    return True


class SharedSlots:
    def __init__(self, model, n: int, max_len: int, device):
        self.model, self.n, self.max_len, self.device = model, n, max_len, device
        self.cache = model.new_cache(max_len)
        self.cache.pos = torch.zeros(n, dtype=torch.long, device=device)
        self.busy = [False] * n
        with torch.no_grad():  # allocates every layer's K/V rows in the dtype attention picks
            model(torch.zeros(n, 1, dtype=torch.long, device=device), cache=self.cache)
        self.cache.pos.zero_()

    def prefill(self, slot: int, ids: list[int]) -> torch.Tensor:
        """Logits [T, V] of the prompt, its keys and values written into row `slot`."""
        view = self.model.new_cache(self.max_len)  # a one-row cache whose tensors are the slot's row
        for layers, shared in zip(view.layers, self.cache.layers):
            for mine, theirs in zip(layers, shared):
                mine.update({k: t[slot:slot + 1] for k, t in theirs.items() if isinstance(t, torch.Tensor)})
        logits, _ = self.model(torch.tensor([ids], dtype=torch.long, device=self.device), cache=view)
        self.cache.pos[slot] = len(ids)
        self.busy[slot] = True
        return logits[0]

    def step(self, tokens: dict[int, int]) -> torch.Tensor:
        """Feed tokens[slot] to each busy slot; logits [n, V] (rows of free slots are meaningless)."""
        feed = torch.zeros(self.n, 1, dtype=torch.long)
        for slot, token in tokens.items():
            feed[slot, 0] = token
        logits, _ = self.model(feed.to(self.device), cache=self.cache)
        for slot in range(self.n):
            if not self.busy[slot]:
                self.cache.pos[slot] = 0  # free rows keep writing at position 0 of their own row
        return logits[:, -1]

    def free(self, slot: int) -> None:
        self.busy[slot] = False
        self.cache.pos[slot] = 0


class SeparateSlots:
    def __init__(self, model, n: int, new_cache, prefill_fn=None):
        self.model, self.n = model, n
        self.new_cache = new_cache          # () -> a fresh one-row cache
        self.prefill_fn = prefill_fn        # (ids [1, T], cache) -> logits [1, T, V]; default: one forward
        self.caches: list = [None] * n

    def prefill(self, slot: int, ids: list[int]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        cache = self.new_cache()
        x = torch.tensor([ids], dtype=torch.long, device=device)
        logits = self.prefill_fn(x, cache) if self.prefill_fn else self.model(x, cache=cache)[0]
        self.caches[slot] = cache
        return logits[0]

    def step(self, tokens: dict[int, int]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        rows = {}
        for slot, token in tokens.items():
            logits, _ = self.model(torch.tensor([[token]], dtype=torch.long, device=device), cache=self.caches[slot])
            rows[slot] = logits[0, -1]
        out = torch.zeros(self.n, next(iter(rows.values())).shape[-1], dtype=torch.float32, device=device)
        for slot, row in rows.items():
            out[slot] = row.float()
        return out

    def free(self, slot: int) -> None:
        self.caches[slot] = None
