"""The Talking Heads intervention on the Laundry List task (eval/tasks/laundry.py).

1. Mover head: the head (outside the first attention sublayer) whose attention from the last
   input position goes most to the item that is the answer, over the examples.
2. Channel: of every earlier head's OV, the rank-1 SVD component (write direction v, heads.py)
   with the largest Q- or K-composition score into the mover; that head is the inhibition head.
   `share` is how much of the writer's composition with the mover (squared, singular values
   included) that one component carries: near 1 is a low-rank channel.
3. Intervention: the writer's output along v scaled by alpha at every position, as a weight edit
   W_O,h <- W_O,h (I + (alpha - 1) v v^T) (exact at alpha = 1, restored afterwards). alpha is
   chosen on the validation split and reported on the test split, against the same alpha applied
   to random unit directions in the same head's write space, orthogonal to v (the control).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

from ..errors import LmlabError
from ..eval.tasks.laundry import parse, solve
from ..eval.tasks.score import evaluate
from .heads import Heads, attention_sublayers
from .hooks import run_with_cache


def answer_position(tokenizer, text: str) -> int:
    """The position of the answer item's first token in the input's ids."""
    items, _ = parse(text)
    k = items.index(solve(text))
    return len(tokenizer.encode(" ".join(items[:k]) + " ")) if k else 0


@torch.no_grad()
def mover_scores(model, tokenizer, examples, heads: Heads) -> torch.Tensor:
    """[N heads]: mean attention from the last input position to the answer item."""
    model.eval()
    names = [f"blocks.{hw.layer}.{hw.sublayer}.pattern" for hw in heads.layers]
    total = torch.zeros(len(heads.labels))
    for ex in examples:
        ids = tokenizer.encode(ex.input)
        _, cache = run_with_cache(model, ids, names, pos=-1)
        at = answer_position(tokenizer, ex.input)
        total += torch.cat([cache[n][0, :, 0, at].float().cpu() for n in names])
    return total / max(1, len(examples))


def find_channel(heads: Heads, mover: int) -> dict:
    """The earlier head's OV component composing most with `mover` (Q or K), and its share."""
    _, S, Vh = heads.OV.svd()
    best = None
    for mode in ("Q", "K"):
        per, _ = heads.composition_by_component(mode)
        scores = per[:, :, mover]                                     # [N writers, k]
        w, c = divmod(int(scores.argmax()), scores.shape[1])
        if best is None or float(scores[w, c]) > best["score"]:
            weight = (S[w] * scores[w]) ** 2
            best = {"mode": mode, "writer": w, "component": c, "score": float(scores[w, c]),
                    "share": float(weight[c] / weight.sum().clamp_min(1e-30)),
                    "singular_value": float(S[w, c]), "all_scores": scores[w].tolist()}
    if best is None or best["score"] <= 0:
        raise LmlabError("no earlier head composes with the mover head")
    best["direction"] = Vh[best["writer"], best["component"]]
    best["write_space"] = Vh[best["writer"]]
    return best


def _locate(model, heads: Heads, index: int):
    """(attention module, head index within it) of flat head `index`."""
    start = 0
    for hw, (_, _, attn) in zip(heads.layers, attention_sublayers(model)):
        n = hw.W_Q.shape[0]
        if index < start + n:
            return attn, index - start
        start += n
    raise IndexError(index)


@contextmanager
@torch.no_grad()
def scaled_direction(model, heads: Heads, writer: int, v: torch.Tensor, alpha: float):
    """Inside: head `writer` writes alpha times its component along unit `v`; restored on leaving."""
    attn, h = _locate(model, heads, writer)
    W = attn.o_proj.weight                                            # [d_stream, H * dh]
    dh = attn.head_dim
    saved = W[:, h * dh:(h + 1) * dh].clone()
    v = v.to(W.device, torch.float32)
    block = saved.float()
    W[:, h * dh:(h + 1) * dh] = (block + (alpha - 1) * torch.outer(v, v @ block)).to(W.dtype)
    try:
        yield model
    finally:
        W[:, h * dh:(h + 1) * dh] = saved


def random_directions(space: torch.Tensor, v: torch.Tensor, n: int, seed: int) -> list[torch.Tensor]:
    """`n` random unit vectors in the row span of `space` [k, d], orthogonal to `v`."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        u = torch.randn(space.shape[0], generator=gen) @ space
        u = u - (u @ v) * v
        out.append(u / u.norm().clamp_min(1e-30))
    return out


def check_scales(scales) -> None:
    if not scales or any(not (0 <= s <= 100) for s in scales):  # NaN fails too
        raise LmlabError(f"--scales must be numbers in [0, 100], got {list(scales)}")


def intervention(model, tokenizer, info, validation, test, scales=(0.0, 0.5, 1.5, 2.0, 3.0, 5.0),
                 controls: int = 4, seed: int = 0, max_pattern_examples: int = 64) -> dict:
    """Mover, channel, and test accuracy by scale for the channel and the random control."""
    check_scales(scales)
    heads = Heads(model)
    first = heads.order.min()
    if bool((heads.order == first).all()):
        raise LmlabError("the laundry analysis needs attention in at least two sublayers (writer and mover)")
    movers = mover_scores(model, tokenizer, validation[:max_pattern_examples], heads)
    movers[heads.order == first] = -1
    mover = int(movers.argmax())
    channel = find_channel(heads, mover)
    v, w = channel["direction"], channel["writer"]
    others = random_directions(channel["write_space"], v, controls, seed)
    base_val = evaluate(model, tokenizer, info, validation)["accuracy"]
    base = evaluate(model, tokenizer, info, test)

    def at(direction, alpha, examples):
        with scaled_direction(model, heads, w, direction, alpha):
            return evaluate(model, tokenizer, info, examples)

    val = {a: at(v, a, validation)["accuracy"] for a in scales}
    chosen = max(scales, key=lambda a: (val[a], -abs(a - 1)))
    sweep = []
    for a in scales:
        t = at(v, a, test)
        ctrl = [at(u, a, test)["accuracy"] for u in others]
        sweep.append({"scale": a, "validation": val[a], "test": t["accuracy"], "test_by_length": t.get("by_length"),
                      "control_test": ctrl, "control_test_mean": sum(ctrl) / len(ctrl) if ctrl else None})
    row = next(r for r in sweep if r["scale"] == chosen)
    return {
        "heads": heads.labels, "mover_attention_to_answer": movers.tolist(),
        "mover": heads.labels[mover], "writer": heads.labels[w],
        "channel": {k: channel[k] for k in ("mode", "component", "score", "share", "singular_value", "all_scores")},
        "validation_accuracy": base_val, "test": base, "scales": list(scales), "sweep": sweep,
        "chosen_scale": chosen, "test_at_chosen": row["test"], "control_at_chosen": row["control_test_mean"],
        "gain": row["test"] - base["accuracy"],
        "control_gain": (row["control_test_mean"] - base["accuracy"]) if controls else None,
        "test_by_length_at_chosen": row["test_by_length"], "controls": controls,
    }
