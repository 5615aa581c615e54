"""Language-model fusion: n-best rescoring and shallow fusion inside a beam search.

Both add the LM to another model's score (an "acoustic" or channel model, AM):
    total = log p_am + W * log p_lm + B * words
with W the LM weight and B a per-word bonus that offsets the LM's preference for short texts.

Tokenizer mismatch: the AM's units (characters, words, its own sub-words) and the LM's tokens
need not agree. Both functions hand the LM only whole-word text: rescoring scores each complete
hypothesis; shallow fusion updates the LM term only when the AM closes a word (a space or the
end), by log p_lm(text up to this word) - log p_lm(text up to the previous word), each text
tokenized by the LM's own tokenizer. So the LM never sees a word cut in the middle, where its
tokenization could differ from the one of the finished word.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

END = ""  # the AM's end-of-hypothesis unit


class TransformerScorer:
    """log p(text) under a causal lmlab model, each text read after <|endoftext|> (batched)."""

    def __init__(self, model, tokenizer, batch_size: int = 16):
        self.model, self.tokenizer, self.batch_size = model.eval(), tokenizer, batch_size

    @torch.no_grad()
    def logprob(self, texts: list[str]) -> list[float]:
        device = next(self.model.parameters()).device
        ctx = self.model.cfg.context
        out = []
        for a in range(0, len(texts), self.batch_size):
            seqs = [[self.tokenizer.eot_id] + self.tokenizer.encode(t) for t in texts[a:a + self.batch_size]]
            if max(map(len, seqs)) > ctx + 1:
                raise ValueError(f"a text is {max(map(len, seqs)) - 1} tokens; the LM's context is {ctx}")
            T = max(map(len, seqs)) - 1
            x = torch.full((len(seqs), max(T, 1)), self.tokenizer.eot_id, dtype=torch.long)
            y = torch.full((len(seqs), max(T, 1)), -1, dtype=torch.long)
            for i, s in enumerate(seqs):
                x[i, :len(s) - 1], y[i, :len(s) - 1] = torch.tensor(s[:-1]), torch.tensor(s[1:])
            logp = F.log_softmax(self.model(x.to(device))[0].float(), -1)
            picked = logp.gather(-1, y.clamp(min=0).to(device)[..., None])[..., 0] * (y >= 0).to(device)
            out.extend(picked.sum(1).double().cpu().tolist())
        return out


def combine(am: float, lm: float, words: int, weight: float, bonus: float) -> float:
    return am + weight * lm + bonus * words


def rescore(hypotheses: list[dict], scorer, weight: float, bonus: float = 0.0) -> dict:
    """Rescore one n-best list ([{"text", "score"}]): each hypothesis gets "lm" and "total";
    "chosen" is the text with the highest total (the first on ties)."""
    lm = scorer.logprob([h["text"] for h in hypotheses])
    scored = [{**h, "lm": l, "total": combine(h["score"], l, len(h["text"].split()), weight, bonus)}
              for h, l in zip(hypotheses, lm)]
    best = max(range(len(scored)), key=lambda i: (scored[i]["total"], -i))
    return {"hypotheses": scored, "chosen": scored[best]["text"]}


@dataclass
class FusedHypothesis:
    text: str
    am: float          # sum of the AM's log-probabilities
    lm: float          # log p_lm of the text up to its last finished word
    score: float       # am + W * lm + B * words (what the beam ranks by)
    done: bool = False


def shallow_fusion(am_step: Callable[[list[str]], list[dict]], scorer, weight: float, bonus: float = 0.0,
                   beam: int = 4, max_units: int = 200, top: int = 8) -> list[FusedHypothesis]:
    """Beam search over an AM that emits text units, with the LM fused at word boundaries.

    am_step(prefixes) gives, for each prefix text, {unit: log p_am(unit | prefix)}; a unit is a
    string (a character, a word piece, " ") and END ("") finishes the hypothesis. Only each
    beam's `top` most likely units are expanded. Returns the finished hypotheses, best first
    (the live ones too if `max_units` is reached first).
    """
    live = [FusedHypothesis("", 0.0, 0.0, 0.0)]
    finished: list[FusedHypothesis] = []
    lm_cache: dict[str, float] = {"": 0.0}

    def lm_of(text: str) -> float:
        if text not in lm_cache:
            lm_cache[text] = scorer.logprob([text])[0]
        return lm_cache[text]

    for _ in range(max_units):
        if not live:
            break
        candidates = []
        for hyp, dist in zip(live, am_step([h.text for h in live])):
            for unit, lp in sorted(dist.items(), key=lambda kv: -kv[1])[:top]:
                if lp == -math.inf:
                    continue
                text = hyp.text + unit
                closes = unit == END or unit.endswith(" ")
                lm = lm_of(text.rstrip(" ")) if closes else hyp.lm
                words = len(text.split()) if closes else len(hyp.text.split())
                am = hyp.am + lp
                candidates.append(FusedHypothesis(text, am, lm, combine(am, lm, words, weight, bonus), unit == END))
        candidates.sort(key=lambda h: -h.score)
        live = []
        for h in candidates:
            if h.done:
                finished.append(h)
            elif len(live) < beam:
                live.append(h)
            if len(live) == beam:
                break
        if bonus <= 0 and finished and live and max(f.score for f in finished) >= live[0].score:
            break  # more units only add log-probabilities (<= 0): the live beams cannot win any more
    if not finished:  # the unit limit: close the live beams with their last word scored
        for h in live:
            lm = lm_of(h.text.rstrip(" "))
            finished.append(FusedHypothesis(h.text, h.am, lm, combine(h.am, lm, len(h.text.split()), weight, bonus), True))
    return sorted(finished, key=lambda h: -h.score)
