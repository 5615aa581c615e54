"""The Tokenizer protocol every tokenizer implements, and the shared byte-fallback codec.

A tokenizer maps any Python string to ids and back exactly. Each one also knows how many
UTF-8 bytes each id stands for, so losses can be compared across tokenizers in bits per byte.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

# Python strings may hold lone surrogates; 'surrogatepass' lets them survive the UTF-8 trip.
UTF8_ERRORS = "surrogatepass"


def to_utf8(text: str) -> bytes:
    return text.encode("utf-8", UTF8_ERRORS)


def from_utf8(data: bytes) -> str:
    """Decode bytes exactly where they are valid; replace what a model invented that is not."""
    try:
        return data.decode("utf-8", UTF8_ERRORS)
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace")


@runtime_checkable
class Tokenizer(Protocol):
    kind: str

    @property
    def vocab_size(self) -> int: ...

    @property
    def eot_id(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids) -> str: ...

    def token_nbytes(self) -> np.ndarray:
        """UTF-8 bytes each id contributes to the text (0 for special tokens)."""
        ...

    def token_text(self, token_id: int) -> str:
        """Printable text of one token (what a glyph renderer draws)."""
        ...

    def save(self, directory: str | Path) -> None: ...


def write_meta(directory: str | Path, kind: str, **fields) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "lmlab_tokenizer.json").write_text(
        json.dumps({"kind": kind, **fields}, ensure_ascii=False, indent=1), encoding="utf-8"
    )


def read_meta(directory: str | Path) -> dict:
    path = Path(directory) / "lmlab_tokenizer.json"
    if not path.is_file():
        from ..errors import LmlabError

        raise LmlabError(f"{directory} is not a tokenizer directory (no lmlab_tokenizer.json)")
    return json.loads(path.read_text(encoding="utf-8"))
