"""Named variants of one kind (norms, FFNs, mixers, embeddings, tokenizers): a config value -> a constructor.

A variant module registers itself when imported; its package imports every variant module, so a
registry is complete as soon as the package is imported (no plugin loading at lookup time).
"""
from __future__ import annotations

from typing import Any, Iterator

from .errors import LmlabError


class UnknownVariant(LmlabError, ValueError):
    """A config names a variant that is not registered (a ValueError too: model code raises those)."""


class Registry:
    def __init__(self, kind_name: str):
        self.kind_name = kind_name  # what the user sets, e.g. "model.norm": error messages name it
        self._entries: dict[str, Any] = {}

    def register(self, name: str, value: Any = None) -> Any:
        """`register(name, value)`, or `@register(name)` above a class or function; returns the value."""
        if value is None:
            return lambda v: self.register(name, v)
        if name in self._entries:
            raise ValueError(f"{self.kind_name} {name!r} is registered twice")
        self._entries[name] = value
        return value

    def get(self, name: str) -> Any:
        if name not in self._entries:
            raise UnknownVariant(f"unknown {self.kind_name} {name!r}; valid kinds: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> list[tuple[str, Any]]:
        return [(name, self._entries[name]) for name in self.names()]

    __getitem__ = get

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind_name!r}: {', '.join(self.names())})"

