"""Causal multi-head attention with grouped-query heads, RoPE and a preallocated KV cache.

`model.causal = false` makes it bidirectional (every query sees every key; for masked-LM
training), which has no incremental decoding, so a cache is refused there."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .dropout import keep_mask, keep_scale
from .hooks import HookPoint
from .positions import apply_rope, token_positions


def causal_attention_with_dropout(q, k, v, p: float):
    """Causal attention with dropout on the attention weights, written out for the CPU.

    PyTorch's CPU SDPA has no fused kernel with dropout and falls back to a generic path with slow
    Bernoulli masks; this is the same maths with the cheap mask of dropout.py, arranged for speed
    (each choice measured in docs/performance.md): the causal mask is an added -inf bias, whose
    backward is free; softmax runs in the matmul dtype (it accumulates in fp32 internally and its
    output is rounded to that dtype for the next matmul anyway); the keep-scale multiplies the
    (T x head_dim) output instead of the (T x T) weights.
    """
    if k.shape[1] != q.shape[1]:  # grouped-query: every query head reads its kv group
        rep = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    T = q.shape[-2]
    future = torch.full((T, T), float("-inf"), dtype=q.dtype, device=q.device).triu(1)
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1) + future
    weights = torch.softmax(scores, dim=-1)
    weights = weights * keep_mask(weights.shape, p, q.device, weights.dtype)
    return (weights @ v) * keep_scale(p)


def sdpa(q, k, v, mask, is_causal: bool, p: float):
    """PyTorch's attention of q [B, H, T, hd] over k, v [B, H_kv, S, hd], dropout p included."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, dropout_p=p,
                                          enable_gqa=k.shape[1] != q.shape[1])


def attend(q, k, v, mask, is_causal: bool, p: float):
    """sdpa, except causal attention with dropout on a CPU: causal_attention_with_dropout, faster there."""
    if p > 0.0 and q.device.type == "cpu" and mask is None and is_causal:
        return causal_attention_with_dropout(q, k, v, p)
    return sdpa(q, k, v, mask, is_causal, p)


def per_head(hook: HookPoint, x: torch.Tensor) -> torch.Tensor:
    """x [B, H, T, head_dim] through `hook` in TransformerLens's layout [B, T, H, head_dim]."""
    return hook(x.transpose(1, 2)).transpose(1, 2) if hook.active else x


def cache_dtype(t: torch.Tensor) -> torch.dtype:
    """The KV cache's dtype: fp32 on CPU for half-precision models. PyTorch's CPU attention for one
    query over a bf16 cache is much slower than over an fp32 one (docs/performance.md, Generation),
    which outweighs the small extra memory; on GPUs the cache keeps the model's dtype."""
    if t.device.type == "cpu" and t.dtype in (torch.bfloat16, torch.float16):
        return torch.float32
    return t.dtype


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.n_kv_heads = cfg.n_kv_heads or cfg.n_heads
        if cfg.d_model % cfg.n_heads:
            raise ValueError(f"model.d_model ({cfg.d_model}) must be divisible by model.n_heads ({cfg.n_heads})")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"model.n_heads ({cfg.n_heads}) must be a multiple of model.n_kv_heads ({self.n_kv_heads})")
        self.head_dim = cfg.d_model // cfg.n_heads
        self.use_rope = cfg.positions == "rope"
        self.q_proj = nn.Linear(cfg.d_model, self.n_heads * self.head_dim, bias=cfg.bias)
        self.k_proj = nn.Linear(cfg.d_model, self.n_kv_heads * self.head_dim, bias=cfg.bias)
        self.v_proj = nn.Linear(cfg.d_model, self.n_kv_heads * self.head_dim, bias=cfg.bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, cfg.d_model, bias=cfg.bias)
        self.o_proj.residual_out = True  # scaled init (GPT-2): it writes to the residual stream
        self.qkv_proj = None  # inference only: q, k and v in one projection (fuse_qkv)
        self.dropout = cfg.dropout
        # analysis hooks, per head [B, T, heads, head_dim]; q_rot/k_rot after RoPE
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        if self.use_rope:
            self.hook_q_rot, self.hook_k_rot = HookPoint(), HookPoint()
        # [B, H, T, keys]; a hook on either makes attention take the explicit path (SDPA otherwise)
        self.hook_scores, self.hook_pattern = HookPoint(), HookPoint()
        self.hook_z = HookPoint()         # each head's mix of values [B, T, H, head_dim]
        self.hook_head_out = HookPoint()  # each head's write to the residual [B, T, H, d], bias not included
        self.causal = getattr(cfg, "causal", True)

    def qkv_sizes(self) -> tuple[int, int, int]:
        return self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim, self.n_kv_heads * self.head_dim

    def fuse_qkv(self) -> None:
        """For inference: replace q_proj, k_proj and v_proj by one linear layer over their stacked
        weights (one matmul and one call instead of three per token; measured in performance.md).
        Each output row is the same dot product as before. Not for training: the three are gone."""
        parts = (self.q_proj, self.k_proj, self.v_proj)
        fused = nn.Linear(self.q_proj.in_features, sum(self.qkv_sizes()), bias=self.q_proj.bias is not None,
                          device=self.q_proj.weight.device, dtype=self.q_proj.weight.dtype)
        with torch.no_grad():
            fused.weight.copy_(torch.cat([p.weight for p in parts]))
            if fused.bias is not None:
                fused.bias.copy_(torch.cat([p.bias for p in parts]))
        del self.q_proj, self.k_proj, self.v_proj
        self.qkv_proj = fused

    def project(self, x):
        """q, k and v of x [B, T, d], each [B, T, heads * head_dim], from the three projections
        or the fused one (code that replaces forward, e.g. LM-Infinite, calls this too)."""
        if self.qkv_proj is not None:
            return self.qkv_proj(x).split(self.qkv_sizes(), dim=-1)
        return self.q_proj(x), self.k_proj(x), self.v_proj(x)

    def forward(self, x, rope=None, cache: dict | None = None, start_pos: int = 0):
        B, T, _ = x.shape
        q, k, v = self.project(x)
        # head counts from the projections' widths: under tensor parallelism they are local counts
        q = self.hook_q(q.view(B, T, -1, self.head_dim)).transpose(1, 2)
        k = self.hook_k(k.view(B, T, -1, self.head_dim)).transpose(1, 2)
        v = self.hook_v(v.view(B, T, -1, self.head_dim)).transpose(1, 2)
        if isinstance(start_pos, torch.Tensor):  # per-row positions [B]: rows of different lengths
            return self.o_proj(self.rows_attention(q, k, v, rope, cache, start_pos))
        if self.use_rope:
            cos, sin = rope
            cos, sin = cos[start_pos:start_pos + T], sin[start_pos:start_pos + T]
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            q, k = per_head(self.hook_q_rot, q), per_head(self.hook_k_rot, k)
        if cache is not None:
            if not self.causal:
                raise ValueError("a bidirectional model (model.causal = false) cannot decode incrementally")
            if "k" not in cache:
                shape = (B, k.shape[1], cache["max_len"], self.head_dim)
                cache["k"] = torch.zeros(shape, dtype=cache_dtype(k), device=k.device)
                cache["v"] = torch.zeros(shape, dtype=cache_dtype(v), device=v.device)
            cache["k"][:, :, start_pos:start_pos + T] = k
            cache["v"][:, :, start_pos:start_pos + T] = v
            k = cache["k"][:, :, :start_pos + T]
            v = cache["v"][:, :, :start_pos + T]
        out_dtype = q.dtype  # the fp32 CPU cache computes in fp32; the output goes back to q's dtype
        q = q.to(k.dtype)
        mask, causal = None, self.causal
        if start_pos > 0:
            causal = False
            if T > 1:  # a chunk after cached tokens: query i sees keys 0 .. start_pos + i
                i = torch.arange(T, device=x.device)[:, None]
                j = torch.arange(start_pos + T, device=x.device)[None, :]
                mask = j <= start_pos + i
        p = self.dropout if self.training else 0.0
        if self.hook_scores.active or self.hook_pattern.active:
            causal_mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril() if causal and T > 1 else None
            y = self.explicit_attention(q, k, v, mask if mask is not None else causal_mask, p)
        else:
            # a plain bool: compiled with dynamic shapes, `T > 1` is symbolic, and SDPA refusing it
            # split the compiled decoder into per-layer graphs (test_compiled_decoding)
            is_causal = True if causal and T > 1 else False
            y = attend(q, k, v, mask, is_causal, p)
        z = self.hook_z(y.transpose(1, 2))
        out = self.o_proj(z.reshape(B, T, -1).to(out_dtype))
        return self.head_writes(z.to(out_dtype), out) if self.hook_head_out.active else out

    def explicit_attention(self, q, k, v, allowed, p: float):
        """Attention written out, for analysis: scores and pattern pass through their hooks, which
        may replace them (patching, ablation). allowed: bool [T, keys] or [B, 1, T, keys], or None."""
        if k.shape[1] != q.shape[1]:
            rep = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        pattern = self.hook_pattern(torch.softmax(self.hook_scores(scores), dim=-1))
        return F.dropout(pattern, p) @ v if p > 0.0 else pattern @ v

    def head_writes(self, z, out):
        """Per-head writes z_h W_O,h [B, T, H, d] through their hook. `out` stays o_proj's result
        unless the hook changed them (returned other values or edited them in place)."""
        w = self.o_proj.weight
        heads = torch.einsum("bthe,dhe->bthd", z, w.view(w.shape[0], self.n_heads, self.head_dim))
        version = heads._version
        hooked = self.hook_head_out(heads)
        if hooked is heads and heads._version == version:
            return out
        return hooked.sum(2) if self.o_proj.bias is None else hooked.sum(2) + self.o_proj.bias

    def rows_attention(self, q, k, v, rope, cache: dict, start: torch.Tensor):
        """Attention for a cache whose rows hold sequences of different lengths: row b's T new
        tokens sit at positions start[b]..; each query sees its own row's keys up to itself (a key
        mask over the whole cache). Written out as matmuls rather than SDPA: CPU SDPA splits the
        work across threads by row index, so a row's result changed with its place in the batch,
        and a serving batch must give every request the numbers it would get alone.
        q, k, v: [B, heads, T, head_dim]; returns [B, T, heads * head_dim]."""
        B, H, T, D = q.shape
        at = token_positions(start, T)  # [B, T]
        if self.use_rope:
            cos, sin = rope
            cos, sin = cos[at][:, None], sin[at][:, None]  # [B, 1, T, head_dim / 2]
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if "k" not in cache:
            shape = (B, self.n_kv_heads, cache["max_len"], D)
            cache["k"] = torch.zeros(shape, dtype=cache_dtype(k), device=k.device)
            cache["v"] = torch.zeros(shape, dtype=cache_dtype(v), device=v.device)
        keys, values = cache["k"], cache["v"]
        rows = torch.arange(B, device=k.device)[:, None]
        keys[rows, :, at] = k.transpose(1, 2).to(keys.dtype)  # [B, T, kv_heads, head_dim] at each row's positions
        values[rows, :, at] = v.transpose(1, 2).to(values.dtype)
        rep = H // self.n_kv_heads  # grouped-query: query head h reads kv head h // rep
        qg = q.to(keys.dtype).reshape(B, self.n_kv_heads, rep * T, D) * D ** -0.5
        visible = torch.arange(keys.shape[2], device=k.device)[None, None, :] <= at[:, :, None]  # [B, T, L]
        scores = (qg @ keys.transpose(-2, -1)).view(B, self.n_kv_heads, rep, T, -1)
        scores = scores.masked_fill(~visible[:, None, None], float("-inf"))
        y = (scores.softmax(-1).view(B, self.n_kv_heads, rep * T, -1) @ values).view(B, H, T, D)
        return y.transpose(1, 2).reshape(B, T, H * D).to(q.dtype)
