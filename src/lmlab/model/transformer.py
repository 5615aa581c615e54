"""Decoder-only Transformer LM assembled from a ModelConfig. Pure compute: no I/O, no logging."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..embeddings import make_embedding
from .block import Block, layer_patterns
from .dropout import Dropout
from .hooks import HookPoint
from .meta_tokens import MetaTokens
from .norms import make_norm, narrow_writers, stream_width, to_stream
from .positions import rope_tables, token_positions


class InferenceCache:
    """Per-sublayer state for incremental decoding (KV tensors, recurrent states) + position.

    `pos` is an int, or a LongTensor [B] of per-row positions for a batch whose rows hold
    sequences of different lengths (attention layers only; the serving engine uses it)."""

    def __init__(self, model: "Transformer", max_len: int):
        self.max_len = max_len
        self.layers = [[{"max_len": max_len} for _ in b.sublayers] for b in model.blocks]
        self.pos = 0


class Transformer(nn.Module):
    """`embedding_matrix`: the frozen input matrix [vocab_size, d_model] of an embedding kind that is
    built outside the model (embeddings.frozen_matrix: glyph); without it such a kind starts from
    zeros, for a checkpoint's saved matrix to replace."""

    def __init__(self, cfg, embedding_matrix: torch.Tensor | None = None):
        super().__init__()
        if cfg.vocab_size <= 0:
            raise ValueError("model.vocab_size must be set (it comes from the tokenizer)")
        self.cfg = cfg
        self.embed = make_embedding(cfg, embedding_matrix)
        self.hook_embed = HookPoint()
        self.pos_embed = nn.Embedding(cfg.context, cfg.d_model) if cfg.positions == "learned" else None
        if self.pos_embed is not None:
            self.hook_pos_embed = HookPoint()  # [B, T, d], as TransformerLens's hook_pos_embed
        if cfg.positions not in ("rope", "learned"):
            raise ValueError(f"unknown model.positions {cfg.positions!r}; valid: rope, learned")
        self.drop = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, i, p) for i, p in enumerate(layer_patterns(cfg)))
        self.meta = MetaTokens(cfg) if cfg.meta_tokens else None  # ids >= vocab_size are meta-tokens
        self.final_norm = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias, cfg.norm_affine)
        self.hook_final = HookPoint()
        self.hook_logits = HookPoint()
        frozen_embed = getattr(self.embed, "frozen", False)  # protocol.ModuleProtocol.frozen
        self.tied = cfg.tie_embeddings and not frozen_embed
        self.lm_head = None if self.tied else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.positions == "rope":
            cos, sin = rope_tables(cfg.d_model // cfg.n_heads, cfg.context, cfg.rope_base)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.d_stream = stream_width(cfg)  # d_model, or d_model - 1 for crmsnorm (see norms.py)
        if self.d_stream != cfg.d_model:
            narrow_writers(self, cfg.d_model)
        self.reset_parameters()

    def reset_parameters(self):
        # writers into the residual stream (protocol.ModuleProtocol.residual_out) get the smaller std
        std = self.cfg.init_std
        resid_std = std / math.sqrt(2 * self.cfg.n_layers)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, resid_std if getattr(module, "residual_out", False) else std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, 0.0, std)
        if isinstance(getattr(self.embed, "weight", None), nn.Parameter):
            nn.init.normal_(self.embed.weight, 0.0, std)

    def rope(self, max_pos: int):
        if self.cfg.positions != "rope":
            return None
        if max_pos > self.rope_cos.shape[0]:  # beyond the trained context (long-context evals)
            # grow the tables (doubling) and keep them: rebuilding them for every decoded token made
            # decoding past the context cost O(length) per token. Rows below the old length are unchanged.
            n = max(max_pos, 2 * self.rope_cos.shape[0])
            cos, sin = rope_tables(self.cfg.d_model // self.cfg.n_heads, n, self.cfg.rope_base, self.rope_cos.device)
            self.rope_cos, self.rope_sin = cos.to(self.rope_cos.dtype), sin.to(self.rope_sin.dtype)
        return self.rope_cos, self.rope_sin

    def head_weight(self) -> torch.Tensor:
        return self.embed.weight if self.tied else self.lm_head.weight

    def hidden(self, idx: torch.Tensor, cache: InferenceCache | None = None) -> torch.Tensor:
        """Final normed hidden states [B, T, d] for ids [B, T] (continuing `cache` if given)."""
        B, T = idx.shape
        start = cache.pos if cache is not None else 0  # an int, or per-row positions [B] (InferenceCache)
        end = int(start.max()) + T if isinstance(start, torch.Tensor) else start + T
        if cache is not None and end > cache.max_len:
            raise ValueError(f"cache holds {cache.max_len} positions; {end} requested")
        is_meta = None
        if self.meta is not None:
            x, is_meta = self.meta.embed(idx, self.embed)
            meta_caches = self.meta.caches(cache)
        else:
            x = self.embed(idx)
        x = self.hook_embed(x)
        if self.pos_embed is not None:
            if end > self.cfg.context:
                raise ValueError(f"learned positions stop at model.context={self.cfg.context}")
            pos = self.pos_embed(token_positions(start, T, idx.device))
            x = x + (self.hook_pos_embed(pos.expand(B, T, -1)) if self.hook_pos_embed.active else pos)
        x = self.drop(to_stream(x, self.d_stream))
        rope = self.rope(end)
        for i, block in enumerate(self.blocks):
            x = block(x, caches=None if cache is None else cache.layers[i], rope=rope, start_pos=start)
            if is_meta is not None:
                x = self.meta.mix(i, x, is_meta, rope, meta_caches, start)
        if cache is not None:
            cache.pos = start + T
        return self.hook_final(self.final_norm(x))

    def forward(self, idx, targets=None, cache: InferenceCache | None = None):
        """Logits [B, T, V]; with targets, also the mean cross-entropy (targets < 0 are ignored)."""
        if self.meta is not None and self.training and targets is not None and cache is None:
            idx, targets = self.meta.inject(idx, targets)  # pre-training: meta-tokens at random places
        h = self.hidden(idx, cache)
        logits = self.hook_logits(F.linear(h, self.embed.weight) if self.tied else self.lm_head(h))
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def new_cache(self, max_len: int | None = None) -> InferenceCache:
        return InferenceCache(self, max_len or self.cfg.context)

    def num_params(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def flops_per_token(self, seq_len: int | None = None) -> dict:
        """Matmul FLOPs per token: forward and training (forward + backward = 3x forward).

        Counts every weight matrix used per token (embedding lookup excluded, head included)
        plus attention scores and mixing: 2 * 2 * T * d per attention layer on average T/2 keys.
        """
        T = seq_len or self.cfg.context
        dense = 0
        for name, p in self.named_parameters():
            if p.dim() == 2 and not name.startswith(("embed.", "pos_embed.")):
                dense += p.numel()
        if self.tied:
            dense += self.embed.weight.numel()
        n_attn = sum(1 for b in self.blocks for k in b.sublayers if k.startswith("attn"))
        attn = n_attn * 2 * T * self.cfg.d_model  # QK^T and AV, causal average T/2 keys each x 2 flops
        forward = 2 * dense + attn
        return {"forward": forward, "train": 3 * forward}
