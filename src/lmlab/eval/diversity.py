"""Diversity and repetition of generated text, on whitespace-separated words.

distinct-n (Li et al. 2016): unique n-grams / all n-grams, pooled over a set of texts.
rep-n (Welleck et al. 2019): the fraction of a text's n-grams that repeat an earlier one.
"""
from __future__ import annotations

import re


def words(text: str) -> list[str]:
    return text.split()


def ngrams(tokens: list, n: int) -> list[tuple]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: list[str], n: int) -> float:
    grams = [g for t in texts for g in ngrams(words(t), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def rep_n(text: str, n: int) -> float:
    grams = ngrams(words(text), n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def is_empty(text: str) -> bool:
    return re.search(r"\w", text) is None


def is_degenerate(text: str, n: int = 3, max_rep: float = 0.3) -> bool:
    """Empty (no word character) or repetitive (more than `max_rep` of its word n-grams repeat)."""
    return is_empty(text) or rep_n(text, n) > max_rep


def summary(texts: list[str]) -> dict:
    """Mean per-text repetition and degeneracy, and pooled distinct-n, for a set of generations."""
    k = max(len(texts), 1)
    return {
        "distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2), "distinct_3": distinct_n(texts, 3),
        "rep_2": sum(rep_n(t, 2) for t in texts) / k, "rep_4": sum(rep_n(t, 4) for t in texts) / k,
        "degenerate": sum(is_degenerate(t) for t in texts) / k, "n": len(texts),
    }
