from .transformer import InferenceCache, Transformer
from . import mixers  # noqa: E402,F401  registers block-pattern letters M and L
from . import moe, structured_ffn  # noqa: E402,F401  register FFN kinds moe, lowrank, blockdense, blockshuffle

__all__ = ["Transformer", "InferenceCache"]
