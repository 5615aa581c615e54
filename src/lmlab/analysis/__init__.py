"""Looking inside models: hooks by stable name (hooks), heads as factored matrices (heads),
the logit lens and trajectories (lens), attention sinks and massive activations (sinks)."""
from .hooks import ActivationCache, capture, hook_names, hooked, run_with_cache, run_with_hooks

__all__ = ["ActivationCache", "capture", "hook_names", "hooked", "run_with_cache", "run_with_hooks"]
