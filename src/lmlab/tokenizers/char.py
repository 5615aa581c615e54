"""Character (Unicode code point) tokenizer with byte fallback.

Ids 0-255 are UTF-8 byte fallbacks, 256 is <|endoftext|>, then one id per character seen
in the training corpus (most frequent first). A character never seen is spelled as its UTF-8
bytes, so every Python string round-trips exactly and nothing is ever <unk>.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from ..errors import LmlabError
from .base import UTF8_ERRORS, from_utf8, read_meta, to_utf8, write_meta

N_BYTES = 256
EOT = 256
FIRST_CHAR_ID = 257
MAX_CODE_POINT = 0x110000


def code_points(text: str) -> np.ndarray:
    """The code points of a string as uint32, lone surrogates included."""
    return np.frombuffer(text.encode("utf-32-le", UTF8_ERRORS), dtype=np.uint32)


class CharTokenizer:
    kind = "char"

    def __init__(self, chars: list[str]):
        self.chars = list(chars)
        self._lookup = np.full(MAX_CODE_POINT, -1, dtype=np.int64)
        for i, ch in enumerate(self.chars):
            self._lookup[ord(ch)] = FIRST_CHAR_ID + i

    @classmethod
    def train(cls, text: str, max_chars: int | None = None) -> "CharTokenizer":
        if not text:
            raise LmlabError("cannot build a char tokenizer from an empty corpus")
        counts = Counter(text)
        ranked = sorted(counts, key=lambda c: (-counts[c], ord(c)))
        ranked = [c for c in ranked if not 0xD800 <= ord(c) <= 0xDFFF]
        if max_chars is not None:
            ranked = ranked[:max_chars]
        return cls(ranked)

    @property
    def vocab_size(self) -> int:
        return FIRST_CHAR_ID + len(self.chars)

    @property
    def eot_id(self) -> int:
        return EOT

    def encode_array(self, text: str) -> np.ndarray:
        cps = code_points(text)
        ids = self._lookup[cps]
        missing = np.flatnonzero(ids < 0)
        if missing.size == 0:
            return ids
        pieces, start = [], 0
        for pos in missing:
            pieces.append(ids[start:pos])
            pieces.append(np.frombuffer(to_utf8(chr(cps[pos])), dtype=np.uint8).astype(np.int64))
            start = pos + 1
        pieces.append(ids[start:])
        return np.concatenate(pieces)

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def decode(self, ids) -> str:
        out: list[str] = []
        pending = bytearray()
        for i in ids:
            i = int(i)
            if i < N_BYTES:
                pending.append(i)
                continue
            if pending:
                out.append(from_utf8(bytes(pending)))
                pending.clear()
            if i >= FIRST_CHAR_ID and i < self.vocab_size:
                out.append(self.chars[i - FIRST_CHAR_ID])
        if pending:
            out.append(from_utf8(bytes(pending)))
        return "".join(out)

    def token_nbytes(self) -> np.ndarray:
        n = np.zeros(self.vocab_size, dtype=np.int64)
        n[:N_BYTES] = 1
        n[FIRST_CHAR_ID:] = [len(to_utf8(c)) for c in self.chars]
        return n

    def token_text(self, token_id: int) -> str:
        if token_id < N_BYTES:
            return f"<0x{token_id:02X}>"
        if token_id == EOT:
            return "<|endoftext|>"
        return self.chars[token_id - FIRST_CHAR_ID]

    def save(self, directory) -> None:
        write_meta(directory, self.kind, chars="".join(self.chars))

    @classmethod
    def load(cls, directory) -> "CharTokenizer":
        meta = read_meta(directory)
        return cls(list(meta["chars"]))
