"""Amino-acid tokenizer for protein LMs: one id per residue letter.

Ids: 0 <|endoftext|> (between sequences); 1-20 the standard residues ACDEFGHIKLMNPQRSTVWY;
21-26 the ambiguity and rare codes B (D/N), Z (E/Q), X (any), U (selenocysteine),
O (pyrrolysine), J (L/I); then the 256 UTF-8 bytes as a fallback, so any other character
(lower case, a stop '*', a newline) still round-trips exactly instead of becoming <unk>.
The masked-LM [MASK] id is added by the objective (train/objectives.py), not here.
"""
from __future__ import annotations

import numpy as np

from .base import from_utf8, read_meta, to_utf8, write_meta
from .char import MAX_CODE_POINT, code_points

STANDARD = "ACDEFGHIKLMNPQRSTVWY"
AMBIGUOUS = "BZXUOJ"
RESIDUES = STANDARD + AMBIGUOUS
EOT = 0
FIRST_RESIDUE = 1
FIRST_BYTE = FIRST_RESIDUE + len(RESIDUES)


class AminoTokenizer:
    kind = "amino"

    def __init__(self):
        self._lookup = np.full(MAX_CODE_POINT, -1, dtype=np.int64)
        for i, ch in enumerate(RESIDUES):
            self._lookup[ord(ch)] = FIRST_RESIDUE + i

    @property
    def vocab_size(self) -> int:
        return FIRST_BYTE + 256

    @property
    def eot_id(self) -> int:
        return EOT

    def encode_array(self, text: str) -> np.ndarray:
        ids = self._lookup[code_points(text)]
        if (ids >= 0).all():
            return ids
        pieces = []
        for ch, i in zip(text, ids.tolist()):
            pieces.append([i] if i >= 0 else [FIRST_BYTE + b for b in to_utf8(ch)])
        return np.asarray([i for p in pieces for i in p], dtype=np.int64)

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def decode(self, ids) -> str:
        out, pending = [], bytearray()
        for i in map(int, ids):
            if i >= FIRST_BYTE and i < self.vocab_size:
                pending.append(i - FIRST_BYTE)
                continue
            if pending:
                out.append(from_utf8(bytes(pending)))
                pending.clear()
            if FIRST_RESIDUE <= i < FIRST_BYTE:
                out.append(RESIDUES[i - FIRST_RESIDUE])
        if pending:
            out.append(from_utf8(bytes(pending)))
        return "".join(out)

    def token_nbytes(self) -> np.ndarray:
        n = np.ones(self.vocab_size, dtype=np.int64)
        n[EOT] = 0
        return n

    def token_text(self, token_id: int) -> str:
        if token_id == EOT:
            return "<|endoftext|>"
        if token_id < FIRST_BYTE:
            return RESIDUES[token_id - FIRST_RESIDUE]
        return f"<0x{token_id - FIRST_BYTE:02X}>"

    def save(self, directory) -> None:
        write_meta(directory, self.kind, residues=RESIDUES)

    @classmethod
    def load(cls, directory) -> "AminoTokenizer":
        read_meta(directory)
        return cls()


def _register() -> None:
    from . import register

    register("amino", lambda text, cfg: AminoTokenizer(), AminoTokenizer.load)


_register()
