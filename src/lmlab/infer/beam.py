"""Beam search and conditional beam search, with the KV cache (one batch row per beam).

Plain beam search ranks hypotheses by their total log-probability (optionally divided by
length ** length_penalty once finished). Conditional beam search ranks by
    log p(y<=t | x) + weight * log P(attribute | y<=t)
where the attribute scorer (e.g. `degeneracy.attribute_fn`: "not degenerate") judges a prefix;
it is a property of the prefix, not a sum over steps. To keep it cheap, only each beam's
`attribute_top` most likely next tokens are scored.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import LmlabError
from .generate import check_prompt


@dataclass
class Hypothesis:
    ids: list[int]          # the continuation (without prompt or end-of-text)
    logprob: float          # log p(ids | prompt)
    score: float            # what the beam ranked it by


def reorder_cache(cache, index: torch.Tensor, batch: int) -> None:
    """Keep/duplicate batch rows of every per-sublayer state tensor (KV buffers, recurrent states)."""
    for layer in cache.layers:
        for state in layer:
            for key, val in state.items():
                if torch.is_tensor(val) and val.dim() >= 2 and val.shape[0] == batch:
                    state[key] = val.index_select(0, index)


@torch.no_grad()
def beam_search(model, prompt_ids: list[int], max_new_tokens: int, beam: int = 4, eot_id: int | None = None,
                length_penalty: float = 0.0, attribute: Callable[[list[list[int]]], torch.Tensor] | None = None,
                attribute_weight: float = 1.0, attribute_top: int = 8) -> list[Hypothesis]:
    """Hypotheses, best first (finished ones and, at the length limit, the live beams)."""
    if beam < 1:
        raise LmlabError(f"--beam must be at least 1, got {beam}")
    model.eval()
    ctx = model.cfg.context
    check_prompt(prompt_ids, ctx)
    device = next(model.parameters()).device
    cache = model.new_cache(ctx)
    logits = model(torch.tensor([list(prompt_ids)] * beam, device=device), cache=cache)[0][:, -1]
    seqs: list[list[int]] = [[] for _ in range(beam)]
    lm_score = torch.full((beam,), float("-inf"), device=device)
    lm_score[0] = 0.0  # identical beams at the start: expand only one
    finished: list[Hypothesis] = []

    def final_score(h_ids, lp, extra):
        return lp / max(len(h_ids), 1) ** length_penalty + extra

    stopped = False
    for _ in range(max_new_tokens):
        cand = lm_score[:, None] + F.log_softmax(logits.float(), dim=-1)  # [beam, V]
        V = cand.shape[1]
        if attribute is None:
            lp, flat = cand.view(-1).topk(min(2 * beam, beam * V))
            origin, token = flat // V, flat % V
            rank = lp
        else:
            top = min(max(attribute_top, 2), V)
            lp, tok = cand.topk(top, dim=-1)
            origin = torch.arange(beam, device=device).repeat_interleave(top)
            token, lp = tok.reshape(-1), lp.reshape(-1)
            prefixes = [seqs[b] + ([] if t == eot_id else [t]) for b, t in zip(origin.tolist(), token.tolist())]
            attr = attribute(prefixes).to(device).float()
            rank = lp + attribute_weight * attr
        order = torch.argsort(rank, descending=True, stable=True).tolist()
        keep_origin, keep_token, keep_lp = [], [], []
        for i, c in enumerate(order):
            b, t, l = int(origin[c]), int(token[c]), float(lp[c])
            if l == float("-inf"):
                continue
            if eot_id is not None and t == eot_id:
                if i < beam:  # an end-of-text among the best `beam` candidates finishes a hypothesis
                    extra = float(rank[c]) - l
                    finished.append(Hypothesis(seqs[b], l, final_score(seqs[b], l, extra)))
                continue
            keep_origin.append(b), keep_token.append(t), keep_lp.append(l)
            if len(keep_origin) == beam:
                break
        best_alive = float(rank[order[0]]) if order else float("-inf")
        if not keep_origin or (finished and length_penalty == 0 and attribute is None
                               and max(h.score for h in finished) >= best_alive):
            stopped = True  # with plain scores a live beam can only get worse: a better finished one wins
            break
        n = len(keep_origin)
        index = torch.tensor(keep_origin, device=device)
        reorder_cache(cache, index, len(seqs))
        seqs = [seqs[b] + [t] for b, t in zip(keep_origin, keep_token)]
        lm_score = torch.tensor(keep_lp, device=device)
        nxt = torch.tensor(keep_token, device=device)[:, None]
        if cache.pos >= ctx:  # slide like `generate`: re-encode the last half context
            cache = model.new_cache(ctx)
            full = torch.tensor([list(prompt_ids) + s for s in seqs], device=device)
            logits = model(full[:, -(ctx // 2):], cache=cache)[0][:, -1]
        else:
            logits = model(nxt, cache=cache)[0][:, -1]
        beam = n
    if not stopped or not finished:  # the length limit: live beams count as finished
        extras = attribute(seqs).tolist() if attribute is not None else [0.0] * len(seqs)
        for s, l, e in zip(seqs, lm_score.tolist(), extras):
            if l > float("-inf"):
                finished.append(Hypothesis(s, l, final_score(s, l, attribute_weight * e)))
    return sorted(finished, key=lambda h: h.score, reverse=True)


def beam_generate(model, tokenizer, prompt: str, max_new_tokens: int = 200, beam: int = 4, **kw) -> str:
    """The best beam's text for a text prompt."""
    if not prompt:
        raise LmlabError("the prompt is empty; give at least one character")
    hyps = beam_search(model, tokenizer.encode(prompt), max_new_tokens, beam, eot_id=tokenizer.eot_id, **kw)
    return tokenizer.decode(hyps[0].ids)
