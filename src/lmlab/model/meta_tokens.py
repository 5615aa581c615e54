"""Learned meta-tokens with meta-attention (Shah et al. 2025), as `model.meta_tokens = K`.

Choices where the paper is unclear (PAPERS.md section 8); see docs/architectures.md:
- K distinct learned vectors; meta-token k has id vocab_size + k, so a sequence may carry them
  explicitly (at inference too) and they are never predicted by the head.
- Training injection: in each sequence, round(meta_rate * T) positions drawn uniformly without
  replacement become meta-tokens (each a uniform draw from the K); the text shifts right and the
  overflow at the end is dropped, so the sequence length (and compute) stays T.
- Targets: a text token keeps its own next-text-token target (the meta-tokens in between are
  skipped); a meta-token position has target -1 (ignored). The loss is over text only.
- Meta-attention: after every block but the last (there its output would reach no loss), an
  extra pre-norm causal attention whose queries and keys are the meta-token positions only (text
  positions neither read from nor write to it), with RoPE at the tokens' absolute positions.
  Meta-tokens still take part in ordinary attention like any token.
- Inference and evaluation inject nothing: plain text runs as the dense model would, with the
  meta-attention idle; meta ids placed in a prompt by hand are honoured, cache included.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .norms import make_norm
from .positions import apply_rope


class MetaAttention(nn.Module):
    """Causal attention among meta-token positions; a residual update at those positions only."""

    def __init__(self, cfg):
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.d_model // cfg.n_heads
        self.norm = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias, cfg.norm_affine)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.o_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.o_proj.residual_out = True

    def forward(self, x, is_meta, rope=None, cache: dict | None = None, start_pos: int = 0):
        B, T, d = x.shape
        counts = is_meta.sum(1)
        m = int(counts.max()) if T else 0
        if m == 0:
            return x
        # positions of each row's meta-tokens in order (rows with fewer are padded, then masked)
        pos = torch.sort((~is_meta).to(torch.int8), dim=1, stable=True).indices[:, :m]
        valid = torch.arange(m, device=x.device)[None] < counts[:, None]
        gather_idx = pos[..., None].expand(B, m, d)
        h = self.norm(x.gather(1, gather_idx))
        q, k, v = self.qkv(h).view(B, m, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if rope is not None:
            cos, sin = rope[0][start_pos + pos][:, None], rope[1][start_pos + pos][:, None]
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        allowed = torch.ones(m, m, dtype=torch.bool, device=x.device).tril()[None] & valid[:, None, :]
        if cache is not None and "k" in cache and start_pos > 0:
            k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
            old = cache["valid"][:, None, :].expand(B, m, -1)
            allowed = torch.cat([old, allowed], 2)
            valid_keys = torch.cat([cache["valid"], valid], 1)
        else:
            valid_keys = valid
        # a padded query row may see nothing: let every row see its own key to avoid NaN
        own = torch.zeros_like(allowed)
        own[:, torch.arange(m), allowed.shape[-1] - m + torch.arange(m)] = True
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=(allowed | own)[:, None])
        if cache is not None:
            cache["k"], cache["v"], cache["valid"] = k.detach(), v.detach(), valid_keys
        y = self.o_proj(y.transpose(1, 2).reshape(B, m, self.n_heads * self.head_dim)) * valid[..., None].to(x.dtype)
        return x.scatter_add(1, gather_idx, y)


class MetaTokens(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        if cfg.meta_tokens < 0:
            raise ValueError(f"model.meta_tokens must be >= 0 (0 = off), got {cfg.meta_tokens}")
        if not 0.0 <= cfg.meta_rate < 1.0:
            raise ValueError(f"model.meta_rate must be in [0, 1), got {cfg.meta_rate}")
        self.vocab_size, self.count, self.rate = cfg.vocab_size, cfg.meta_tokens, cfg.meta_rate
        self.weight = nn.Parameter(torch.randn(cfg.meta_tokens, cfg.d_model) * cfg.init_std)
        # after every block but the last: what the last one writes at meta positions reaches no loss
        self.attn = nn.ModuleList(MetaAttention(cfg) for _ in range(cfg.n_layers - 1))

    def inject(self, idx, targets):
        """Insert round(rate*T) meta ids per row at random positions; meta targets are -1."""
        B, T = idx.shape
        n = min(round(self.rate * T), T - 1)
        if n <= 0:
            return idx, targets
        pos = torch.rand(B, T, device=idx.device).argsort(1)[:, :n]
        is_meta = torch.zeros(B, T, dtype=torch.bool, device=idx.device).scatter_(1, pos, True)
        src = (torch.arange(T, device=idx.device)[None] - is_meta.cumsum(1)).clamp(min=0)
        meta_ids = self.vocab_size + torch.randint(self.count, (B, T), device=idx.device)
        new_idx = torch.where(is_meta, meta_ids, idx.gather(1, src))
        new_targets = torch.where(is_meta, torch.full_like(targets, -1), targets.gather(1, src))
        return new_idx, new_targets

    def embed(self, idx, embed: nn.Module):
        """Embeddings for ids where ids >= vocab_size are meta-tokens; also the meta mask."""
        is_meta = idx >= self.vocab_size
        if not bool(is_meta.any()):
            return embed(idx), is_meta
        if int(idx.max()) >= self.vocab_size + self.count:
            raise ValueError(f"token id {int(idx.max())} is beyond the vocabulary and the {self.count} meta-tokens")
        text = embed(idx.masked_fill(is_meta, 0))
        meta = F.embedding((idx - self.vocab_size).clamp(min=0), self.weight).to(text.dtype)
        return torch.where(is_meta[..., None], meta, text), is_meta

    def mix(self, layer: int, x, is_meta, rope, caches, start_pos: int):
        """Meta-attention after block `layer` (identity after the last block)."""
        if layer >= len(self.attn):
            return x
        return self.attn[layer](x, is_meta, rope, None if caches is None else caches[layer], start_pos)

    def caches(self, cache) -> list | None:
        """Per-layer meta-attention KV dicts, kept on the InferenceCache object."""
        if cache is None:
            return None
        if getattr(cache, "meta", None) is None:
            cache.meta = [{} for _ in self.attn]
        return cache.meta
