"""Word error rate: word-level Levenshtein distance (substitutions + deletions + insertions)
divided by the number of reference words. Words are whitespace-separated, compared exactly."""
from __future__ import annotations


def edit_distance(ref: list, hyp: list) -> int:
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def wer(refs: list[str], hyps: list[str]) -> float:
    """Corpus WER: total edits over total reference words (not a mean of per-sentence rates)."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    edits = sum(edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps))
    return edits / max(1, sum(len(r.split()) for r in refs))
