"""lmlab: a workbench for small Transformer language models."""

__version__ = "0.1.0"
