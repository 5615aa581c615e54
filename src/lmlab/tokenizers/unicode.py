"""Unicode-centric tokenizer: code points plus frequent in-word 2-5-character n-grams.

This is the tokenizer of the frozen-glyph paper (PAPERS.md section 1), without its <unk>:
a character that has no id of its own is spelled as its UTF-8 bytes, so every Python string
(astral characters, emoji ZWJ sequences, private-use characters, lone surrogates) round-trips.

Two layouts:
- "corpus" (kind `unicode`): ids 0-255 are byte fallbacks, 256 is <|endoftext|>, then one id per
  character (printable ASCII always, then the corpus's characters, most frequent first), then
  n-grams, up to `tokenizer.vocab_size` (0 = 4096).
- "bmp" (kind `unicode-bmp`, the paper's layout for parity): id == code point for every BMP
  character except surrogates (D800-DFFF) and the private-use block (E000-F8FF); those 8,448
  slots and 0xFFFF hold 256 byte fallbacks, <|endoftext|> and n-grams. 65,536 ids by default;
  a larger `tokenizer.vocab_size` appends more n-grams.

N-grams are learned inside words (runs of letters, marks and digits), ranked by how many
characters they would save (count * (length - 1)); a word is segmented into the fewest tokens
(dynamic programming over its characters), everything outside words is one token per character.
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter

import numpy as np

from ..errors import LmlabError
from . import register
from .base import from_utf8, read_meta, to_utf8, write_meta

EOT_TEXT = "<|endoftext|>"
MAX_NGRAM = 5
DEFAULT_VOCAB = 4096
BMP_SIZE = 0x10000
ALWAYS_CHARS = "\n\t" + "".join(chr(c) for c in range(0x20, 0x7F))

# Piece types per id.
TEXT, BYTE, SPECIAL, UNUSED = 0, 1, 2, 3


def _is_word_char(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "LMN"


def _bmp_own_id(cp: int) -> bool:
    return cp < BMP_SIZE and not (0xD800 <= cp <= 0xF8FF) and cp != 0xFFFF


def bmp_slots() -> list[int]:
    """The BMP ids that are not a character's own id (surrogates, private use, 0xFFFF)."""
    return list(range(0xD800, 0xF900)) + [0xFFFF]


class UnicodeTokenizer:
    def __init__(self, layout: str, chars: list[str], ngrams: list[str], vocab_size: int | None = None):
        if layout not in ("corpus", "bmp"):
            raise LmlabError(f"unknown unicode tokenizer layout {layout!r}; valid: corpus, bmp")
        self.layout = layout
        self.kind = "unicode" if layout == "corpus" else "unicode-bmp"
        self.ngrams = list(ngrams)
        if layout == "corpus":
            self.chars = list(chars)
            size = 257 + len(self.chars) + len(self.ngrams)
            self._size = max(size, vocab_size or 0)
            self._byte0, self._eot = 0, 256
            self._ids = {ch: 257 + i for i, ch in enumerate(self.chars)}
            ngram_ids = list(range(257 + len(self.chars), size))
        else:
            self.chars = []
            slots = bmp_slots()
            self._byte0, self._eot = slots[0], slots[256]
            free = slots[257:]
            self._size = max(BMP_SIZE + max(0, len(self.ngrams) - len(free)), vocab_size or BMP_SIZE)
            ngram_ids = (free + list(range(BMP_SIZE, self._size)))[: len(self.ngrams)]
            self._ids = {}
        self._pieces: dict[int, str] = dict(zip(ngram_ids, self.ngrams))
        if layout == "corpus":
            self._pieces.update((257 + i, ch) for i, ch in enumerate(self.chars))
        self._ids.update(zip(self.ngrams, ngram_ids))
        self._cache: dict[str, list[int]] = {}
        self._seen: set[str] = set()
        self._word_re = None

    # ---- vocabulary -------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self._size

    @property
    def eot_id(self) -> int:
        return self._eot

    def _piece_type(self, i: int) -> int:
        if self._byte0 <= i < self._byte0 + 256:
            return BYTE
        if i == self._eot:
            return SPECIAL
        if self.layout == "bmp" and _bmp_own_id(i):
            return TEXT
        return TEXT if i in self._pieces else UNUSED

    def token_text(self, token_id: int) -> str:
        i = int(token_id)
        kind = self._piece_type(i)
        if kind == BYTE:
            return f"<0x{i - self._byte0:02X}>"
        if kind == SPECIAL:
            return EOT_TEXT
        if kind == UNUSED:
            return f"<unused_{i:X}>"
        return chr(i) if self.layout == "bmp" and _bmp_own_id(i) else self._pieces[i]

    def token_nbytes(self) -> np.ndarray:
        n = np.zeros(self._size, dtype=np.int64)
        n[self._byte0:self._byte0 + 256] = 1
        if self.layout == "bmp":
            cps = np.arange(BMP_SIZE)
            own = np.array([_bmp_own_id(c) for c in range(BMP_SIZE)])
            n[cps[own]] = np.where(cps[own] < 0x80, 1, np.where(cps[own] < 0x800, 2, 3))
        for i, piece in self._pieces.items():
            n[i] = len(to_utf8(piece))
        return n

    # ---- encoding ---------------------------------------------------------------------------
    def _char_id(self, ch: str) -> int | None:
        if self.layout == "bmp":
            return ord(ch) if _bmp_own_id(ord(ch)) else None
        return self._ids.get(ch)

    def _bytes_of(self, ch: str) -> list[int]:
        return [self._byte0 + b for b in to_utf8(ch)]

    def _encode_word(self, word: str) -> list[int]:
        """Fewest-token segmentation of one word; characters without an id become bytes."""
        n = len(word)
        best = [0] + [n + 1] * n          # best[i]: fewest tokens for word[:i]
        back = [0] * (n + 1)
        for end in range(1, n + 1):
            for length in range(1, min(MAX_NGRAM, end) + 1):
                piece = word[end - length:end]
                if length == 1 or piece in self._ids:
                    cost = best[end - length] + 1
                    if cost < best[end] or (cost == best[end] and length > end - back[end]):
                        best[end], back[end] = cost, end - length
        ids: list[int] = []
        end = n
        while end > 0:
            start = back[end]
            piece = word[start:end]
            i = self._ids.get(piece) if end - start > 1 else self._char_id(piece)
            ids[:0] = [i] if i is not None else self._bytes_of(piece)
            end = start
        return ids

    def _splitter(self, text: str):
        """Regex that splits text into words and single other characters (grown as needed)."""
        new = set(text) - self._seen
        if new or self._word_re is None:
            self._seen |= new
            word_chars = "".join(re.escape(c) for c in sorted(self._seen) if _is_word_char(c))
            self._word_re = re.compile(f"[{word_chars}]+|." if word_chars else ".", re.DOTALL)
        return self._word_re

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        cache = self._cache
        for piece in self._splitter(text).findall(text):
            enc = cache.get(piece)
            if enc is None:
                enc = self._encode_word(piece) if len(piece) > 1 else (
                    [self._char_id(piece)] if self._char_id(piece) is not None else self._bytes_of(piece))
                if len(cache) < 1_000_000:
                    cache[piece] = enc
            ids.extend(enc)
        return ids

    def encode_array(self, text: str) -> np.ndarray:
        return np.asarray(self.encode(text), dtype=np.int64)

    def decode(self, ids) -> str:
        out: list[str] = []
        pending = bytearray()
        for i in ids:
            i = int(i)
            if self._byte0 <= i < self._byte0 + 256:
                pending.append(i - self._byte0)
                continue
            if pending:
                out.append(from_utf8(bytes(pending)))
                pending.clear()
            if 0 <= i < self._size and self._piece_type(i) == TEXT:
                out.append(self.token_text(i))
        if pending:
            out.append(from_utf8(bytes(pending)))
        return "".join(out)

    # ---- persistence ------------------------------------------------------------------------
    def save(self, directory) -> None:
        write_meta(directory, self.kind, layout=self.layout, vocab_size=self._size,
                   chars=self.chars, ngrams=self.ngrams)

    @classmethod
    def load(cls, directory) -> "UnicodeTokenizer":
        meta = read_meta(directory)
        return cls(meta["layout"], meta["chars"], meta["ngrams"], meta["vocab_size"])


# ---- training ---------------------------------------------------------------------------------
def count_words(text: str) -> Counter:
    tok = UnicodeTokenizer("corpus", [], [])
    return Counter(w for w in tok._splitter(text).findall(text) if len(w) > 1 or _is_word_char(w))


def rank_ngrams(words: Counter, allowed, limit: int) -> list[str]:
    """In-word 2-5-grams of known characters, ranked by characters saved (count * (len - 1))."""
    if limit <= 0:
        return []
    counts: Counter = Counter()
    for word, freq in words.items():
        n = len(word)
        for length in range(2, min(MAX_NGRAM, n) + 1):
            for start in range(n - length + 1):
                counts[word[start:start + length]] += freq
    scored = [(c * (len(g) - 1), g) for g, c in counts.items() if c >= 2 and all(allowed(ch) for ch in g)]
    scored.sort(key=lambda x: (-x[0], x[1]))
    return [g for _, g in scored[:limit]]


def train_corpus(text: str, vocab_size: int = 0) -> UnicodeTokenizer:
    vocab_size = vocab_size or DEFAULT_VOCAB
    counts = Counter(text)
    ranked = sorted(counts, key=lambda c: (-counts[c], ord(c)))
    chars = list(ALWAYS_CHARS) + [c for c in ranked if c not in ALWAYS_CHARS and not 0xD800 <= ord(c) <= 0xDFFF]
    if 257 + len(ALWAYS_CHARS) > vocab_size:
        raise LmlabError(f"tokenizer.vocab_size={vocab_size} is too small for kind unicode "
                         f"(needs at least {257 + len(ALWAYS_CHARS)})")
    chars = chars[: vocab_size - 257]
    known = set(chars)
    ngrams = rank_ngrams(count_words(text), known.__contains__, vocab_size - 257 - len(chars))
    return UnicodeTokenizer("corpus", chars, ngrams, vocab_size)


def train_bmp(text: str, vocab_size: int = 0) -> UnicodeTokenizer:
    vocab_size = vocab_size or BMP_SIZE
    if vocab_size < BMP_SIZE:
        raise LmlabError(f"tokenizer.vocab_size={vocab_size}: kind unicode-bmp needs at least {BMP_SIZE}")
    n_ngrams = len(bmp_slots()) - 257 + (vocab_size - BMP_SIZE)
    ngrams = rank_ngrams(count_words(text), lambda ch: _bmp_own_id(ord(ch)), n_ngrams) if text else []
    return UnicodeTokenizer("bmp", [], ngrams, vocab_size)


register("unicode", lambda text, cfg: train_corpus(text, cfg.vocab_size), UnicodeTokenizer.load)
register("unicode-bmp", lambda text, cfg: train_bmp(text, cfg.vocab_size), UnicodeTokenizer.load)
