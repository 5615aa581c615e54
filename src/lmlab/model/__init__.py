from .transformer import InferenceCache, Transformer

__all__ = ["Transformer", "InferenceCache"]
