"""Tokenizers behind one protocol; `build` makes one from config + corpus, `load` reads one back."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import LmlabError
from ..registry import Registry
from .base import Tokenizer, read_meta
from .byte import ByteTokenizer
from .char import CharTokenizer

# kind -> (trainer(text, tokenizer_config) -> Tokenizer, loader(directory) -> Tokenizer).
# Each kind's module registers itself; the imports at the bottom make the registry complete.
REGISTRY = Registry("tokenizer.kind")


def register(kind: str, trainer: Callable, loader: Callable) -> None:
    REGISTRY.register(kind, (trainer, loader))


register("byte", lambda text, cfg: ByteTokenizer(), ByteTokenizer.load)
register("char", lambda text, cfg: CharTokenizer.train(text, cfg.vocab_size and cfg.vocab_size - 257 or None),
         CharTokenizer.load)


def kinds() -> list[str]:
    return REGISTRY.names()


def needs_corpus(kind: str) -> bool:
    return kind != "byte"


def build(cfg, text_provider: Callable[[], str]) -> Tokenizer:
    """Make the tokenizer a config asks for: load `cfg.path` if set, else train on the corpus."""
    if getattr(cfg, "path", ""):
        return load(cfg.path)
    trainer, _ = REGISTRY.get(cfg.kind)
    return trainer(text_provider() if needs_corpus(cfg.kind) else "", cfg)


def load(directory: str | Path) -> Tokenizer:
    meta = read_meta(directory)
    kind = meta.get("kind")
    if kind not in REGISTRY:
        raise LmlabError(f"{directory}: unknown tokenizer kind {kind!r}")
    return REGISTRY.get(kind)[1](directory)


from . import amino, bpe, superbpe, unicode  # noqa: E402,F401  register their kinds (bpe needs HF tokenizers, a core dependency)

__all__ = ["Tokenizer", "ByteTokenizer", "CharTokenizer", "build", "load", "register", "kinds"]
