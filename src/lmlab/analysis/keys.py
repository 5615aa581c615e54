"""The vocabulary key space of next-token prediction (Correlation and Navigation in the Vocabulary
Key Representation Space of Language Models).

The next-token distribution is softmax(q K^T): q the final normed state at a position (the query),
K the unembedding (one key per token). Over the windows of a text (analysis/windows.py):
- the vocabulary ranked by the model's probability at each position, and the cosine between the
  key at rank r and the top-1 key, averaged over positions, in rank bins 1, 2-3, 4-7, ... (rank 0
  is the top-1 itself); the control is the same ranking with the keys dealt to the tokens at
  random (one fixed permutation), which keeps the key geometry and removes the link to rank;
- where the correct next token ranks: the share at the top (ranks < `top`), in the middle
  (`top` <= rank < V/2) and in the tail, and per rank bin.
In-context navigation (infer/icn.py): for prompts cut from the text, the query without and with the
explored answers in the context, and its dot product with the explored answers' first-token keys,
raw and relative to the query's mean dot product with all keys (so a query that merely shrinks
does not count as moving away).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import LmlabError
from ..infer.icn import icn_context, navigate
from .hooks import as_ids
from .windows import windows


def rank_bins(vocab: int) -> list[tuple[int, int]]:
    """[lo, hi) rank ranges 1, 2-3, 4-7, ... up to the vocabulary size (rank 0, the top-1, excluded)."""
    bins, lo = [], 1
    while lo < vocab:
        bins.append((lo, min(2 * lo, vocab)))
        lo *= 2
    return bins


def shuffled_keys(keys: torch.Tensor, seed: int) -> torch.Tensor:
    """The rows of `keys` dealt to the tokens by one random permutation (the control)."""
    return keys[torch.randperm(keys.shape[0], generator=torch.Generator().manual_seed(seed))]


def rank_order(logits: torch.Tensor) -> torch.Tensor:
    """[T, V] token ids by descending logit; ties keep the lower id first."""
    return torch.sort(logits.float(), dim=-1, descending=True, stable=True).indices


def cos_to_top(keys: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """[T, V]: cosine between the key at each rank and the key at rank 0, per position."""
    unit = F.normalize(keys.float(), dim=-1)
    return (unit[order[:, 0]] @ unit.T).gather(1, order)


def _binned(values: torch.Tensor, bins) -> list[float]:
    return [float(values[lo:hi].mean()) for lo, hi in bins]


def check_top(vocab: int, top: int) -> None:
    if not 1 <= top < vocab // 2:
        raise LmlabError(f"--rank-top must be in [1, {vocab // 2 - 1}] for a vocabulary of {vocab}, got {top}")


@torch.no_grad()
def key_space(model, ids, top: int = 3, max_windows: int | None = 8, seed: int = 0) -> dict:
    """The rank-cosine curve (real keys and shuffled control) and where the correct token ranks."""
    model.eval()
    keys = model.head_weight().detach().float()
    V = keys.shape[0]
    check_top(V, top)
    control = shuffled_keys(keys, seed)
    real_sum, control_sum = torch.zeros(V, dtype=torch.float64), torch.zeros(V, dtype=torch.float64)
    ranks = torch.zeros(V, dtype=torch.long)
    positions = 0
    for n, (x, y) in enumerate(windows(ids, model.cfg.context)):
        if max_windows and n >= max_windows:
            break
        logits, _ = model(as_ids(model, x))
        order = rank_order(logits[0]).cpu()
        real_sum += cos_to_top(keys.cpu(), order).double().sum(0)
        control_sum += cos_to_top(control.cpu(), order).double().sum(0)
        target_rank = (order == torch.as_tensor(y)[:, None]).float().argmax(1)
        ranks += torch.bincount(target_rank, minlength=V)
        positions += len(y)
    bins = rank_bins(V)
    real, shuffled = (real_sum / positions).float(), (control_sum / positions).float()
    middle = (top, V // 2)
    share = ranks.double() / positions
    return {
        "vocab": V, "positions": positions, "top": top, "middle_ranks": list(middle),
        "bins": [list(b) for b in bins],
        "cos_to_top1": _binned(real, bins), "cos_to_top1_shuffled": _binned(shuffled, bins),
        "middle_cos": float(real[middle[0]:middle[1]].mean()),
        "middle_cos_shuffled": float(shuffled[middle[0]:middle[1]].mean()),
        "correct_rank_share": {"top": float(share[:top].sum()), "middle": float(share[middle[0]:middle[1]].sum()),
                               "tail": float(share[middle[1]:].sum())},
        "correct_rank_by_bin": [float(share[0])] + [float(share[lo:hi].sum()) for lo, hi in bins],
    }


def text_prompts(tokenizer, ids, n: int, length: int) -> list[str]:
    """`n` prompts of `length` tokens cut from evenly spaced places of a token sequence."""
    if len(ids) < length + 1:
        raise LmlabError(f"the text is {len(ids)} tokens; ICN prompts of {length} tokens need more")
    step = max(1, (len(ids) - length) // n)
    return [tokenizer.decode(list(ids[s:s + length])) for s in range(0, len(ids) - length, step)][:n]


@torch.no_grad()
def query(model, ids: list[int]) -> torch.Tensor:
    """The query of the next-token distribution after `ids`: the last position's final normed state."""
    return model.hidden(as_ids(model, ids))[0, -1].float()


@torch.no_grad()
def icn_shift(model, tokenizer, prompts, n_answers: int = 4, max_new_tokens: int = 8) -> dict:
    """Per explored answer: its first-token key's dot product with the query before ICN (the prompt
    alone) and after (the explored answers in the context), raw and relative to the mean over all keys."""
    model.eval()
    keys = model.head_weight().detach().float()
    C = model.cfg.context
    rows = []
    for prompt in prompts:
        answers = navigate(model, tokenizer, prompt, n_answers=n_answers, max_new_tokens=max_new_tokens)
        q0 = query(model, icn_context(tokenizer, prompt, [], C))
        for i in range(1, len(answers)):
            qi = query(model, icn_context(tokenizer, prompt, [a.text for a in answers[:i]], C))
            for a in answers[:i]:
                k = keys[a.first_token]
                before, after = float(q0 @ k), float(qi @ k)
                rows.append({"before": before, "after": after,
                             "before_rel": before - float((keys @ q0).mean()),
                             "after_rel": after - float((keys @ qi).mean()),
                             "logp_before": float(torch.log_softmax(keys @ q0, -1)[a.first_token]),
                             "logp_after": float(torch.log_softmax(keys @ qi, -1)[a.first_token])})
    if not rows:
        return {"pairs": 0, "prompts": len(prompts)}
    mean = lambda key: sum(r[key] for r in rows) / len(rows)
    return {"prompts": len(prompts), "answers_per_prompt": n_answers, "pairs": len(rows),
            **{f"mean_{k}": mean(k) for k in rows[0]},
            "share_moved_away": sum(r["after_rel"] < r["before_rel"] for r in rows) / len(rows)}
