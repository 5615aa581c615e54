"""Training objectives: what a step's (inputs, targets) are. `train.objective` picks one.

- clm: next-token prediction on random windows (the default; lmlab.data.loader).
- mlm: masked-LM (BERT). In each window round(mask_rate * T) positions (single tokens, or spans
  of mean length mask_span) are chosen; of those 80% become [MASK], 10% a random token, 10% stay.
  Targets are the original tokens there and -1 (ignored by the loss) everywhere else. Pair it with
  model.causal = false. [MASK] is one extra id, the tokenizer's vocab_size (the model's vocabulary
  gets one more row, as meta-tokens do), never a target.
- denoise: (noisy source, clean target) pairs as `source [SEP] target <|endoftext|>` (infer/
  denoise.py), loss on the target only (and its end). Each row decodes a random window of the
  training text, keeps its whole words and noises them with train.noise (data/noise.py, the
  similar-sounding substitutions drawn from the corpus's own words); rows are padded with -1
  targets. [SEP] is the same extra id as [MASK].

Every choice is drawn from (train.seed, step, micro), like the windows, so a run killed and
resumed sees exactly the batches of an uninterrupted one.
"""
from __future__ import annotations

import numpy as np
import torch

from ..data import loader
from ..data.masking import choose_positions, extra_id
from .. import config
from ..errors import LmlabError

OBJECTIVES = config.CHOICES["train.objective"]
MASK_STREAM = 1  # separates the masking draws from the window draws of the same (seed, step, micro)


def check(tc) -> None:
    """The objective's fields against config.RANGES/CHOICES (also for a TrainConfig built in code)."""
    for name in ("objective", "mask_rate", "mask_span"):
        config.check_field(f"train.{name}", getattr(tc, name))


def reserved_ids(tc) -> int:
    """Ids the objective adds after the tokenizer's: [MASK] (mlm) or the separator (denoise)."""
    check(tc)
    return 0 if tc.objective == "clm" else 1


special_id = extra_id  # [MASK] for mlm, the source/target separator for denoise


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
    return draw_denoise(cfg, ids, tokenizer, step, micro)


DENOISE_STREAM, DENOISE_EVAL_STREAM = 2, 3
_NOISES: dict = {}


def noise_for(spec: str, ids: np.ndarray, tokenizer):
    """The Noise of a spec, its lexicon the words of the text `ids` hold (built once per process)."""
    from ..data.noise import Noise, vocabulary

    key = (spec, id(ids), len(ids))
    if key not in _NOISES:
        if len(_NOISES) >= 4:  # the training and validation splits of one run are the usual two
            _NOISES.clear()
        _NOISES[key] = Noise(spec, vocabulary(tokenizer.decode(np.asarray(ids))))
    return _NOISES[key]


def draw_denoise(cfg, ids: np.ndarray, tokenizer, step: int, micro: int = 0, stream: int = DENOISE_STREAM):
    from ..infer.denoise import pair_ids

    tc, T = cfg.train, cfg.model.context
    rng = np.random.default_rng([tc.seed, step, micro, stream])
    noise = noise_for(tc.noise, ids, tokenizer)
    span = max(8, int(0.45 * T))  # clean text of about half the context, so source + target fit
    inputs = torch.full((tc.batch_size, T), tokenizer.eot_id, dtype=torch.long)
    targets = torch.full((tc.batch_size, T), -1, dtype=torch.long)
    for b in range(tc.batch_size):
        start = int(rng.integers(0, max(1, len(ids) - span)))
        words = tokenizer.decode(np.asarray(ids[start:start + span])).split()[1:-1]  # whole words only
        noisy = noise.words(words, rng)
        while True:
            source = " ".join(w for ws in noisy for w in ws)
            seq = pair_ids(tokenizer, source, " ".join(words))
            if len(seq) <= T + 1 or not words:
                break
            words, noisy = words[:-1], noisy[:-1]
        seq = seq[:T + 1]
        n, first = len(seq) - 1, len(tokenizer.encode(source))  # inputs[first] is [SEP]
        inputs[b, :n] = torch.tensor(seq[:-1])
        targets[b, first:n] = torch.tensor(seq[first + 1:])
    return inputs, targets


def denoise_split_scores(cfg, tokenizer, model, ids, n_batches: int, device, dtype) -> dict:
    """Validation for denoise: target-only loss on fixed pairs drawn from the validation split."""
    import math

    from ..device import autocast

    was_training = model.training
    model.eval()
    nats, count, nbytes = 0.0, 0, 0
    nb = torch.from_numpy(tokenizer.token_nbytes())
    with torch.no_grad():
        for i in range(n_batches):
            x, y = draw_denoise(cfg, ids, tokenizer, i, 0, DENOISE_EVAL_STREAM)
            with autocast(device, dtype):
                logits, _ = model(x.to(device))
            keep = y >= 0
            nats += float(torch.nn.functional.cross_entropy(logits[keep.to(device)].float(), y[keep].to(device),
                                                            reduction="sum"))
            count += int(keep.sum())
            tgt = y[keep]
            nbytes += int(nb[tgt.clamp(max=len(nb) - 1)].sum())
    model.train(was_training)
    loss = nats / max(count, 1)
    return {"val_loss": loss, "val_ppl": math.exp(min(loss, 700)), "val_bpb": nats / math.log(2) / max(nbytes, 1)}


def evaluator(cfg, tokenizer, clm_evaluate):
    """The validation function for the objective, with clm_evaluate's signature."""
    if cfg.train.objective == "clm":
        return clm_evaluate
    if cfg.train.objective == "denoise":
        return lambda model, ids, token_nbytes, n_windows, batch_size, context, device, dtype: \
            denoise_split_scores(cfg, tokenizer, model, ids, max(1, n_windows // batch_size), device, dtype)
    from ..eval.mlm import masked_split_scores

    def evaluate(model, ids, token_nbytes, n_windows, batch_size, context, device, dtype):
        return masked_split_scores(model, ids, token_nbytes, special_id(tokenizer), n_windows, batch_size,
                                   context, device, dtype, rate=cfg.train.mask_rate, mean_span=cfg.train.mask_span)

    return evaluate
