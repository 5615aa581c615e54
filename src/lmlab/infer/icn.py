"""In-context navigation (ICN): several *different* answers to one prompt, found deterministically.

For answer i: put the answers explored so far into the context (`explored_format` per answer,
then `ask_format`), take the most likely first token not probed by an earlier answer, then
decode greedily until a stop string, end-of-text or the length limit. The first-token rule
alone already forces distinct answers; the explored answers in the context let the model steer
away from them (a model that follows instructions can be asked for "a different one" in the
formats).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import LmlabError
from .generate import sample_ids


@dataclass
class Answer:
    text: str
    first_token: int
    first_logprob: float   # log p of the chosen first token in its context


def cut_at_stop(text: str, stop) -> str:
    hits = [text.find(s) for s in stop if s and s in text]
    return text[:min(hits)] if hits else text


def icn_context(tokenizer, question: str, answers, context: int, explored_format: str = "{question}{answer}\n",
                ask_format: str = "{question}") -> list[int]:
    """The ids ICN asks with: each explored answer (texts) in `explored_format`, then `ask_format`,
    cut to the last context - 1 tokens (room for the first answer token)."""
    explored = "".join(explored_format.format(question=question, answer=a) for a in answers)
    return tokenizer.encode(explored + ask_format.format(question=question))[-(context - 1):]


@torch.no_grad()
def navigate(model, tokenizer, question: str, n_answers: int = 5, max_new_tokens: int = 40, stop=("\n",),
             explored_format: str = "{question}{answer}\n", ask_format: str = "{question}",
             use_context: bool = True) -> list[Answer]:
    if not question:
        raise LmlabError("the prompt is empty; give at least one character")
    if n_answers < 1:
        raise LmlabError(f"need at least one answer, got {n_answers}")
    model.eval()
    ctx = model.cfg.context
    device = next(model.parameters()).device
    vocab = model.cfg.vocab_size
    # First tokens that would end the answer at once are never probed.
    banned = torch.zeros(vocab, dtype=torch.bool, device=device)
    banned[tokenizer.eot_id] = True
    for t in range(vocab):
        if t != tokenizer.eot_id and cut_at_stop(tokenizer.decode([t]), stop) != tokenizer.decode([t]):
            banned[t] = True
    answers: list[Answer] = []
    for _ in range(n_answers):
        ids = icn_context(tokenizer, question, [a.text for a in answers] if use_context else [], ctx,
                          explored_format, ask_format)
        logp = torch.log_softmax(model(torch.tensor([ids], device=device))[0][0, -1].float(), -1)
        for a in answers:
            banned[a.first_token] = True
        if banned.all():
            break  # every first token has been probed
        first = int(logp.masked_fill(banned, float("-inf")).argmax())
        rest = []
        for t in sample_ids(model, ids + [first], max_new_tokens - 1, temperature=0):
            if t == tokenizer.eot_id:
                break
            rest.append(t)
            if cut_at_stop(tokenizer.decode([first] + rest), stop) != tokenizer.decode([first] + rest):
                break
        answers.append(Answer(cut_at_stop(tokenizer.decode([first] + rest), stop), first, float(logp[first])))
    return answers
