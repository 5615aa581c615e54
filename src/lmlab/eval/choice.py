"""Multiple choice scored by log-likelihood, with items built from held-out text.

No benchmark can be downloaded here, so items come from text the model never trained on: a
passage (`context_chars` characters ending just before a whitespace) followed by its true
continuation (about `continuation_chars` characters, extended to the end of a word) among
`n_choices - 1` distractor continuations cut the same way from elsewhere in the *same*
document (so a distractor is in the same language and style, never overlapping the passage).
For scripts written without spaces, any character position is a boundary.

A model answers by the log-likelihood of each choice given the context (as lm-evaluation-harness
does), never by generating a letter: `acc` takes the highest total log-probability, `acc_norm`
the highest log-probability per UTF-8 byte of the choice (choices differ slightly in length).
Chance is 1 / n_choices.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from ..errors import LmlabError

MAX_EXTEND = 24  # characters a continuation may grow to finish its last word


@dataclass
class ChoiceItem:
    context: str
    choices: list
    label: int
    source: str = ""


def _boundaries(text: str, lo: int, hi: int) -> tuple[np.ndarray, bool]:
    """Start positions in [lo, hi): just before a whitespace, or anywhere if spaces are rare
    (zh, ja, ...); and whether the text is spaced (then continuations end at a word's end)."""
    arr = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    space = np.isin(arr, np.frombuffer(" \n\t\u3000".encode("utf-32-le"), dtype=np.uint32))
    cand = np.flatnonzero(space[lo:hi]) + lo
    if len(cand) < 0.02 * max(hi - lo, 1):
        return np.arange(lo, max(lo, hi)), False
    return cand, True


def _cut(text: str, start: int, n: int, spaced: bool) -> str:
    end = min(len(text), start + n)
    limit = min(len(text), end + MAX_EXTEND) if spaced else end
    while end < limit and not text[end].isspace():
        end += 1
    return text[start:end]


def items_from_documents(docs, n_items: int = 200, n_choices: int = 4, context_chars: int = 200,
                         continuation_chars: int = 48, seed: int = 0) -> list[ChoiceItem]:
    """Items spread evenly over documents (names from Document.name when given)."""
    rng = np.random.default_rng(seed)
    named = [(getattr(d, "name", str(i)), getattr(d, "text", d)) for i, d in enumerate(docs)]
    span = context_chars + continuation_chars + MAX_EXTEND
    usable = []
    for name, text in named:
        cand, spaced = _boundaries(text, context_chars, len(text) - continuation_chars - MAX_EXTEND)
        if len(cand) >= 4 * n_choices and len(text) > 3 * span:
            usable.append((name, text, cand, spaced))
    if not usable:
        raise LmlabError(f"held-out text too short for choice items: need documents over {3 * span} characters")
    items: list[ChoiceItem] = []
    for k in range(n_items):
        name, text, cand, spaced = usable[k % len(usable)]
        s = int(rng.choice(cand))
        true = _cut(text, s, continuation_chars, spaced)
        far = cand[(cand < s - span) | (cand > s + span)]
        picked: list[str] = []
        for t in rng.permutation(far)[: 20 * n_choices]:
            option = _cut(text, int(t), continuation_chars, spaced)
            if option != true and option not in picked and option.strip():
                picked.append(option)
            if len(picked) == n_choices - 1:
                break
        if len(picked) < n_choices - 1:
            continue
        label = int(rng.integers(n_choices))
        choices = picked[:label] + [true] + picked[label:]
        items.append(ChoiceItem(text[s - context_chars:s], choices, label, name))
    return items


def split_at_eot(ids, tokenizer) -> list[str]:
    """Decode a token stream (e.g. a validation split) back into its documents."""
    ids = np.asarray(ids)
    cuts = np.flatnonzero(ids == tokenizer.eot_id)
    pieces = np.split(ids, cuts)
    return [tokenizer.decode(p[p != tokenizer.eot_id]) for p in pieces if len(p) > 1]


def loglikelihood(model, tokenizer, requests: list[tuple[str, str]], batch_size: int = 16) -> list[float]:
    """log p(continuation | context) in nats for each (context, continuation) pair.

    Context and continuation are encoded separately and joined (the continuation keeps its
    leading whitespace); the context is cut from the left to fit the model's window."""
    from .likelihood import continuation_scores

    window = model.cfg.context
    pairs = []
    for ctx, cont in requests:
        x = tokenizer.encode(cont)
        if not x:
            raise LmlabError("a choice is empty")
        if len(x) > window:
            raise LmlabError(f"a choice of {len(x)} tokens does not fit model.context={window}")
        pairs.append((tokenizer.encode(ctx) or [tokenizer.eot_id], x))
    return [ll for ll, _ in continuation_scores(model, pairs, batch_size)]


def score_items(model, tokenizer, items: list[ChoiceItem], batch_size: int = 16) -> dict:
    """Accuracy by total log-likelihood (acc) and per byte (acc_norm), with chance level."""
    if not items:
        raise LmlabError("no choice items to score")
    requests = [(it.context, ch) for it in items for ch in it.choices]
    lls = loglikelihood(model, tokenizer, requests, batch_size)
    acc = acc_norm = 0
    pos = 0
    for it in items:
        ll = np.array(lls[pos:pos + len(it.choices)])
        nbytes = np.array([len(ch.encode("utf-8", "surrogatepass")) for ch in it.choices])
        pos += len(it.choices)
        acc += int(ll.argmax() == it.label)
        acc_norm += int((ll / nbytes).argmax() == it.label)
    n = len(items)
    return {"acc": acc / n, "acc_norm": acc_norm / n, "n": n,
            "chance": float(np.mean([1 / len(it.choices) for it in items]))}


def save_items(items: list[ChoiceItem], path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for it in items:
            f.write(json.dumps(asdict(it), ensure_ascii=False) + "\n")


def load_items(path) -> list[ChoiceItem]:
    p = Path(path)
    if not p.is_file():
        raise LmlabError(f"{path} not found")
    return [ChoiceItem(**json.loads(line)) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
