"""The logit lens (nostalgebraist 2020) and residual-stream trajectories.

State k (k = 0 .. n_layers) is the residual stream after k blocks: state 0 the embeddings (with
learned positions), state n_layers what the final norm reads (with meta-tokens, the state after
each block's meta-attention). The lens decodes every state as if it were the last one, through
the final norm and the unembedding, so the last state's lens is the model's own output.

Per state over a text: bits per byte of the decoded next-token distribution, top-1 agreement
with the last state, and KL(last || state) in bits per token. Trajectories of one prompt: each
state's cosine to every input token embedding (the nearest tokens), and a 2-D PCA of all states.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .hooks import as_ids, run_with_cache
from .windows import scored_windows


def stream_names(model) -> list[str]:
    L = len(model.blocks)
    return [f"blocks.{i}.resid_pre" for i in range(L)] + [f"blocks.{L - 1}.resid_post"]


@torch.no_grad()
def residual_states(model, ids) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits [B, T, V], states [n_layers + 1, B, T, stream width])."""
    names = stream_names(model)
    logits, cache = run_with_cache(model, ids, names)
    return logits, torch.stack([cache[n] for n in names])


def decode(model, states: torch.Tensor) -> torch.Tensor:
    """Logits of residual states [..., width] through the final norm and the unembedding."""
    return F.linear(model.final_norm(states), model.head_weight())


def full_width(model, states: torch.Tensor) -> torch.Tensor:
    """States as d-vectors: crmsnorm's stored d-1 coordinates get their implicit last one back."""
    if states.shape[-1] == model.cfg.d_model:
        return states
    return torch.cat([states, -states.sum(-1, keepdim=True)], -1)


@torch.no_grad()
def logit_lens(model, ids, token_nbytes, context: int | None = None, translate=None) -> dict:
    """Per state over a token sequence (windowed as lmlab eval): bpb, loss, top-1 agreement with
    the last state, KL(last || state) in bits per token. `translate(k, states)` (a TunedLens)
    maps state k before it is decoded."""
    model.eval()
    n_states = len(model.blocks) + 1
    nats, kl, agree = torch.zeros(n_states, dtype=torch.float64), torch.zeros(n_states, dtype=torch.float64), torch.zeros(n_states)
    tokens = nbytes = 0
    for x, y, first in scored_windows(ids, context or model.cfg.context):
        _, states = residual_states(model, as_ids(model, x))
        states, y = states[:, :, first:], y[first:]  # targets an earlier window already scored are skipped
        target = torch.as_tensor(y, device=states.device)
        last = F.log_softmax(decode(model, states[-1, 0]).float(), -1)
        for k in range(n_states):
            state = states[k, 0] if translate is None else translate(k, states[k, 0])
            logp = last if k == n_states - 1 else F.log_softmax(decode(model, state).float(), -1)
            nats[k] += -logp.gather(1, target[:, None]).double().sum().cpu()
            kl[k] += (last.exp() * (last - logp)).sum().double().cpu()
            agree[k] += (logp.argmax(-1) == last.argmax(-1)).sum().cpu()
        tokens += len(y)
        nbytes += int(token_nbytes[y].sum())
    return {
        "states": list(range(n_states)),
        "bpb": (nats / math.log(2) / max(nbytes, 1)).tolist(),
        "loss": (nats / tokens).tolist(),
        "top1_agreement": (agree / tokens).tolist(),
        "kl_to_last_bits": (kl / math.log(2) / tokens).tolist(),
        "tokens": tokens, "bytes": nbytes,
    }


def pca_2d(points: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
    """points [..., d] -> (coordinates [..., 2] on the two main axes, their variance shares)."""
    flat = points.reshape(-1, points.shape[-1]).double()
    centred = flat - flat.mean(0)
    _, S, Vh = torch.linalg.svd(centred, full_matrices=False)
    share = (S ** 2 / (S ** 2).sum()).tolist()
    return (centred @ Vh[:2].T).float().reshape(*points.shape[:-1], 2), share[:2]


@torch.no_grad()
def trajectory(model, ids, token_text=str, top: int = 5) -> dict:
    """One prompt's states: nearest input embeddings per state and position (cosine), the
    lens's top token, cosine to the current and the next token's embedding, the 2-D PCA path."""
    model.eval()
    ids_t = as_ids(model, ids)[:1]
    _, raw = residual_states(model, ids_t)
    states = full_width(model, raw[:, 0].float())                      # [S, T, d]
    E = model.embed.weight.detach().float()
    if model.cfg.norm == "crmsnorm":  # the stream holds centred vectors
        E = E - E.mean(-1, keepdim=True)
    cos = F.normalize(states, dim=-1) @ F.normalize(E, dim=-1).T       # [S, T, V]
    near_cos, near_ids = cos.topk(top, dim=-1)
    lens_top = decode(model, raw[:, 0]).argmax(-1)                     # [S, T]
    seq = ids_t[0]
    here = cos.gather(2, seq.expand(cos.shape[0], -1)[..., None])[..., 0]          # [S, T]
    nxt = cos[:, :-1].gather(2, seq[1:].expand(cos.shape[0], -1)[..., None])[..., 0]
    coords, share = pca_2d(states)
    text = lambda i: token_text(int(i))
    return {
        "tokens": [text(i) for i in seq],
        "states": list(range(states.shape[0])),
        "cos_to_input_token": here.mean(1).tolist(),
        "cos_to_next_token": nxt.mean(1).tolist() if nxt.numel() else [],
        "nearest": [[[{"token": text(i), "cos": round(float(c), 4)} for i, c in zip(ids_row, cos_row)]
                     for ids_row, cos_row in zip(near_ids[s], near_cos[s])] for s in range(states.shape[0])],
        "lens_top1": [[text(i) for i in row] for row in lens_top],
        "pca": coords.tolist(), "pca_variance_share": share,
    }
