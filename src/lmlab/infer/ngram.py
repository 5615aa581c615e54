"""A character n-gram LM (interpolated Witten-Bell smoothing), the baseline for LM rescoring.

p(c | h) = (count(h c) + n1(h) * p(c | h')) / (count(h) + n1(h)) where h' drops the oldest
character of h and n1(h) is the number of distinct characters seen after h; the order-0 model
is add-one over the characters seen in training plus one unseen class. Text starts after a
start-of-text context, so the first characters are scored like those after a line break.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict

START = "\n"


class CharNgramLM:
    def __init__(self, text: str, order: int = 5):
        if order < 1:
            raise ValueError("order must be at least 1")
        self.order = order
        self.counts: dict[str, Counter] = defaultdict(Counter)
        padded = START * (order - 1) + text
        for n in range(order):  # history length n
            for i in range(order - 1, len(padded)):
                self.counts[padded[i - n:i]][padded[i]] += 1
        self.totals = {h: sum(c.values()) for h, c in self.counts.items()}
        self.vocab = len(self.counts[""]) + 1

    def prob(self, history: str, char: str) -> float:
        p = (self.counts[""].get(char, 0) + 1) / (self.totals[""] + self.vocab)
        for n in range(1, self.order):
            h = history[-n:] if len(history) >= n else None
            if h is None or h not in self.totals:
                break
            seen = self.counts[h]
            p = (seen.get(char, 0) + len(seen) * p) / (self.totals[h] + len(seen))
        return p

    def logprob(self, texts: list[str]) -> list[float]:
        """Natural-log probability of each whole text."""
        out = []
        for text in texts:
            padded = START * (self.order - 1) + text
            out.append(sum(math.log(self.prob(padded[i - self.order + 1:i], padded[i]))
                           for i in range(self.order - 1, len(padded))))
        return out
