"""Run a model with named activations cached or replaced (TransformerLens-style), on any lmlab
architecture as it is: names like 'blocks.3.attn.pattern' or 'blocks.3.resid_post' (docs/analysis.md).

- run_with_cache(model, ids, names, pos) -> (logits, cache): stores only what matches `names`.
- run_with_hooks(model, ids, hooks) -> logits: each `fn(activation, name)` may return a
  replacement (patching, ablation, steering); editing the activation in place works too.
- hooked(model, hooks): the same hooks as a context manager, for several forward passes.
- capture(model, names): a dict that fills with detached activations during forward passes.
Hooks are always removed on leaving, also when a hook function raises.
"""
from __future__ import annotations

import difflib
from contextlib import contextmanager
from functools import partial

import numpy as np
import torch

from ..errors import LmlabError
from ..model.hooks import hook_points
from .names import hook_names, position_axis, resolve

__all__ = ["ActivationCache", "capture", "hook_names", "hooked", "run_with_cache", "run_with_hooks"]


class ActivationCache(dict):
    """{name: tensor}, in forward order; a missing name says which stored names are close."""

    def __missing__(self, name):
        close = difflib.get_close_matches(str(name), list(self), n=5, cutoff=0)
        raise KeyError(f"{name!r} was not cached; closest cached: {', '.join(close) or 'none'}")

    def stack(self, pattern: str) -> torch.Tensor:
        """The cached tensors whose names match `pattern` (a glob), stacked on a new first axis."""
        from fnmatch import fnmatchcase

        chosen = [v for n, v in self.items() if fnmatchcase(n, pattern)]
        if not chosen:
            raise KeyError(f"nothing cached matches {pattern!r}; cached: {', '.join(self)}")
        return torch.stack(chosen)


def as_ids(model, ids) -> torch.Tensor:
    """Token ids as a LongTensor [B, T] on the model's device (a list or 1-D tensor is one row)."""
    t = ids.long() if isinstance(ids, torch.Tensor) else torch.as_tensor(np.asarray(ids), dtype=torch.long)
    if t.dim() == 1:
        t = t[None]
    if t.dim() != 2 or t.shape[1] == 0:
        raise LmlabError(f"token ids must be a non-empty [batch, length] array, got shape {tuple(t.shape)}")
    return t.to(next(model.parameters()).device)


def _call(fn, name, module, inputs, output):
    return fn(output, name)


@contextmanager
def hooked(model, hooks):
    """Attach `hooks` ({name_or_glob: fn} or [(name_or_glob, fn), ...]) for the duration.

    fn(activation, name) returns None (observe, or edit in place) or a replacement tensor.
    """
    items = list(hooks.items()) if isinstance(hooks, dict) else list(hooks)
    points = hook_points(model)
    handles = []
    try:
        for pattern, fn in items:
            for name, point in resolve(model, pattern, points).items():
                handles.append(point.register_forward_hook(partial(_call, fn, name)))
        yield model
    finally:
        for h in handles:
            h.remove()


def _positions(act: torch.Tensor, axis: int | None, pos) -> torch.Tensor:
    if pos is None or axis is None or act.dim() <= axis:
        return act
    if isinstance(pos, slice):
        idx = torch.arange(act.shape[axis])[pos]
    else:
        idx = torch.as_tensor([pos] if isinstance(pos, int) else pos, dtype=torch.long) % act.shape[axis]
    return act.index_select(axis, idx.to(act.device))


def _store(cache: dict, pos, grad: bool, act, name):
    kept = _positions(act, position_axis(name), pos)
    cache[name] = kept if grad else kept.detach()


def run_with_cache(model, ids, names="*", pos=None, hooks=None, grad: bool = False):
    """(logits, cache) for ids [B, T]; the cache holds the activations named by `names` (globs).

    pos (an int, a list of ints or a slice) keeps only those positions (the query axis of
    attn.scores/attn.pattern). `hooks` run first, so the cache sees what they patched. Without
    grad, the forward runs under no_grad and cached tensors are detached.
    """
    ids = as_ids(model, ids)
    cache = ActivationCache()
    chosen = resolve(model, names)
    savers = [(n, partial(_store, cache, pos, grad)) for n in chosen]
    user = list(hooks.items()) if isinstance(hooks, dict) else list(hooks or [])
    with hooked(model, user + savers), torch.set_grad_enabled(grad):
        logits, _ = model(ids)
    return logits, cache


def run_with_hooks(model, ids, hooks, grad: bool = False) -> torch.Tensor:
    """Logits for ids [B, T] with `hooks` attached ({name_or_glob: fn}); removed afterwards."""
    ids = as_ids(model, ids)
    with hooked(model, hooks), torch.set_grad_enabled(grad):
        logits, _ = model(ids)
    return logits


@contextmanager
def capture(model, names):
    """Yield a dict that fills with {name: tensor} for hook names matching `names` (globs allowed).

    Only what is asked for is stored, detached, so capturing costs nothing elsewhere.
    """
    store: dict = {}
    chosen = resolve(model, names)
    with hooked(model, [(n, partial(_store, store, None, False)) for n in chosen]):
        yield store
