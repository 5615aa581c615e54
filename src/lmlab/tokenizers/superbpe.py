"""SuperBPE (Liu et al. 2025): BPE whose later merges may cross whitespace ("superwords").

Stage 1 is ordinary byte-level BPE (`bpe.py`) up to vocabulary size t, the transition point.
Stage 2 keeps those merges and goes on merging inside larger chunks: the pre-tokenizer now splits
off only digit groups (1-3 digits) and ends a chunk after every run of newlines, so a token may span
several words but never crosses a newline. Stage-2 merges must also keep to at most 4 words per
token and never contain ": " (the paper's rules), and are learned by our incremental trainer
(`superbpe_trainer.py`), because stock HF `tokenizers` cannot resume training from given merges.

The result is one stock `tokenizer.json`: a BPE model with the stage-1 merges followed by the
stage-2 merges in rank order, and the chunking pre-tokenizer. Stage 2 starts from the text chunked
that way and segmented by the stage-1 merges in rank order (computed by HF itself), so stock
encoding, lowest rank first, reproduces the trained segmentation exactly.
"""
from __future__ import annotations

import re
import sys
import time
from collections import Counter
from itertools import chain

import numpy as np

from ..errors import LmlabError
from . import register
from .bpe import (
    DEFAULT_VOCAB, EOT, N_BYTES, ByteLevelBPE, _show_progress, batch_encoder, check_train_args, hf_tokenizer,
    model_vocab_merges, token_str_bytes, train_hf_bpe, without_eot,
)
from .superbpe_trainer import MAX_WORDS, train_stage2

# Digit groups of 1-3 stand alone; everything else runs up to and including a newline run.
SUPER_PATTERN = r"\p{N}{1,3}|[^\r\n\p{N}]+[\r\n]*|[\r\n]+"
DEFAULT_TRANSITION_FRACTION = 0.5


def default_transition(vocab_size: int) -> int:
    return max(N_BYTES + 1, int(vocab_size * DEFAULT_TRANSITION_FRACTION))


def check_transition(vocab_size: int, transition: int) -> None:
    if transition > vocab_size:
        raise LmlabError(f"superbpe transition {transition} is larger than vocab_size {vocab_size}")
    if transition < N_BYTES + 1:
        raise LmlabError(
            f"superbpe transition {transition} is smaller than the byte alphabet ({N_BYTES + 1} ids)"
        )


def numeric_chars(text: str) -> str:
    """The characters of `text` that the stock pre-tokenizer's \\p{N} matches (asked of HF itself)."""
    from tokenizers import Regex, pre_tokenizers

    others = "".join(sorted({c for c in text if not c.isascii()}))
    keep = pre_tokenizers.Split(Regex(r"\P{N}+"), "removed").pre_tokenize_str(others) if others else []
    return "0123456789" + "".join(piece for piece, _ in keep)


def chunk_counts(text: str) -> Counter:
    """Stage-2 chunks of `text` (raw strings) and their counts.

    Python's `re` finds the same chunks as the stock pre-tokenizer's SUPER_PATTERN once \\p{N}
    is spelled as the exact numeric characters present, and is much faster than a round trip of
    every chunk through HF's pre-tokenizer.
    """
    digits = re.escape(numeric_chars(text))
    pattern = re.compile(rf"[{digits}]{{1,3}}|[^\r\n{digits}]+[\r\n]*|[\r\n]+")
    return Counter(pattern.findall(text))


def train_superbpe(text: str, vocab_size: int = DEFAULT_VOCAB, transition: int | None = None,
                   show_progress: bool = False, min_frequency: int = 2, max_words: int = MAX_WORDS):
    """Train a two-stage SuperBPE tokenizer; returns (HF tokenizer, info dict)."""
    from tokenizers import models, pre_tokenizers

    check_train_args(text, vocab_size, "superbpe")
    text = without_eot(text)
    transition = default_transition(vocab_size) if not transition else transition
    check_transition(vocab_size, transition)

    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if show_progress else (lambda msg: None)
    log(f"superbpe stage 1: HF byte-level BPE up to {transition} ids")
    t0 = time.perf_counter()
    stage1 = train_hf_bpe(text, transition, show_progress=show_progress, min_frequency=min_frequency)
    vocab, merges = model_vocab_merges(stage1)
    n1 = stage1.get_vocab_size(with_added_tokens=True)

    t1 = time.perf_counter()
    log(f"superbpe stage 2: segmenting chunks with the {len(merges)} stage-1 merges")
    # Segment every distinct chunk with the stage-1 merges alone (HF, in rank order).
    counts = chunk_counts(text)
    chunks = list(counts)
    seg = hf_tokenizer(models.BPE(vocab=vocab, merges=merges), SUPER_PATTERN)
    seg.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)  # one chunk = one word
    encoded = [e.ids for e in batch_encoder(seg)(chunks, add_special_tokens=False)]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    flat = np.fromiter(chain.from_iterable(encoded), dtype=np.int64, count=int(lengths.sum()))
    weights = np.fromiter((counts[c] for c in chunks), dtype=np.int64, count=len(chunks))
    del encoded, chunks, counts

    id_to_str = {i: s for s, i in vocab.items()}
    token_strs = [id_to_str.get(i, "") for i in range(n1)]
    token_bytes = [b"" if s == EOT or not s else token_str_bytes(s) for s in token_strs]

    bar = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(total=vocab_size - n1, desc="superbpe stage 2", unit="merge", mininterval=0.5)

    def progress(k: int) -> None:
        if k % 64 == 0:
            bar.update(k - bar.n)

    new_merges = train_stage2(
        flat, lengths, weights, token_bytes, vocab_size - n1, max_words=max_words,
        min_frequency=min_frequency, progress=progress if bar is not None else None,
    )
    if bar is not None:
        bar.update(len(new_merges) - bar.n)
        bar.close()
    for a, b in new_merges:
        s = token_strs[a] + token_strs[b]
        vocab[s] = len(token_strs)
        token_strs.append(s)
        merges.append((token_strs[a], token_strs[b]))

    hf = hf_tokenizer(models.BPE(vocab=vocab, merges=merges), SUPER_PATTERN)
    hf.add_special_tokens([EOT])
    t2 = time.perf_counter()
    info = {"transition": n1, "requested_transition": transition, "stage2_merges": len(new_merges),
            "max_words": max_words, "seconds": {"stage1": t1 - t0, "stage2": t2 - t1}}
    return hf, info


class SuperBPETokenizer(ByteLevelBPE):
    kind = "superbpe"

    @property
    def transition(self) -> int:
        """First id learned in stage 2; ids below it are whitespace-bounded subwords."""
        return int(self.meta.get("transition", self.vocab_size))


def train(text: str, vocab_size: int = DEFAULT_VOCAB, transition: int | None = None,
          show_progress: bool = False, **kw) -> SuperBPETokenizer:
    hf, info = train_superbpe(text, vocab_size, transition, show_progress=show_progress, **kw)
    tok = SuperBPETokenizer(hf, {k: v for k, v in info.items() if k != "seconds"})
    tok.train_seconds = info["seconds"]
    return tok


def _trainer(text: str, cfg) -> SuperBPETokenizer:
    return train(text, cfg.vocab_size or DEFAULT_VOCAB, getattr(cfg, "transition", 0) or None,
                 show_progress=_show_progress())


register("superbpe", _trainer, SuperBPETokenizer.load)
