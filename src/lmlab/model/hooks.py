"""Named activation points (TransformerLens-style): identity modules analysis code can hook.

A HookPoint's module path is its stable name, e.g. `blocks.3.attn.out` or `blocks.3.resid_post`.
"""
from torch import nn


class HookPoint(nn.Identity):
    pass


def stable_name(module_path: str) -> str:
    """'blocks.3.sublayers.attn.hook_out' -> 'blocks.3.attn.out'; 'hook_embed' -> 'embed'."""
    parts = [p for p in module_path.split(".") if p != "sublayers"]
    return ".".join(p[5:] if p.startswith("hook_") else p for p in parts)


def hook_points(model: nn.Module) -> dict[str, HookPoint]:
    """Every HookPoint of a model under its stable name."""
    return {stable_name(n): m for n, m in model.named_modules() if isinstance(m, HookPoint)}
