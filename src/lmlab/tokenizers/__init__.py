"""Tokenizers behind one protocol; `build` makes one from config + corpus, `load` reads one back."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import LmlabError
from .base import Tokenizer, read_meta
from .byte import ByteTokenizer
from .char import CharTokenizer

# kind -> (trainer(text, tokenizer_config) -> Tokenizer, loader(directory) -> Tokenizer).
# Other modules register themselves here (bpe, superbpe, unicode) so the core needs no edits.
REGISTRY: dict[str, tuple[Callable, Callable]] = {
    "byte": (lambda text, cfg: ByteTokenizer(), ByteTokenizer.load),
    "char": (lambda text, cfg: CharTokenizer.train(text, cfg.vocab_size and cfg.vocab_size - 257 or None),
             CharTokenizer.load),
}


def register(kind: str, trainer: Callable, loader: Callable) -> None:
    REGISTRY[kind] = (trainer, loader)


def _ensure_plugins() -> None:
    # Optional kinds live in their own modules; importing them registers them.
    import importlib

    for name in ("unicode", "bpe", "superbpe", "amino"):
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise


def kinds() -> list[str]:
    _ensure_plugins()
    return sorted(REGISTRY)


def needs_corpus(kind: str) -> bool:
    return kind != "byte"


def build(cfg, text_provider: Callable[[], str]) -> Tokenizer:
    """Make the tokenizer a config asks for: load `cfg.path` if set, else train on the corpus."""
    _ensure_plugins()
    if getattr(cfg, "path", ""):
        return load(cfg.path)
    if cfg.kind not in REGISTRY:
        raise LmlabError(f"unknown tokenizer.kind {cfg.kind!r}; valid kinds: {', '.join(sorted(REGISTRY))}")
    trainer, _ = REGISTRY[cfg.kind]
    return trainer(text_provider() if needs_corpus(cfg.kind) else "", cfg)


def load(directory: str | Path) -> Tokenizer:
    _ensure_plugins()
    meta = read_meta(directory)
    kind = meta.get("kind")
    if kind not in REGISTRY:
        raise LmlabError(f"{directory}: unknown tokenizer kind {kind!r}")
    return REGISTRY[kind][1](directory)


__all__ = ["Tokenizer", "ByteTokenizer", "CharTokenizer", "build", "load", "register", "kinds"]
