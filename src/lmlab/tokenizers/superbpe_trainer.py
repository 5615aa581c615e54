"""Stage 2 of SuperBPE: an incremental BPE trainer that continues from existing merges.

The corpus arrives already segmented (each pre-token chunk encoded with the stage-1 merges) and
deduplicated (chunk -> count). All symbols live in one flat array with doubly linked neighbours;
pair counts sit in a dict, pair occurrences in per-pair position lists, and the best pair comes
from a max-heap with lazy deletion: a stale entry is re-pushed with its true count when popped.
A merge touches only the positions where it applies and their two neighbours, so the cost of the
whole run is proportional to the number of symbols merged away, not to merges x corpus size.

Occurrences of a pair are merged left to right within a chunk (sorted when both halves are the
same token), and every merge makes a brand-new token, so stock BPE encoding (lowest rank first,
leftmost first) reproduces exactly the segmentation trained here.
"""
from __future__ import annotations

import heapq
import re
from typing import Callable

import numpy as np

_WORD = re.compile(rb"\S+")
_SPACE = frozenset(b" \t\n\r\x0b\x0c")  # what \S excludes in a bytes pattern
MAX_WORDS = 4


def n_words(token: bytes) -> int:
    """Words in a token: runs of non-whitespace bytes."""
    return len(_WORD.findall(token))


def superword_ok(token: bytes, max_words: int = MAX_WORDS) -> bool:
    """SuperBPE's stage-2 rules: at most `max_words` words, and never a colon followed by a space."""
    return b": " not in token and n_words(token) <= max_words


class _Shape:
    """Per-token facts from which the rules for a pair follow without building its bytes."""

    def __init__(self, token_bytes: list[bytes]):
        self.words, self.lead, self.trail, self.colon, self.space = [], [], [], [], []
        for t in token_bytes:
            self.add(t)

    def add(self, t: bytes) -> None:
        self.words.append(n_words(t))
        self.lead.append(bool(t) and t[0] not in _SPACE)   # starts inside a word
        self.trail.append(bool(t) and t[-1] not in _SPACE)  # ends inside a word
        self.colon.append(t.endswith(b":"))
        self.space.append(t.startswith(b" "))

    def arrays(self):
        return tuple(np.array(x) for x in (self.words, self.lead, self.trail, self.colon, self.space))


def train_stage2(
    ids: np.ndarray,
    lengths: np.ndarray,
    counts: np.ndarray | None,
    token_bytes: list[bytes],
    n_merges: int,
    max_words: int = MAX_WORDS,
    min_frequency: int = 2,
    progress: Callable[[int], None] | None = None,
) -> list[tuple[int, int]]:
    """Learn up to `n_merges` merges over chunks of token ids.

    `ids` holds all chunks back to back (`lengths` each, seen `counts` times, default once);
    `token_bytes[i]` is the byte string of existing token i. New token k gets id
    len(token_bytes) + k and is appended to `token_bytes`. A pair is skipped when its token
    breaks `superword_ok` or already exists under another id. Returns the merges, in rank order,
    as (left id, right id).
    """
    ids = np.asarray(ids, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0 or n_merges <= 0:
        return []
    counts = np.ones(len(lengths), dtype=np.int64) if counts is None else np.asarray(counts, dtype=np.int64)
    weight = np.repeat(counts, lengths)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    nxt = np.arange(1, total + 1, dtype=np.int64)
    nxt[ends - 1] = -1
    prv = np.arange(-1, total - 1, dtype=np.int64)
    prv[starts] = -1

    shape = _Shape(token_bytes)
    words, lead, trail, colon, space = shape.words, shape.lead, shape.trail, shape.colon, shape.space
    existing = {b: i for i, b in enumerate(token_bytes) if b}

    # Pair codes a*M+b; M leaves room for every id the run can make.
    M = len(token_bytes) + n_merges + 1
    left = np.flatnonzero(nxt >= 0)
    a0, b0 = ids[left], ids[left + 1]
    W, L, T, C, S = shape.arrays()
    ok0 = (W[a0] + W[b0] - (T[a0] & L[b0]) <= max_words) & ~(C[a0] & S[b0])
    left, codes = left[ok0], a0[ok0] * M + b0[ok0]
    order = np.argsort(codes, kind="stable")
    left_sorted, codes = left[order], codes[order]
    cuts = np.r_[0, np.flatnonzero(np.diff(codes)) + 1, len(codes)]
    sums = np.add.reduceat(weight[left_sorted], cuts[:-1]) if len(codes) else codes
    uniq = codes[cuts[:-1]].tolist()
    pair_count = dict(zip(uniq, sums.tolist()))
    # Initial occurrences stay in one sorted array (a slice per pair); later ones go in lists.
    first_span = dict(zip(uniq, zip(cuts[:-1].tolist(), cuts[1:].tolist())))
    where: dict[int, list[int]] = {}
    heap = [(-c, code) for code, c in pair_count.items()]
    heapq.heapify(heap)

    sym = ids.tolist()
    nxt_l = nxt.tolist()
    prv_l = prv.tolist()
    wt = weight.tolist()
    del nxt, prv, weight, left, codes, order, a0, b0, ok0

    merges: list[tuple[int, int]] = []
    while heap and len(merges) < n_merges:
        neg, code = heapq.heappop(heap)
        c = pair_count.get(code, 0)
        if c != -neg:  # stale: re-queue with the true count
            if c >= min_frequency:
                heapq.heappush(heap, (-c, code))
            continue
        if c < min_frequency:
            break
        a, b = divmod(code, M)
        new_bytes = token_bytes[a] + token_bytes[b]
        del pair_count[code]
        positions = where.pop(code, [])
        span = first_span.pop(code, None)
        if new_bytes in existing:  # another merge made this token already; keep ranks unique
            continue
        if span is not None:
            positions = left_sorted[span[0] : span[1]].tolist() + positions
        if a == b:  # overlapping runs (x x x) merge left to right, as stock encoding does
            positions.sort()
        new = len(token_bytes)
        token_bytes.append(new_bytes)
        existing[new_bytes] = new
        shape.add(new_bytes)
        merges.append((a, b))
        touched = set()

        def relink(pos: int, x: int, y: int, old: int, w: int) -> None:
            """The pair starting at `pos` was `old` and is now (x, y)."""
            if old in pair_count:
                pair_count[old] -= w
            # the rule of `superword_ok`, from token shapes
            if words[x] + words[y] - (trail[x] and lead[y]) <= max_words and not (colon[x] and space[y]):
                pc = x * M + y
                pair_count[pc] = pair_count.get(pc, 0) + w
                where.setdefault(pc, []).append(pos)
                touched.add(pc)

        for i in positions:
            if sym[i] != a:
                continue
            j = nxt_l[i]
            if j < 0 or sym[j] != b:
                continue
            p, n = prv_l[i], nxt_l[j]
            sym[i], sym[j], nxt_l[i] = new, -1, n
            if p >= 0:
                relink(p, sym[p], new, sym[p] * M + a, wt[i])
            if n >= 0:
                prv_l[n] = i
                relink(i, new, sym[n], b * M + sym[n], wt[i])
        for pc in touched:
            heapq.heappush(heap, (-pair_count[pc], pc))
        if progress is not None:
            progress(len(merges))
    return merges


def apply_merges(ids: list[int], merges: list[tuple[int, int]], first_new: int) -> list[int]:
    """Reference (slow) sequential application of learned merges to one chunk, for tests."""
    ids = list(ids)
    for k, (a, b) in enumerate(merges):
        out, i = [], 0
        while i < len(ids):
            if i + 1 < len(ids) and ids[i] == a and ids[i + 1] == b:
                out.append(first_new + k)
                i += 2
            else:
                out.append(ids[i])
                i += 1
        ids = out
    return ids
