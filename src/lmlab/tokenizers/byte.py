"""Byte-level tokenizer: ids 0-255 are the UTF-8 bytes, then special tokens."""
from __future__ import annotations

import numpy as np

from .base import from_utf8, read_meta, to_utf8, write_meta

SPECIALS = ("<|endoftext|>",)


class ByteTokenizer:
    kind = "byte"

    @property
    def vocab_size(self) -> int:
        return 256 + len(SPECIALS)

    @property
    def eot_id(self) -> int:
        return 256

    def encode(self, text: str) -> list[int]:
        return list(to_utf8(text))

    def encode_array(self, text: str) -> np.ndarray:
        return np.frombuffer(to_utf8(text), dtype=np.uint8).astype(np.int64)

    def decode(self, ids) -> str:
        return from_utf8(bytes(int(i) for i in ids if 0 <= int(i) < 256))

    def token_nbytes(self) -> np.ndarray:
        n = np.ones(self.vocab_size, dtype=np.int64)
        n[256:] = 0
        return n

    def token_text(self, token_id: int) -> str:
        if token_id >= 256:
            return SPECIALS[token_id - 256]
        return bytes([token_id]).decode("latin-1")

    def save(self, directory) -> None:
        write_meta(directory, self.kind)

    @classmethod
    def load(cls, directory) -> "ByteTokenizer":
        read_meta(directory)
        return cls()
