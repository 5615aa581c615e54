from .transformer import InferenceCache, Transformer
from . import mixers  # noqa: E402,F401  registers block-pattern letters M and L

__all__ = ["Transformer", "InferenceCache"]
