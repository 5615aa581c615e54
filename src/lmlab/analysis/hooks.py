"""Capture named activations (e.g. 'blocks.3.attn.out', 'blocks.3.resid_post') during a forward pass."""
from __future__ import annotations

from contextlib import contextmanager
from fnmatch import fnmatch

from ..errors import LmlabError
from ..model.hooks import hook_points


@contextmanager
def capture(model, names):
    """Yield a dict that fills with {name: tensor} for hook names matching `names` (globs allowed).

    Only what is asked for is stored, detached, so capturing costs nothing elsewhere.
    """
    points = hook_points(model)
    patterns = [names] if isinstance(names, str) else list(names)
    chosen = {n: m for n, m in points.items() if any(fnmatch(n, p) for p in patterns)}
    if not chosen:
        raise LmlabError(f"no activation matches {patterns}; names look like: {', '.join(list(points)[:8])} ...")
    store: dict = {}
    handles = [m.register_forward_hook(lambda mod, inp, out, n=n: store.__setitem__(n, out.detach()))
               for n, m in chosen.items()]
    try:
        yield store
    finally:
        for h in handles:
            h.remove()
