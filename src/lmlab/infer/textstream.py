"""Token ids in, text out, incrementally: only whole UTF-8 characters, and never text that a stop
string could still claim. `lmlab generate` and `lmlab serve` stream through it."""
from __future__ import annotations


def stop_prefix_len(text: str, stop) -> int:
    """Length of the longest tail of `text` that is a proper prefix of some stop string."""
    best = 0
    for s in stop:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best


class TextStream:
    """Feed sampled ids one at a time with `push`; each call returns the text that became final.

    Held back: a trailing partial character (a byte-fallback token that needs the next ones) and
    any tail that may be the start of a stop string. When a stop string appears the text is cut
    just before it and `stopped` is set; `finish` releases what is held back at the end.
    Decoding looks only at the ids since the last whole-character boundary (plus the previous
    window, for tokenizers whose decoding depends on what precedes), so a push costs O(1) in
    the length of the text.

    `text` is the released text; `ends[i]` is the offset in the decoded text where token i's
    characters end (the characters of a partial token count towards the token that completes
    them), so token i contributed text[ends[i-1]:ends[i]] (clipped at `len(text)` after a stop).
    """

    def __init__(self, tokenizer, stop=()):
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.ids: list[int] = []
        self.ends: list[int] = []
        self._decoded = ""      # text of ids[:_read], whole characters
        self._prefix = 0        # decoding windows start here
        self._read = 0
        self.released = 0       # len of the text handed out
        self.stopped = False

    @property
    def text(self) -> str:
        return self._decoded[:self.released]

    def _advance(self, final: bool) -> None:
        window = self.tokenizer.decode(self.ids[self._prefix:])
        if window.endswith("\ufffd") and not final:
            return  # a character split across tokens: wait for its other bytes
        before = self.tokenizer.decode(self.ids[self._prefix:self._read])
        self._decoded += window[len(before):]
        self._prefix, self._read = self._read, len(self.ids)

    def push(self, token: int) -> str:
        """Add one id; return the text that is now final ("" while held back)."""
        if self.stopped:
            raise ValueError("the stream has stopped; no more tokens")
        self.ids.append(int(token))
        self._advance(final=False)
        self.ends.append(len(self._decoded))
        # a stop string cannot begin in released text (its start would have been held back)
        hits = [i for i in (self._decoded.find(s, self.released) for s in self.stop) if i >= 0]
        if hits:
            self._decoded = self._decoded[:min(hits)]
            self.stopped = True
            return self._release(len(self._decoded))
        return self._release(len(self._decoded) - stop_prefix_len(self._decoded, self.stop))

    def finish(self) -> str:
        """The end of the tokens (end-of-text or a length limit): release everything held back."""
        if not self.stopped and self.ids:
            self._advance(final=True)
            self.ends[-1] = len(self._decoded)
        return self._release(len(self._decoded))

    def _release(self, upto: int) -> str:
        piece = self._decoded[self.released:upto] if upto > self.released else ""
        self.released = max(self.released, upto)
        return piece
