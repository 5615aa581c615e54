"""Autoregressive generation with the KV cache: batched token loop, streaming text, stop strings."""
from __future__ import annotations

from typing import Callable, Iterator

import torch

from ..errors import LmlabError
from .sampling import apply_repetition_penalty, choose
from .textstream import TextStream

Step = Callable[[torch.Tensor, object], torch.Tensor]  # (ids [B, T], cache) -> next-token logits [B, T, V]


def check_prompt(prompt_ids, context: int) -> None:
    if len(prompt_ids) == 0:
        raise LmlabError("the prompt is empty; give at least one character")
    if len(prompt_ids) > context:
        raise LmlabError(f"the prompt is {len(prompt_ids)} tokens, longer than the model's context of {context}")


@torch.no_grad()
def decode_steps(model, prompt: torch.Tensor, max_new_tokens: int, temperature: float = 0.8, top_k: int = 0,
                 top_p: float = 1.0, repetition_penalty: float = 1.0, seed: int = 0, step: Step | None = None,
                 forced: torch.Tensor | None = None, prefill=None) -> Iterator[torch.Tensor]:
    """Yield the next ids [B] for prompts [B, T], one step at a time.

    When the cache is full the last half-context is re-encoded into a fresh cache (a sliding
    window), so generation can run past the training context. `step(ids, cache)` gives the
    next-token logits [B, T, V] (default: the model's own; kNN-LM passes its mixture). `forced`
    [B, n] feeds these ids instead of sampled ones (teacher forcing with the same cache discipline).
    `prefill(model, ids, cache) -> logits` encodes the prompt and each re-encoded window (default:
    `step`; hidden-state optimisation passes its own, infer/hso.py).
    """
    step = step or (lambda ids, cache: model(ids, cache=cache)[0])
    encode = prefill or (lambda m, ids, cache: step(ids, cache))
    model.eval()
    context = model.cfg.context
    device = prompt.device
    generator = torch.Generator(device=device).manual_seed(seed)
    seq = prompt
    cache = model.new_cache(context)
    logits = encode(model, seq, cache)[:, -1]
    for i in range(max_new_tokens):
        logits = apply_repetition_penalty(logits, seq, repetition_penalty)
        nxt = choose(logits, temperature, top_k, top_p, generator) if forced is None else forced[:, i]
        yield nxt
        seq = torch.cat([seq, nxt[:, None]], dim=1)
        if cache.pos >= context:
            cache = model.new_cache(context)
            logits = encode(model, seq[:, -(context // 2):], cache)[:, -1]
        else:
            logits = step(nxt[:, None], cache)[:, -1]


def sample_ids(model, prompt_ids: list[int], max_new_tokens: int, **kw) -> Iterator[int]:
    check_prompt(prompt_ids, model.cfg.context)
    device = next(model.parameters()).device
    prompt = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    for nxt in decode_steps(model, prompt, max_new_tokens, **kw):
        yield int(nxt[0])


def generate(model, tokenizer, prompt: str, max_new_tokens: int = 200, temperature: float = 0.8, top_k: int = 0,
             top_p: float = 1.0, repetition_penalty: float = 1.0, seed: int = 0, stop=(),
             stream: Callable[[str], None] | None = None, step: Step | None = None, prefill=None) -> str:
    """Generate a continuation of `prompt` (returned without the prompt); `stream` gets text pieces."""
    if not prompt:
        raise LmlabError("the prompt is empty; give at least one character")
    ids = tokenizer.encode(prompt)
    text = TextStream(tokenizer, stop)
    emit = stream or (lambda piece: None)
    for token in sample_ids(model, ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                            repetition_penalty=repetition_penalty, seed=seed, step=step, prefill=prefill):
        if token == tokenizer.eot_id:
            break
        if piece := text.push(token):
            emit(piece)
        if text.stopped:
            return text.text
    if piece := text.finish():
        emit(piece)
    return text.text
