"""Causal multi-head attention with grouped-query heads, RoPE and a preallocated KV cache."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .positions import apply_rope


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
        self.dropout = cfg.dropout

    def forward(self, x, rope=None, cache: dict | None = None, start_pos: int = 0):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        if self.use_rope:
            cos, sin = rope
            cos, sin = cos[start_pos:start_pos + T], sin[start_pos:start_pos + T]
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            if "k" not in cache:
                shape = (B, self.n_kv_heads, cache["max_len"], self.head_dim)
                cache["k"] = torch.zeros(shape, dtype=k.dtype, device=k.device)
                cache["v"] = torch.zeros(shape, dtype=v.dtype, device=v.device)
            cache["k"][:, :, start_pos:start_pos + T] = k
            cache["v"][:, :, start_pos:start_pos + T] = v
            k = cache["k"][:, :, :start_pos + T]
            v = cache["v"][:, :, :start_pos + T]
        mask, causal = None, True
        if start_pos > 0:
            causal = False
            if T > 1:  # a chunk after cached tokens: query i sees keys 0 .. start_pos + i
                i = torch.arange(T, device=x.device)[:, None]
                j = torch.arange(start_pos + T, device=x.device)[None, :]
                mask = j <= start_pos + i
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal and T > 1,
            dropout_p=self.dropout if self.training else 0.0,
            enable_gqa=self.n_kv_heads != self.n_heads,
        )
        y = y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)
        return self.o_proj(y)
