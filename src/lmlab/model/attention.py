"""Causal multi-head attention with grouped-query heads, RoPE and a preallocated KV cache."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .dropout import keep_mask, keep_scale
from .positions import apply_rope


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


def cache_dtype(t: torch.Tensor) -> torch.dtype:
    """The KV cache's dtype: fp32 on CPU for half-precision models. PyTorch's CPU attention for one
    query over a bf16 cache measured 6x slower than over an fp32 one (166 vs 27 us at 256 keys, 6
    heads of 64), more than the small extra memory costs; on GPUs the cache keeps the model's dtype."""
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
        self.cpu_lanes = True  # False: SDPA's own dropout on CPU too (for side-by-side measurements)

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
        q = q.view(B, T, -1, self.head_dim).transpose(1, 2)
        k = k.view(B, T, -1, self.head_dim).transpose(1, 2)
        v = v.view(B, T, -1, self.head_dim).transpose(1, 2)
        if self.use_rope:
            cos, sin = rope
            cos, sin = cos[start_pos:start_pos + T], sin[start_pos:start_pos + T]
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
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
        mask, causal = None, True
        if start_pos > 0:
            causal = False
            if T > 1:  # a chunk after cached tokens: query i sees keys 0 .. start_pos + i
                i = torch.arange(T, device=x.device)[:, None]
                j = torch.arange(start_pos + T, device=x.device)[None, :]
                mask = j <= start_pos + i
        p = self.dropout if self.training else 0.0
        if p > 0.0 and self.cpu_lanes and x.device.type == "cpu" and mask is None and causal and T > 1:
            y = causal_attention_with_dropout(q, k, v, p)
        else:
            # a plain bool: compiled with dynamic shapes, `T > 1` is symbolic, and SDPA refusing it
            # split the compiled decoder into per-layer graphs (test_compiled_decoding)
            is_causal = True if causal and T > 1 else False
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=is_causal, dropout_p=p,
                enable_gqa=k.shape[1] != q.shape[1],
            )
        y = y.transpose(1, 2).reshape(B, T, -1).to(out_dtype)
        return self.o_proj(y)
