"""LM-Infinite (Han et al. 2023): run a RoPE model far beyond its training length, no training.

Each query attends to the first `n_global` tokens and the last `n_local` tokens (a Lambda-shaped
mask); the middle is masked. A global key farther than `n_local` is scored as if it sat exactly
`n_local` tokens back (the query is rotated by the capped distance, the key is left unrotated),
so no attention logit ever sees a distance longer than the model saw in training.

The KV cache keeps the global keys plus a ring buffer of the last `n_local` keys, so decoding
memory and time per token stay O(n_global + n_local) however long the text grows.

Applied from outside the model: `enable(model, ...)` swaps the forward of every attention
sublayer for `lambda_attention` (the weights are untouched); `disable(model)` restores it, and
`lm_infinite(model, ...)` does both as a context manager. While every key is within `n_local`,
the computation is the vanilla one, op for op, so the logits are bit-identical.
"""
from __future__ import annotations

import types
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import LmlabError
from ..model.attention import CausalSelfAttention
from ..model.positions import apply_rope


@dataclass(frozen=True)
class LambdaPolicy:
    n_global: int = 10      # the paper uses 10-100 "starting" tokens
    n_local: int = 256      # = the training length in the paper

    def __post_init__(self):
        if self.n_global < 0 or self.n_local < 1:
            raise LmlabError(f"LM-Infinite needs n_global >= 0 and n_local >= 1 (got {self.n_global}, {self.n_local})")


def _repeat_kv(t: torch.Tensor, n_rep: int) -> torch.Tensor:
    """[B, Hkv, S, D] -> [B, Hkv * n_rep, S, D], query head h reading kv head h // n_rep."""
    return t if n_rep == 1 else t.repeat_interleave(n_rep, dim=1)


def _new_state(cache: dict, B: int, attn: CausalSelfAttention, policy: LambdaPolicy, like: torch.Tensor):
    G, shape = policy.n_global, (B, attn.n_kv_heads, policy.n_global + policy.n_local, attn.head_dim)
    # One buffer per K and V: [globals as the current query sees them | ring of the last n_local],
    # so decoding attends to it in one call without concatenating.
    cache["buf_k"], cache["buf_v"] = like.new_zeros(shape), like.new_zeros(shape)
    cache["ring_k"], cache["ring_v"] = cache["buf_k"][:, :, G:], cache["buf_v"][:, :, G:]  # rotated at their positions
    cache["glob_in_buf"] = cache["buf_k"][:, :, :G]
    cache["ring_hi"] = -1  # highest position stored; slot = position % n_local
    empty = like.new_zeros((B, attn.n_kv_heads, 0, attn.head_dim))
    cache["glob_k"], cache["glob_v"] = empty, empty  # unrotated keys of positions < n_global
    cache["glob_k_turned"] = empty                   # (-x2, x1) halves: rotating is then x*cos + turned*sin


def ring_positions(cache: dict, n_local: int) -> torch.Tensor:
    """Position held by each ring slot (-1 = empty): positions are stored in order, slot = pos % n_local."""
    hi = cache["ring_hi"]
    slots = torch.arange(n_local, device=cache["ring_k"].device)
    pos = hi - torch.remainder(hi - slots, n_local)
    return torch.where(pos >= 0, pos, torch.full_like(pos, -1))


def _store(cache: dict, policy: LambdaPolicy, k_raw, k_rot, v, start: int):
    """Append a chunk at positions start..: the first n_global positions join the globals, all
    enter the ring (only the last n_local of a long chunk: the others would be overwritten)."""
    T = k_raw.shape[2]
    n_keep = max(0, min(T, policy.n_global - start))
    if n_keep:
        kg = k_raw[:, :, :n_keep]
        d = kg.shape[-1] // 2
        cache["glob_k"] = torch.cat([cache["glob_k"], kg], dim=2)
        cache["glob_v"] = torch.cat([cache["glob_v"], v[:, :, :n_keep]], dim=2)
        cache["glob_k_turned"] = torch.cat([cache["glob_k_turned"], torch.cat([-kg[..., d:], kg[..., :d]], -1)], dim=2)
        if cache["glob_v"].shape[2] == policy.n_global:
            cache["buf_v"][:, :, :policy.n_global] = cache["glob_v"]
    cache["ring_hi"] = start + T - 1
    first = max(0, T - policy.n_local)
    if T - first == 1:  # one token (decoding): a plain slice write
        slot = (start + T - 1) % policy.n_local
        cache["ring_k"][:, :, slot:slot + 1] = k_rot[:, :, -1:]
        cache["ring_v"][:, :, slot:slot + 1] = v[:, :, -1:]
        return
    slots = torch.arange(start + first, start + T, device=k_raw.device) % policy.n_local
    cache["ring_k"][:, :, slots] = k_rot[:, :, first:]
    cache["ring_v"][:, :, slots] = v[:, :, first:]


FAST_DECODE = True  # False sends decoding through the general masked path (tests compare the two)


def _step_tables(self, rope, p: int, dtype) -> dict:
    """RoPE factors for one decoding step at position p, built once and shared by every layer.

    "q": (cos, signed sin) at p shaped [2, D/2], so that a vector viewed as its two halves [2, D/2]
    rotates as x * cos + swap(x) * sin, the same products and sums as `apply_rope` (bit-identical).
    "glob": full-width (cos, sin) at p - n_local, for the far global keys (x * cos + turned * sin).
    "mask": None, or while some globals are still inside the ring (the first n_global steps past
    n_local), a mask over [globals | ring] hiding those globals' far copies.
    """
    memo = self.lm_infinite_step
    cos, sin = rope
    if memo.get("cos") is cos and memo.get("p") == p and memo.get("dtype") == dtype:
        return memo
    c, s_ = cos[p].to(dtype), sin[p].to(dtype)
    policy: LambdaPolicy = self.lm_infinite
    at = p - policy.n_local
    gc, gs = cos[at:at + 1].to(dtype), sin[at:at + 1].to(dtype)
    far = min(policy.n_global, at + 1)  # globals not in the ring: positions <= p - n_local
    mask = None
    if far < policy.n_global:
        mask = torch.ones(1, policy.n_global + policy.n_local, dtype=torch.bool, device=cos.device)
        mask[:, far:policy.n_global] = False
    memo.clear()  # holding `cos` keeps its identity from being reused by another table
    memo.update(cos=cos, p=p, dtype=dtype, q=(c, torch.stack([-s_, s_])),
                glob=(torch.cat([gc, gc], -1), torch.cat([gs, gs], -1)), mask=mask)
    return memo


def _rotate_one(x: torch.Tensor, c: torch.Tensor, s_signed: torch.Tensor, out: torch.Tensor | None = None):
    """RoPE of one position for x [..., 2, D/2] (halves): x1*c - x2*s, x2*c + x1*s, like apply_rope."""
    y = torch.mul(x, c, out=out) if out is not None else x * c
    return y.add_(x.flip(-2) * s_signed)


def decode_step(self: CausalSelfAttention, x, rope, state: dict, p: int):
    """One token at position p >= max(n_local, n_global), the hot loop of long generation.

    The ring holds exactly the last n_local positions; a far global key rotated to position
    p - n_local scores like the capped distance n_local from the query at p, so the buffer
    [globals rotated to p - n_local | ring] is attended to in one call (globals still inside the
    ring masked, for the first n_global steps).
    Written for few dispatches per token: the new key is rotated straight into its ring slot,
    the rotation factors (and the mask, first steps only) are built once per step for all layers.
    """
    policy: LambdaPolicy = self.lm_infinite
    B, H, Hkv, D = x.shape[0], self.n_heads, self.n_kv_heads, self.head_dim
    q, k, v = self.project(x)
    t = _step_tables(self, rope, p, q.dtype)  # the projections' dtype (bfloat16 under autocast), as apply_rope
    c, s_signed = t["q"]
    q = _rotate_one(q.reshape(B, H, 1, 2, D // 2), c, s_signed).view(B, H, 1, D)
    slot = p % policy.n_local
    _rotate_one(k.reshape(B, Hkv, 1, 2, D // 2), c, s_signed,
                out=state["ring_k"][:, :, slot:slot + 1].view(B, Hkv, 1, 2, D // 2))
    state["ring_v"][:, :, slot:slot + 1].copy_(v.reshape(B, Hkv, 1, D))
    state["ring_hi"] = p
    if policy.n_global:  # globals rotated to p - n_local, written in place into the buffer's head
        gc, gs = t["glob"]
        torch.mul(state["glob_k"], gc, out=state["glob_in_buf"]).addcmul_(state["glob_k_turned"], gs)
    y = F.scaled_dot_product_attention(q, state["buf_k"], state["buf_v"], attn_mask=t["mask"], enable_gqa=Hkv != H)
    return self.o_proj(y.reshape(B, 1, H * D))  # [B, H, 1, D] -> [B, 1, H*D]: same order for one token


def lambda_attention(self: CausalSelfAttention, x, rope=None, cache: dict | None = None, start_pos: int = 0):
    """Drop-in forward for CausalSelfAttention under the policy in `self.lm_infinite`."""
    policy: LambdaPolicy = self.lm_infinite
    if (FAST_DECODE and x.shape[1] == 1 and cache is not None and "buf_k" in cache
            and start_pos >= max(policy.n_local, policy.n_global)):
        return decode_step(self, x, rope, cache, start_pos)
    B, T, _ = x.shape
    H, Hkv, D = self.n_heads, self.n_kv_heads, self.head_dim
    q, k, v = self.project(x)
    q = q.view(B, T, H, D).transpose(1, 2)
    k = k.view(B, T, Hkv, D).transpose(1, 2)
    v = v.view(B, T, Hkv, D).transpose(1, 2)
    cos, sin = rope
    q_rot = apply_rope(q, cos[start_pos:start_pos + T], sin[start_pos:start_pos + T])
    k_rot = apply_rope(k, cos[start_pos:start_pos + T], sin[start_pos:start_pos + T])
    pos = torch.arange(start_pos, start_pos + T, device=x.device)
    state = cache if cache is not None else {}
    if "ring_k" not in state:
        _new_state(state, B, self, policy, k)

    if start_pos + T <= policy.n_local:
        # Every key is local: exactly the vanilla computation (ring slot == position here).
        _store(state, policy, k, k_rot, v, start_pos)
        if start_pos == 0:
            keys, vals, mask, causal = k_rot, v, None, T > 1
        else:
            keys, vals = state["ring_k"][:, :, :start_pos + T], state["ring_v"][:, :, :start_pos + T]
            mask, causal = None, False
            if T > 1:
                mask = torch.arange(start_pos + T, device=x.device)[None, :] <= pos[:, None]
        y = F.scaled_dot_product_attention(q_rot, keys, vals, attn_mask=mask, is_causal=causal,
                                           enable_gqa=Hkv != H)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, H * D))

    # Local branch: cached ring (positions before this chunk) + the chunk itself.
    loc_pos = torch.cat([ring_positions(state, policy.n_local), pos])
    loc_k = torch.cat([state["ring_k"], k_rot], dim=2)
    loc_v = torch.cat([state["ring_v"], v], dim=2)
    dist = pos[:, None] - loc_pos[None, :]
    loc_mask = (loc_pos[None, :] >= 0) & (dist >= 0) & (dist < policy.n_local)
    # Global branch: the first n_global tokens, only where they are farther than n_local.
    n_new_glob = max(0, min(T, policy.n_global - start_pos))
    glob_k = torch.cat([state["glob_k"], k[:, :, :n_new_glob]], dim=2)
    glob_v = torch.cat([state["glob_v"], v[:, :, :n_new_glob]], dim=2)
    glob_pos = torch.arange(glob_k.shape[2], device=x.device)
    glob_mask = glob_pos[None, :] <= pos[:, None] - policy.n_local
    q_far = apply_rope(q, cos[policy.n_local:policy.n_local + 1], sin[policy.n_local:policy.n_local + 1])

    n_rep = H // Hkv
    scale = D ** -0.5
    s_loc = (q_rot @ _repeat_kv(loc_k, n_rep).transpose(-1, -2)) * scale
    s_glob = (q_far @ _repeat_kv(glob_k, n_rep).transpose(-1, -2)) * scale
    scores = torch.cat([s_glob.masked_fill(~glob_mask, float("-inf")),
                        s_loc.masked_fill(~loc_mask, float("-inf"))], dim=-1)
    probs = scores.float().softmax(dim=-1).to(q.dtype)
    y = probs @ _repeat_kv(torch.cat([glob_v, loc_v], dim=2), n_rep)
    if cache is not None:
        _store(state, policy, k, k_rot, v, start_pos)
    return self.o_proj(y.transpose(1, 2).reshape(B, T, H * D))


def _attention_modules(model):
    mods = [m for m in model.modules() if isinstance(m, CausalSelfAttention)]
    if not mods:
        raise LmlabError("LM-Infinite needs attention layers; this model has none")
    if getattr(model.cfg, "positions", "rope") != "rope":
        raise LmlabError("LM-Infinite needs RoPE positions (model.positions = 'rope'); "
                         f"this model uses {model.cfg.positions!r}")
    return mods


def enable(model, n_global: int = 10, n_local: int | None = None) -> LambdaPolicy:
    """Switch every attention sublayer to the Lambda-shaped attention (n_local defaults to the context)."""
    policy = LambdaPolicy(n_global, n_local or model.cfg.context)
    mods = _attention_modules(model)
    step = {}  # per-step RoPE factors, shared by all layers (see _step_tables)
    for m in mods:
        m.lm_infinite, m.lm_infinite_step = policy, step
        m.forward = types.MethodType(lambda_attention, m)
    return policy


def disable(model) -> None:
    for m in model.modules():
        if isinstance(m, CausalSelfAttention) and "forward" in m.__dict__:
            del m.forward
            del m.lm_infinite, m.lm_infinite_step


@contextmanager
def lm_infinite(model, n_global: int = 10, n_local: int | None = None):
    policy = enable(model, n_global, n_local)
    try:
        yield policy
    finally:
        disable(model)


def new_cache(model):
    """A cache for LM-Infinite decoding: no length limit; it holds n_global + n_local keys per layer."""
    return model.new_cache(max_len=1 << 40)  # the vanilla buffers are never allocated here


@torch.no_grad()
def chunked_logits(model, ids: torch.Tensor, chunk: int, cache=None) -> torch.Tensor:
    """Logits [B, T, V] for ids [B, T], fed `chunk` tokens at a time through one cache.

    With LM-Infinite enabled this keeps memory O(T * (chunk + n_local)) instead of O(T^2).
    """
    cache = cache if cache is not None else new_cache(model)
    out = [model(ids[:, i:i + chunk], cache=cache)[0] for i in range(0, ids.shape[1], chunk)]
    return torch.cat(out, dim=1)


@torch.no_grad()
def sample_ids(model, prompt_ids: list[int], max_new_tokens: int, temperature: float = 0.8, top_k: int = 0,
               top_p: float = 1.0, seed: int = 0, n_global: int = 10, n_local: int | None = None):
    """Yield sampled ids under LM-Infinite: a prompt of any length, no sliding window, bounded cache."""
    from .sampling import choose

    if len(prompt_ids) == 0:
        raise LmlabError("the prompt is empty; give at least one character")
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    with lm_infinite(model, n_global, n_local) as policy:
        cache = new_cache(model)
        logits = chunked_logits(model, torch.tensor([list(prompt_ids)], device=device), policy.n_local, cache)[:, -1]
        for _ in range(max_new_tokens):
            nxt = choose(logits, temperature, top_k, top_p, gen)
            yield int(nxt[0])
            logits = model(nxt[:, None], cache=cache)[0][:, -1]
