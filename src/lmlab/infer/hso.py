"""Hidden-state optimisation (HSO): gradient steps on the KV cache of the text seen so far, then predict.

The weights stay as they are; what moves is the cache (docs/inference.md, "Hidden-state optimisation").
For seen tokens x_0 .. x_{P-1} (the prompt, or the tokens before a chunk):

- Optimised tensors: for every attention layer, K and V of the positions 0 .. P-2, exactly as the
  model's KV cache stores them (K after RoPE), each a free tensor of its own (a change at one
  position or layer does not recompute the others).
- Loss: the mean negative log-likelihood of x_1 .. x_{P-1}, each predicted at the position before
  it by a forward pass whose attention reads its keys and values from those tensors (queries and
  the residual stream are recomputed; the substitution goes through the attention's k/v hook
  points, so the model code is untouched). Rows of a batch are independent: the loss is summed
  over rows of per-row means.
- The last seen position is not optimised: its K and V are read only by queries at or after it,
  i.e. by the prediction of the unseen next token, so this loss gives them no gradient. It is
  run afresh through the optimised cache (the model's own cache interface) to predict. Every
  layer's K and V, the last layer's included, reach the loss through that layer's attention.
- Update: plain gradient descent, `steps` times, K -= lr * dL/dK (RoPE is a rotation, so steps on K
  before or after it are the same steps).

Zero steps is the plain model: the code paths that would differ are not taken.
Attention-only models (block patterns of A and F letters, no meta-tokens): other mixers keep a
recurrent state, not a per-position cache.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import LmlabError
from ..model.attention import CausalSelfAttention, cache_dtype


@dataclass(frozen=True)
class Setting:
    steps: int
    lr: float

    def __post_init__(self):
        if self.steps < 0:
            raise LmlabError(f"--hso must be >= 0 steps, got {self.steps}")
        if not self.lr > 0 or self.lr == float("inf"):
            raise LmlabError(f"--hso-lr must be > 0, got {self.lr}")


def attention_layers(model) -> list[tuple[int, int, CausalSelfAttention]]:
    """(block index, sublayer index, attention) of every attention sublayer, in cache order; refuses
    models whose cache holds anything else."""
    if getattr(model, "meta", None) is not None:
        raise LmlabError("--hso needs a model without meta-tokens (their cache is not per position)")
    found = []
    for i, block in enumerate(model.blocks):
        for j, (name, sub) in enumerate(block.sublayers.items()):
            if isinstance(sub.mixer, CausalSelfAttention):
                found.append((i, j, sub.mixer))
            elif not name.startswith("ffn"):
                raise LmlabError(f"--hso needs an attention-only model; block {i} has a {name!r} sublayer "
                                 "whose cache is a recurrent state")
    return found


@contextmanager
def substituted(layers, kv: list):
    """Make every attention use kv[n] = [K, V] ([B, kv_heads, T, head_dim], cache layout) as its keys
    and values. An empty kv list is filled on the first forward pass with the model's own K and V,
    detached and made to require grad: that pass computes exactly the plain model."""
    adopt = not kv
    handles = []
    for n, (_, _, attn) in enumerate(layers):
        if adopt:
            kv.append([None, None])
        for slot, point in enumerate((attn.hook_k_rot if attn.use_rope else attn.hook_k, attn.hook_v)):
            def replace(module, inputs, out, n=n, slot=slot):  # out: [B, T, heads, head_dim]
                if kv[n][slot] is None:
                    kv[n][slot] = out.detach().transpose(1, 2).contiguous().requires_grad_()
                return kv[n][slot].transpose(1, 2).to(out.dtype)
            handles.append(point.register_forward_hook(replace))
    try:
        yield kv
    finally:
        for h in handles:
            h.remove()


def seen_loss(model, seen: torch.Tensor, kv: list) -> torch.Tensor:
    """Per-row mean NLL [B] of seen[:, 1:], predicted from seen[:, :-1] with keys and values from kv."""
    layers = attention_layers(model)
    with substituted(layers, kv):
        logits, _ = model(seen[:, :-1])
    nll = F.cross_entropy(logits.float().transpose(1, 2), seen[:, 1:], reduction="none")
    return nll.mean(dim=1)


def optimise(model, seen: torch.Tensor, setting: Setting) -> tuple[list, list[float]]:
    """K and V of positions 0 .. P-2 after `setting.steps` descent steps on the seen-text loss, and
    the loss (mean over rows) before each step. seen: ids [B, P], P >= 2."""
    if seen.shape[1] < 2:
        raise ValueError("HSO needs at least two seen tokens")
    model.eval()
    kv: list = []
    losses = []
    with torch.enable_grad():
        for _ in range(setting.steps):
            loss = seen_loss(model, seen, kv)
            losses.append(float(loss.detach().mean()))
            tensors = [t for pair in kv for t in pair]
            grads = torch.autograd.grad(loss.sum(), tensors)  # the weights get no .grad
            with torch.no_grad():
                for t, g in zip(tensors, grads):
                    t.sub_(setting.lr * g)
    return [[k.detach(), v.detach()] for k, v in kv], losses


def fill_cache(model, cache, kv: list) -> None:
    """Put optimised K and V (positions 0 .. T-1) into an empty InferenceCache; it continues at T."""
    for (i, j, attn), (k, v) in zip(attention_layers(model), kv):
        B, H, T, D = k.shape
        slot = cache.layers[i][j]
        for name, t in (("k", k), ("v", v)):
            slot[name] = torch.zeros(B, H, slot["max_len"], D, dtype=cache_dtype(t), device=t.device)
            slot[name][:, :, :T] = t
    cache.pos = kv[0][0].shape[2]


def prefill(setting: Setting):
    """For generate.decode_steps: encode a prompt (or a re-encoded window) into `cache` after HSO on
    it; returns the logits of its last position."""
    def encode(model, seq, cache):
        if setting.steps == 0 or seq.shape[1] < 2:
            return model(seq, cache=cache)[0]
        kv, _ = optimise(model, seq, setting)
        fill_cache(model, cache, kv)
        return model(seq[:, -1:], cache=cache)[0]

    return encode


@torch.no_grad()
def continue_logits(model, seen: torch.Tensor, new: torch.Tensor, setting: Setting) -> torch.Tensor:
    """Logits [B, 1 + N, V] at the last seen position and at new ids [B, N] (teacher-forced), after
    HSO on seen [B, P]; zero steps (or one seen token) is one plain forward pass over both."""
    P = seen.shape[1]
    if setting.steps == 0 or P < 2:
        return model(torch.cat([seen, new], dim=1))[0][:, P - 1:]
    kv, _ = optimise(model, seen, setting)
    cache = model.new_cache(P + new.shape[1])
    fill_cache(model, cache, kv)
    return model(torch.cat([seen[:, -1:], new], dim=1), cache=cache)[0]


# --- evaluation, chunk by chunk -----------------------------------------------------------------
def chunk_windows(n_targets: int, chunk: int, context: int) -> list[tuple[int, int, int]]:
    """(lo, a, c) per chunk: targets ids[a .. a+c-1] are predicted from the window ids[lo .. a+c-2]
    of at most `context` ids; ids[lo .. a-1] are its seen tokens."""
    out = []
    for a in range(1, n_targets + 1, chunk):
        c = min(chunk, n_targets + 1 - a)
        out.append((max(0, a + c - 1 - context), a, c))
    return out


def token_losses(model, ids, chunk: int, setting: Setting, batch_size: int = 8) -> dict:
    """Per-token loss in nats for ids[1:], chunk by chunk (each chunk after HSO on the tokens of its
    window before it), with the seen-text loss before and after HSO per chunk and the wall time."""
    context = model.cfg.context
    if not 1 <= chunk < context:
        raise LmlabError(f"--hso-chunk must be in [1, {context - 1}] (below model.context), got {chunk}")
    device = next(model.parameters()).device
    ids = np.asarray(ids, dtype=np.int64)
    windows = chunk_windows(len(ids) - 1, chunk, context)
    out = np.zeros(len(ids) - 1, dtype=np.float64)
    groups: dict[tuple[int, int], list] = {}
    for lo, a, c in windows:  # rows of one batch share their seen length and chunk length
        groups.setdefault((a - lo, c), []).append((lo, a, c))
    started = time.perf_counter()
    for (P, c), members in groups.items():
        for b in range(0, len(members), batch_size):
            rows = members[b:b + batch_size]
            seen = torch.from_numpy(np.stack([ids[lo:a] for lo, a, _ in rows])).to(device)
            new = torch.from_numpy(np.stack([ids[a:a + c - 1] for _, a, _ in rows])).to(device)
            target = torch.from_numpy(np.stack([ids[a:a + c] for _, a, _ in rows])).to(device)
            logits = continue_logits(model, seen, new, setting)
            nll = F.cross_entropy(logits.float().transpose(1, 2), target, reduction="none")
            for row, (_, a, _) in enumerate(rows):
                out[a - 1:a - 1 + c] = nll[row].double().cpu().numpy()
    return {"losses": out, "seconds": time.perf_counter() - started, "windows": windows}


def evaluate(model, ids, token_nbytes: np.ndarray, chunk: int, setting: Setting, batch_size: int = 8) -> dict:
    """Loss, perplexity and bits per byte of ids with HSO before each chunk, beside the same chunking
    without it (`without_hso`)."""
    from ..eval.perplexity import summarize

    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) < 2:
        raise LmlabError("need at least two tokens to evaluate")
    nbytes = token_nbytes[ids[1:]]
    plain = summarize(token_losses(model, ids, chunk, Setting(0, setting.lr), batch_size)["losses"], nbytes)
    result = summarize(token_losses(model, ids, chunk, setting, batch_size)["losses"], nbytes)
    return {**result, "hso": {"steps": setting.steps, "lr": setting.lr, "chunk": chunk},
            "without_hso": {k: plain[k] for k in ("loss", "ppl", "bpb")}}


# --- multiple choice ----------------------------------------------------------------------------
def choice_loglikelihoods(model, context: list[int], choices: list[list[int]], setting: Setting) -> list[float]:
    """log p(choice | context) in nats for each choice, after HSO on the context (shared by all
    choices). The context is cut from the left so that it and the longest choice fit the window."""
    window = model.cfg.context
    longest = max(len(c) for c in choices)
    if not context or longest == 0 or longest > window:
        raise LmlabError("a choice is empty or longer than the model's context, or the context is empty")
    context = context[-(window + 1 - longest):]
    device = next(model.parameters()).device
    n = len(choices)
    seen = torch.tensor([context] * n, device=device)
    new = torch.zeros(n, longest - 1, dtype=torch.long, device=device)  # right padding: causal, never read
    for r, c in enumerate(choices):
        new[r, :len(c) - 1] = torch.tensor(c[:-1])
    if setting.steps and len(context) >= 2:  # one optimisation for all choices: they share the context
        kv, _ = optimise(model, seen[:1], setting)
        kv = [[k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)] for k, v in kv]
        cache = model.new_cache(len(context) + longest - 1)
        fill_cache(model, cache, kv)
        with torch.no_grad():
            logits = model(torch.cat([seen[:, -1:], new], dim=1), cache=cache)[0]
    else:
        logits = continue_logits(model, seen, new, Setting(0, setting.lr))
    logp = F.log_softmax(logits.float(), dim=-1)
    return [float(logp[r, torch.arange(len(c)), torch.tensor(c, device=device)].double().sum())
            for r, c in enumerate(choices)]
