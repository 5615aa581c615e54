"""kNN-LM (Khandelwal et al. 2020): interpolate the LM with a nearest-neighbour search over a datastore.

Datastore: one entry per target token of a corpus; key = the input of the last block's FFN after
its norm (hook `blocks.{L-1}.ffn.in`), value = the next token id. Keys are stored as float16
(`keys.npy`), values as int32 (`vals.npy`), with `meta.json`; a faiss index is exact (Flat, rebuilt
from the keys when loaded) for small stores and IVF-PQ (`index.faiss`) for large ones.
A store directory is complete or absent: it is written under a temporary name and renamed.

p_kNN(w) = sum over the k neighbours whose value is w of softmax(-d / temperature), with d the
squared L2 distance recomputed exactly from the stored keys;
p = lambda * p_kNN + (1 - lambda) * p_LM, combined in log space so lambda = 0 is exactly p_LM.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .. import jsonio
from ..analysis.hooks import capture
from ..errors import LmlabError
from ..model.hooks import hook_points

FLAT_MAX = 500_000  # auto: exact search up to this many keys, IVF-PQ beyond


def faiss_module():
    try:
        import faiss
    except ImportError:
        raise LmlabError("kNN-LM needs faiss: pip install 'lmlab[knn]' (or faiss-cpu)") from None
    return faiss


def key_hook(model) -> str:
    """Name of the hook whose output is a kNN key: the last block's normed FFN input."""
    name = f"blocks.{len(model.blocks) - 1}.ffn.in"
    if name not in hook_points(model):
        raise LmlabError(f"kNN-LM keys come from {name}, but the last block has no FFN (pattern {model.cfg.pattern!r})")
    return name


@torch.no_grad()
def keys_and_logits(model, ids: torch.Tensor, cache=None):
    """(keys [B, T, d], logits [B, T, V]) of one forward pass."""
    with capture(model, [key_hook(model)]) as acts:
        logits, _ = model(ids, cache=cache)
    return acts[key_hook(model)], logits


@torch.no_grad()
def iter_entries(model, ids: np.ndarray, batch_size: int = 8) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(keys float32 [n, d], next-token values [n]) for every target ids[1:], in order.

    Windows of `context` tokens tile the text, as in evaluation, so each target appears once.
    """
    model.eval()
    ctx = model.cfg.context
    device = next(model.parameters()).device
    ids = np.asarray(ids, dtype=np.int64)
    n_targets = len(ids) - 1
    starts = list(range(0, n_targets, ctx))
    full = [s for s in starts if s + ctx <= n_targets]
    for i in range(0, len(full), batch_size):
        chunk = full[i:i + batch_size]
        x = torch.from_numpy(np.stack([ids[s:s + ctx] for s in chunk])).to(device)
        keys, _ = keys_and_logits(model, x)
        yield (keys.float().reshape(-1, keys.shape[-1]).cpu().numpy(),
               np.concatenate([ids[s + 1:s + 1 + ctx] for s in chunk]))
    if len(full) < len(starts):  # the last, shorter window, in a full-length window ending with it (as in evaluation)
        s, lo = starts[-1], max(0, n_targets - ctx)
        keys, _ = keys_and_logits(model, torch.from_numpy(ids[lo:n_targets][None]).to(device))
        yield keys[0, s - lo:].float().cpu().numpy(), ids[s + 1:]


def _make_index(keys: np.ndarray, kind: str, seed: int = 0):
    """A faiss index over float32 keys [n, d]: Flat (exact) or IVF-PQ (approximate, compact)."""
    faiss = faiss_module()
    n, d = keys.shape
    if kind == "flat":
        index = faiss.IndexFlatL2(d)
    else:
        nlist = max(1, min(int(math.sqrt(n)), n // 40))  # faiss wants >= 39 training points per list
        m = next(m for m in (d // 4, d // 8, d // 2, d, 1) if m >= 1 and d % m == 0)
        index = faiss.IndexIVFPQ(faiss.IndexFlatL2(d), d, nlist, m, 8)
        rng = np.random.default_rng(seed)
        sample = keys[np.sort(rng.choice(n, size=min(n, 40 * nlist), replace=False))]
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
        index.nprobe = min(32, nlist)
    for i in range(0, n, 65536):
        index.add(np.ascontiguousarray(keys[i:i + 65536], dtype=np.float32))
    return index


def build(model, ids, out_dir, index: str = "auto", batch_size: int = 8, meta: dict | None = None,
          progress: Callable[[int], None] | None = None) -> Path:
    """Write a datastore for `ids` to `out_dir`; returns its path. Refuses to overwrite a store."""
    faiss = faiss_module()
    if index not in ("auto", "flat", "ivfpq"):
        raise LmlabError(f"unknown kNN index {index!r}; valid: auto, flat, ivfpq")
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) < 2:
        raise LmlabError("the datastore corpus needs at least two tokens")
    out = Path(out_dir)
    if out.exists():
        raise LmlabError(f"{out} already exists; remove it or choose another -o")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    n, d = len(ids) - 1, model.cfg.d_model
    kind = index if index != "auto" else ("flat" if n <= FLAT_MAX else "ivfpq")
    try:
        tmp.mkdir()
        keys = np.lib.format.open_memmap(tmp / "keys.npy", mode="w+", dtype=np.float16, shape=(n, d))
        vals = np.lib.format.open_memmap(tmp / "vals.npy", mode="w+", dtype=np.int32, shape=(n,))
        at = 0
        for k, v in iter_entries(model, ids, batch_size):
            keys[at:at + len(v)], vals[at:at + len(v)] = k, v
            at += len(v)
            if progress is not None:
                progress(len(v))
        assert at == n, (at, n)
        keys.flush()
        vals.flush()
        if kind == "ivfpq":  # a Flat index is rebuilt from the keys on load: no second copy on disk
            faiss.write_index(_make_index(keys, kind), str(tmp / "index.faiss"))
        (tmp / "meta.json").write_text(jsonio.dumps({
            "format": 1, "entries": n, "dim": d, "index": kind, "hook": key_hook(model),
            "vocab_size": model.cfg.vocab_size, **(meta or {})}, indent=1))
        del keys, vals
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


@dataclass
class Datastore:
    keys: np.ndarray       # float16 [n, d] (memory-mapped)
    vals: np.ndarray       # int32 [n]
    index: object
    meta: dict

    @classmethod
    def load(cls, path) -> "Datastore":
        faiss = faiss_module()
        path = Path(path)
        if not (path / "meta.json").is_file():
            raise LmlabError(f"{path} is not a kNN datastore (no meta.json); build one with `lmlab knn build`")
        meta = json.loads((path / "meta.json").read_text())
        keys = np.load(path / "keys.npy", mmap_mode="r")
        vals = np.load(path / "vals.npy", mmap_mode="r")
        if meta["index"] == "flat":
            index = _make_index(keys, "flat")
        else:
            index = faiss.read_index(str(path / "index.faiss"))
            index.nprobe = min(32, index.nlist)
        return cls(keys, vals, index, meta)

    def __len__(self):
        return len(self.vals)

    def check_model(self, model) -> None:
        if self.meta["dim"] != model.cfg.d_model or self.meta["vocab_size"] != model.cfg.vocab_size:
            raise LmlabError(f"datastore was built for d_model={self.meta['dim']}, vocab={self.meta['vocab_size']}; "
                             f"this model has d_model={model.cfg.d_model}, vocab={model.cfg.vocab_size}")

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(squared L2 distances [n, k], values [n, k]) of the k nearest keys, distances exact."""
        k = min(k, len(self))
        q = np.ascontiguousarray(queries.detach().float().cpu().numpy())
        _, idx = self.index.search(q, k)
        found = idx >= 0  # IVF may return fewer than k; missing ones get no weight
        safe = np.where(found, idx, 0)
        nb = torch.from_numpy(self.keys[safe.reshape(-1)].astype(np.float32)).view(len(q), k, -1)
        dist = ((nb - torch.from_numpy(q)[:, None, :]) ** 2).sum(-1)
        dist = dist.masked_fill(~torch.from_numpy(found), float("inf"))
        return dist.to(queries.device), torch.from_numpy(self.vals[safe.reshape(-1)].astype(np.int64)).view(len(q), k).to(queries.device)


def knn_logprobs(store: Datastore, queries: torch.Tensor, vocab_size: int, k: int = 1024,
                 temperature: float = 1.0) -> torch.Tensor:
    """log p_kNN [n, V] for queries [n, d]; tokens with no neighbour get -inf."""
    dist, vals = store.search(queries, k)
    weights = (-dist / temperature).softmax(-1).nan_to_num(0.0)  # a query with no neighbour: all zero
    p = torch.zeros(len(queries), vocab_size, device=queries.device).scatter_add_(-1, vals, weights)
    return p.log()


def interpolate(lm_logprobs: torch.Tensor, knn_lp: torch.Tensor, lmbda: float) -> torch.Tensor:
    """log(lambda * p_kNN + (1 - lambda) * p_LM), computed stably; lambda = 0 returns p_LM exactly."""
    if not 0.0 <= lmbda <= 1.0:
        raise LmlabError(f"kNN lambda must be in [0, 1], got {lmbda}")
    a = knn_lp + (math.log(lmbda) if lmbda > 0 else float("-inf"))
    b = lm_logprobs + (math.log1p(-lmbda) if lmbda < 1 else float("-inf"))
    return torch.logaddexp(a, b)


@torch.no_grad()
def mixed_logprobs(model, store: Datastore, ids: torch.Tensor, lmbda: float = 0.25, k: int = 1024,
                   temperature: float = 1.0, cache=None):
    """(log p_LM [B, T, V], log p_kNN [B, T, V], log p [B, T, V]) for ids [B, T]."""
    keys, logits = keys_and_logits(model, ids, cache)
    lm = F.log_softmax(logits.float(), dim=-1)
    knn = knn_logprobs(store, keys.reshape(-1, keys.shape[-1]), lm.shape[-1], k, temperature).view_as(lm)
    return lm, knn, interpolate(lm, knn, lmbda)


@torch.no_grad()
def target_neighbours(model, store: Datastore, ids, k: int = 1024) -> dict:
    """For every target ids[1:]: log p_LM(target), the k squared distances, and which neighbours
    hold the target. Enough to score any (lambda, temperature) without searching again."""
    model.eval()
    ctx = model.cfg.context
    device = next(model.parameters()).device
    ids = np.asarray(ids, dtype=np.int64)
    base, dists, hits = [], [], []
    for s in range(0, len(ids) - 1, ctx):
        end = min(s + ctx, len(ids) - 1)
        lo = max(0, end - ctx)  # a last, shorter window sees the tokens before it (as in evaluation)
        x = torch.from_numpy(ids[lo:end][None]).to(device)
        y = torch.from_numpy(ids[s + 1:end + 1]).to(device)
        keys, logits = (t[:, s - lo:] for t in keys_and_logits(model, x))
        base.append(F.log_softmax(logits[0].float(), -1).gather(-1, y[:, None])[:, 0].double().cpu())
        d, v = store.search(keys[0], k)
        dists.append(d.cpu())
        hits.append((v == y[:, None]).cpu())
    return {"base": torch.cat(base), "dist": torch.cat(dists), "hit": torch.cat(hits)}


def mix_target_logprobs(nb: dict, lmbda: float, temperature: float = 1.0) -> torch.Tensor:
    """log p_mix(target) per token from `target_neighbours` output (same maths as `mixed_logprobs`)."""
    w = (-nb["dist"] / temperature).softmax(-1).nan_to_num(0.0).double()
    knn = (w * nb["hit"]).sum(-1).log()
    return interpolate(nb["base"], knn, lmbda)


def token_logprobs(model, store: Datastore, ids, lmbda: float = 0.25, k: int = 1024,
                   temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(log p_LM, log p_mix) of every target ids[1:], windows as in `lmlab.eval.perplexity`."""
    nb = target_neighbours(model, store, ids, k)
    return nb["base"].numpy(), mix_target_logprobs(nb, lmbda, temperature).numpy()


def per_token_report(base: np.ndarray, mixed: np.ndarray, nbytes: float, bins: int = 41) -> dict:
    """Perplexity with and without kNN, plus the critique's per-token view of the change."""
    delta = mixed - base  # > 0: the kNN made this token more likely
    lo, hi = (float(np.quantile(delta, 0.001)), float(np.quantile(delta, 0.999))) if len(delta) else (-1.0, 1.0)
    hist, edges = np.histogram(np.clip(delta, lo, hi), bins=bins, range=(lo, hi))

    def summary(lp):
        loss = float(-lp.mean())
        return {"loss": loss, "ppl": math.exp(min(loss, 700)), "bpb": float(-lp.sum() / math.log(2) / max(nbytes, 1))}

    return {"base": summary(base), "knn": summary(mixed), "tokens": int(len(delta)),
            "frac_better": float((delta > 0).mean()), "frac_worse": float((delta < 0).mean()),
            "mean_gain_better": float(delta[delta > 0].mean()) if (delta > 0).any() else 0.0,
            "mean_loss_worse": float(delta[delta < 0].mean()) if (delta < 0).any() else 0.0,
            "hist_counts": hist.tolist(), "hist_edges": edges.tolist()}


def evaluate(model, store: Datastore, ids, token_nbytes: np.ndarray, lmbda: float = 0.25, k: int = 1024,
             temperature: float = 1.0, bins: int = 41) -> dict:
    store.check_model(model)
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) < 2:
        raise LmlabError("need at least two tokens to evaluate")
    base, mixed = token_logprobs(model, store, ids, lmbda, k, temperature)
    report = per_token_report(base, mixed, float(token_nbytes[ids[1:]].sum()), bins)
    return {**report, "lmbda": lmbda, "k": min(k, len(store)), "temperature": temperature, "entries": len(store)}


def entropy(logp: torch.Tensor) -> torch.Tensor:
    """Entropy in nats along the last dim of log-probabilities (0 * log 0 counts as 0)."""
    p = logp.exp()
    return -(p * torch.where(p > 0, logp, torch.zeros_like(logp))).sum(-1)


def knn_step(model, store: Datastore, lmbda: float = 0.25, k: int = 1024, knn_temperature: float = 1.0,
             record: list | None = None):
    """A `step` for `lmlab.infer.generate.decode_steps` that samples from the kNN-LM mixture.

    It returns the mixture's log-probabilities shifted to the model's own logit offset
    (logits + log p - log p_LM), so lambda = 0 gives the model's logits bit for bit and repetition
    penalties act as on the plain model. With `record`, each call appends the last position's
    entropies (nats, tensors [B]) as {"h_lm", "h_knn", "h_mix"}: the critique's exposure-bias view.
    """
    store.check_model(model)

    def step(ids, cache):
        keys, logits = keys_and_logits(model, ids, cache)
        lm = F.log_softmax(logits.float(), dim=-1)
        knn = knn_logprobs(store, keys.reshape(-1, keys.shape[-1]), lm.shape[-1], k, knn_temperature).view_as(lm)
        mix = interpolate(lm, knn, lmbda)
        if record is not None:
            record.append({"h_lm": entropy(lm[:, -1]), "h_knn": entropy(knn[:, -1]), "h_mix": entropy(mix[:, -1])})
        return logits.float() + (mix - lm)

    return step


def generate_ids(model, store: Datastore, prompt_ids: list[int], max_new_tokens: int, lmbda: float = 0.25,
                 k: int = 1024, knn_temperature: float = 1.0, temperature: float = 1.0, seed: int = 0,
                 record: list | None = None, **sampling) -> list[int]:
    """Sample from the kNN-LM mixture (temperature 0: greedy; `sampling`: top_k, top_p,
    repetition_penalty as in plain generation). With `record`, append per generated token
    {"h_lm", "h_knn", "h_mix"} entropies (nats) of the distribution it was drawn from."""
    from .generate import check_prompt, decode_steps

    check_prompt(prompt_ids, model.cfg.context)
    model.eval()
    steps: list = []
    step = knn_step(model, store, lmbda, k, knn_temperature, steps)
    prompt = torch.tensor([prompt_ids], device=next(model.parameters()).device)
    out = [int(t[0]) for t in decode_steps(model, prompt, max_new_tokens, temperature, seed=seed, step=step, **sampling)]
    if record is not None:  # one record per call; the last call (after the last token) has no token
        record += [{name: float(h[0]) for name, h in r.items()} for r in steps[:len(out)]]
    return out
