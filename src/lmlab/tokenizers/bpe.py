"""Byte-level BPE trained and run by HF `tokenizers`, behind lmlab's Tokenizer protocol.

The saved `tokenizer.json` is a stock HF file: `tokenizers.Tokenizer.from_file` encodes to the same
ids. Pre-tokenisation is GPT-style (words with one leading non-letter, numbers in groups of up to 3
digits, punctuation runs, whitespace runs), expressed as a regex Split followed by a byte-level
mapping that does no splitting of its own.

Decoding is ours (a table of token bytes), so that every Python string, lone surrogates included,
round-trips exactly: HF cannot accept lone surrogates, so we spell them as their 'surrogatepass'
UTF-8 bytes with single-byte tokens.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

from ..errors import LmlabError
from . import register
from .base import UTF8_ERRORS, from_utf8, read_meta, write_meta

EOT = "<|endoftext|>"
N_BYTES = 256
DEFAULT_VOCAB = 8192
# Words keep one leading non-letter (usually the space), digits go in groups of 1-3, punctuation
# runs keep trailing newlines, whitespace runs leave their last space to the next word.
GPT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# A newline followed by a non-space always ends a pre-token (for BPE and SuperBPE alike), so
# text may be cut there and the pieces encoded in parallel without changing the ids.
_SAFE_CUT = re.compile(r"\n(?=\S)")
_SURROGATE = re.compile("[\ud800-\udfff]")
PIECE_CHARS = 1 << 16


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map that HF's ByteLevel uses for its vocabulary."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(N_BYTES):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(N_BYTES + extra)
            extra += 1
    return table


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


def token_str_bytes(token: str) -> bytes:
    """The UTF-8 bytes a byte-level vocabulary entry stands for."""
    return bytes(CHAR_TO_BYTE[c] for c in token)


def safe_pieces(text: str, size: int = PIECE_CHARS) -> list[str]:
    """Cut `text` into pieces of about `size` characters at pre-token boundaries."""
    pieces, start = [], 0
    while len(text) - start > size:
        m = _SAFE_CUT.search(text, start + size)
        if m is None:
            break
        pieces.append(text[start : m.end()])
        start = m.end()
    pieces.append(text[start:])
    return pieces


def without_eot(text: str) -> str:
    """Training text with literal "<|endoftext|>" removed, so that no merge can rebuild the special
    token's string (the id would then stand for text, and decode would drop it)."""
    while EOT in text:
        text = text.replace(EOT, "")
    return text


def check_train_args(text: str, vocab_size: int, kind: str) -> None:
    if not text:
        raise LmlabError(f"cannot train a {kind} tokenizer on an empty corpus")
    if vocab_size < N_BYTES + 1:
        raise LmlabError(
            f"{kind} vocab_size {vocab_size} is smaller than the byte alphabet "
            f"({N_BYTES} bytes + {EOT} = {N_BYTES + 1})"
        )


def batch_encoder(hf):
    """HF's parallel batch encoder; the fast one (tokenizers >= 0.21) skips offsets, which we never use."""
    return getattr(hf, "encode_batch_fast", hf.encode_batch)


def hf_pre_tokenizer(pattern: str):
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def hf_tokenizer(model, pattern: str):
    """A stock HF tokenizer around a BPE model: regex split, byte-level map, byte-level decoder."""
    from tokenizers import Tokenizer, decoders

    tok = Tokenizer(model)
    tok.pre_tokenizer = hf_pre_tokenizer(pattern)
    tok.decoder = decoders.ByteLevel()
    return tok


def train_hf_bpe(text: str, vocab_size: int, pattern: str = GPT_PATTERN, show_progress: bool = False,
                 min_frequency: int = 2):
    """Train byte-level BPE with HF `tokenizers`; ids: <|endoftext|> = 0, then the 256 bytes, then merges."""
    from tokenizers import models, pre_tokenizers, trainers

    check_train_args(text, vocab_size, "bpe")
    text = without_eot(text)
    tok = hf_tokenizer(models.BPE(), pattern)
    # HF's bars only make sense on a terminal (elsewhere they leave blank lines on stdout).
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, show_progress=show_progress and _show_progress(),
        special_tokens=[EOT], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    pieces = safe_pieces(text)
    tok.train_from_iterator(pieces, trainer, length=len(pieces))
    return tok


def model_vocab_merges(hf) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The BPE model's vocabulary and merges (in rank order) of an HF tokenizer."""
    model = json.loads(hf.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return dict(model["vocab"]), merges


class ByteLevelBPE:
    """Any byte-level BPE tokenizer held as an HF `tokenizers.Tokenizer`."""

    kind = "bpe"

    def __init__(self, hf, meta: dict | None = None):
        self.hf = hf
        # Text is always text: a literal "<|endoftext|>" in a corpus is spelled, not made special.
        self.hf.encode_special_tokens = True
        self.meta = dict(meta or {})
        size = hf.get_vocab_size(with_added_tokens=True)
        specials = {t.content for t in hf.get_added_tokens_decoder().values()}
        table: list[bytes | None] = [None] * size
        for token, i in hf.get_vocab(with_added_tokens=True).items():
            table[i] = b"" if token in specials else token_str_bytes(token)
        if any(t is None for t in table):
            raise LmlabError("tokenizer.json has gaps in its ids")
        self._bytes: list[bytes] = table
        self._byte_id = [hf.token_to_id(BYTE_TO_CHAR[b]) for b in range(N_BYTES)]
        self._eot = hf.token_to_id(EOT)
        if self._eot is None or any(i is None for i in self._byte_id):
            raise LmlabError("tokenizer.json lacks <|endoftext|> or part of the byte alphabet")

    # --- protocol ---------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self._bytes)

    @property
    def eot_id(self) -> int:
        return self._eot

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise LmlabError(f"can only encode str, not {type(text).__name__}")
        if not text:
            return []
        try:
            return self._encode_valid(text)
        except TypeError:  # lone surrogates cannot cross into Rust
            return self._encode_surrogates(text)

    def encode_array(self, text: str) -> np.ndarray:
        return np.asarray(self.encode(text), dtype=np.int64)

    def decode(self, ids) -> str:
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        table, n = self._bytes, len(self._bytes)
        return from_utf8(b"".join([table[i] for i in ids if 0 <= i < n]))

    def token_nbytes(self) -> np.ndarray:
        return np.array([len(b) for b in self._bytes], dtype=np.int64)

    def token_bytes(self, token_id: int) -> bytes:
        return self._bytes[token_id]

    def token_text(self, token_id: int) -> str:
        data = self._bytes[token_id]
        if not data:
            return self.hf.id_to_token(token_id)
        return data.decode("utf-8", "backslashreplace")

    def save(self, directory) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.hf.save(str(directory / "tokenizer.json"))
        write_meta(directory, self.kind, vocab_size=self.vocab_size, **self.meta)

    @classmethod
    def load(cls, directory) -> "ByteLevelBPE":
        from tokenizers import Tokenizer

        meta = read_meta(directory)
        path = Path(directory) / "tokenizer.json"
        if not path.is_file():
            raise LmlabError(f"{directory}: no tokenizer.json")
        meta = {k: v for k, v in meta.items() if k not in ("kind", "vocab_size")}
        return cls(Tokenizer.from_file(str(path)), meta)

    # --- internals --------------------------------------------------------------------------
    def _encode_valid(self, text: str) -> list[int]:
        encs = batch_encoder(self.hf)(safe_pieces(text), add_special_tokens=False)
        if len(encs) == 1:
            return encs[0].ids
        out: list[int] = []
        for enc in encs:
            out.extend(enc.ids)
        return out

    def _encode_surrogates(self, text: str) -> list[int]:
        out: list[int] = []
        start = 0
        for m in _SURROGATE.finditer(text):
            if m.start() > start:
                out.extend(self._encode_valid(text[start : m.start()]))
            out.extend(self._byte_id[b] for b in m.group().encode("utf-8", UTF8_ERRORS))
            start = m.end()
        if start < len(text):
            out.extend(self._encode_valid(text[start:]))
        return out


def _show_progress() -> bool:
    return sys.stderr.isatty()


def train(text: str, vocab_size: int = DEFAULT_VOCAB, show_progress: bool = False) -> ByteLevelBPE:
    return ByteLevelBPE(train_hf_bpe(text, vocab_size, show_progress=show_progress))


def _trainer(text: str, cfg) -> ByteLevelBPE:
    return train(text, cfg.vocab_size or DEFAULT_VOCAB, show_progress=_show_progress())


register("bpe", _trainer, ByteLevelBPE.load)
