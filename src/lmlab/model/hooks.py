"""Named activation points (TransformerLens-style): identity modules analysis code can hook.

A HookPoint's module path is its stable name, e.g. `blocks.3.attn.out` or `blocks.3.resid_post`
(`sublayers.` and `mixer.` are dropped from the path, `hook_` from the last part).
"""
from torch import nn
from torch.nn.modules import module as _module


class HookPoint(nn.Identity):
    @property
    def active(self) -> bool:
        """Whether anything is attached: code with a costly way to produce this activation (the
        explicit attention pattern, per-head outputs) takes it only then."""
        return bool(self._forward_hooks or self._forward_pre_hooks or self._backward_hooks
                    or self._backward_pre_hooks or _module._global_forward_hooks
                    or _module._global_forward_pre_hooks)

    def __call__(self, x):
        # with nothing attached, skip nn.Module's call machinery: a hook point then costs one check
        return super().__call__(x) if self.active else x


def stable_name(module_path: str) -> str:
    """'blocks.3.sublayers.attn.hook_out' -> 'blocks.3.attn.out'; 'hook_embed' -> 'embed';
    'blocks.0.sublayers.attn.mixer.hook_q' -> 'blocks.0.attn.q'."""
    parts = [p for p in module_path.split(".") if p not in ("sublayers", "mixer")]
    return ".".join(p[5:] if p.startswith("hook_") else p for p in parts)


def hook_points(model: nn.Module) -> dict[str, HookPoint]:
    """Every HookPoint of a model under its stable name."""
    return {stable_name(n): m for n, m in model.named_modules() if isinstance(m, HookPoint)}
