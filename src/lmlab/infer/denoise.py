"""Denoising LM format and decoding: a sequence is `source [SEP] target <|endoftext|>`, where
[SEP] is the id after the tokenizer's (data/masking.extra_id). Training (train/objectives.py,
train.objective = "denoise") puts the loss on the target only; `correct` decodes a target for
a source with beam search."""
from __future__ import annotations

from ..data.masking import extra_id
from ..errors import LmlabError
from .beam import beam_search


def pair_ids(tokenizer, source: str, target: str | None = None) -> list[int]:
    """The ids of `source [SEP] target <|endoftext|>` (only `source [SEP]` without a target)."""
    ids = tokenizer.encode(source) + [extra_id(tokenizer)]
    return ids if target is None else ids + tokenizer.encode(target) + [tokenizer.eot_id]


def correct(model, tokenizer, source: str, beam: int = 4, max_new_tokens: int | None = None) -> str:
    """The best-scoring target for a noisy source (ends at <|endoftext|> or the length limit)."""
    if model.cfg.vocab_size <= extra_id(tokenizer):
        raise LmlabError("this model has no separator id: it was not trained with train.objective = \"denoise\"")
    prompt = pair_ids(tokenizer, source)
    budget = max_new_tokens or min(model.cfg.context - len(prompt), int(1.5 * len(prompt)) + 8)
    if budget < 1:
        raise LmlabError(f"the source is {len(prompt)} tokens; the model's context is {model.cfg.context}")
    hyps = beam_search(model, prompt, budget, beam, eot_id=tokenizer.eot_id)
    return tokenizer.decode(hyps[0].ids)
