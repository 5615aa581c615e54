"""Training objectives: what a step's (inputs, targets) are. `train.objective` picks one.

- clm: next-token prediction on random windows (the default; lmlab.data.loader).
- mlm: masked-LM (BERT). In each window round(mask_rate * T) positions (single tokens, or spans
  of mean length mask_span) are chosen; of those 80% become [MASK], 10% a random token, 10% stay.
  Targets are the original tokens there and -1 (ignored by the loss) everywhere else. Pair it with
  model.causal = false. [MASK] is one extra id, the tokenizer's vocab_size (the model's vocabulary
  gets one more row, as meta-tokens do), never a target.
- denoise: see draw_denoise below.

Every choice is drawn from (train.seed, step, micro), like the windows, so a run killed and
resumed sees exactly the batches of an uninterrupted one.
"""
from __future__ import annotations

import numpy as np
import torch

from ..data import loader
from ..data.masking import choose_positions
from ..errors import LmlabError

OBJECTIVES = ("clm", "mlm", "denoise")
MASK_STREAM = 1  # separates the masking draws from the window draws of the same (seed, step, micro)


def check(tc) -> None:
    if tc.objective not in OBJECTIVES:
        raise LmlabError(f"unknown train.objective {tc.objective!r}; valid: {', '.join(OBJECTIVES)}")
    if not 0.0 < tc.mask_rate <= 1.0:
        raise LmlabError(f"train.mask_rate must be in (0, 1], got {tc.mask_rate}")
    if tc.mask_span < 1.0:
        raise LmlabError(f"train.mask_span must be at least 1 (single tokens), got {tc.mask_span}")


def reserved_ids(tc) -> int:
    """Ids the objective adds after the tokenizer's: [MASK] (mlm) or the separator (denoise)."""
    check(tc)
    return 0 if tc.objective == "clm" else 1


def special_id(tokenizer) -> int:
    """The objective's extra id: [MASK] for mlm, the source/target separator for denoise."""
    return tokenizer.vocab_size


def mask_batch(x: torch.Tensor, rng: np.random.Generator, rate: float, mean_span: float, mask_id: int):
    """(inputs, targets) for a masked LM from token windows x [B, T] (80/10/10 replacement)."""
    B, T = x.shape
    chosen = choose_positions(rng, B, T, rate, mean_span)
    kind = rng.random((B, T))
    # the 10% random replacements are tokens of other random positions of the batch: drawn from the
    # corpus's own unigram distribution, not uniform over ids (most char/byte ids never occur)
    donors = x.reshape(-1)[torch.from_numpy(rng.integers(0, B * T, size=(B, T)))]
    chosen_t, kind_t = torch.from_numpy(chosen), torch.from_numpy(kind)
    inputs = torch.where(chosen_t & (kind_t < 0.8), torch.full_like(x, mask_id), x)
    inputs = torch.where(chosen_t & (kind_t >= 0.8) & (kind_t < 0.9), donors, inputs)
    targets = torch.where(chosen_t, x, torch.full_like(x, -1))
    return inputs, targets


def draw(cfg, ids: np.ndarray, tokenizer, step: int, micro: int = 0):
    """The (inputs, targets) of one micro-batch of `step` under cfg.train.objective."""
    tc = cfg.train
    context = cfg.model.context
    if tc.objective == "clm":
        return loader.random_batch(ids, tc.batch_size, context, tc.seed, step, micro)
    extra = special_id(tokenizer)
    if extra >= cfg.model.vocab_size:
        raise LmlabError(f"train.objective={tc.objective} needs model.vocab_size > the tokenizer's "
                         f"{tokenizer.vocab_size} (one extra id); leave model.vocab_size = 0")
    if tc.objective == "mlm":
        x, _ = loader.random_batch(ids, tc.batch_size, context, tc.seed, step, micro)
        rng = np.random.default_rng([tc.seed, step, micro, MASK_STREAM])
        return mask_batch(x, rng, tc.mask_rate, tc.mask_span, extra)
    from .denoise import draw_denoise

    return draw_denoise(cfg, ids, tokenizer, step, micro, extra)


def evaluator(cfg, tokenizer, clm_evaluate):
    """The validation function for the objective, with clm_evaluate's signature."""
    if cfg.train.objective != "mlm":
        return clm_evaluate
    from ..eval.mlm import masked_split_scores

    def evaluate(model, ids, token_nbytes, n_windows, batch_size, context, device, dtype):
        return masked_split_scores(model, ids, token_nbytes, special_id(tokenizer), n_windows, batch_size,
                                   context, device, dtype, rate=cfg.train.mask_rate, mean_span=cfg.train.mask_span)

    return evaluate
