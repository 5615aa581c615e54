"""Attention sinks (Xiao et al. 2023) and massive activations (Sun et al. 2024).

- attention_stats: per head, the share of attention that queries at positions >= 1 give to
  position 0 (the sink), and the key positions that receive the most attention.
- massive_activations: per residual state, the dimensions whose largest magnitude exceeds
  `ratio` (100) times the median magnitude of that state, and the tokens that carry them.
- sink_reading: for each head, the share of position 0's key (the head's W_K applied to the
  normed input there) that comes from those dimensions: do sink heads key on them?
- redistribution: bits per byte with the sink heads' attention to position 0 spread over the other
  visible tokens (renormalised), against a control that only removes the sink token's value
  contribution (attention to position 0 set to zero, not renormalised), and the unchanged model.
All over the windows of a text (analysis/windows.py); position 0 is each window's first token.
"""
from __future__ import annotations

import torch

from ..eval.perplexity import evaluate_ids
from .heads import attention_sublayers, projection_weights
from .hooks import as_ids, hooked, run_with_cache
from .lens import stream_names
from .windows import windows


def _heads(model):
    """[(name prefix 'blocks.i.attn', label, layer, key, module)] of every attention sublayer."""
    return [(f"blocks.{i}.{key}", f"L{i}" if key == "attn" else f"L{i}.{key}", i, key, m)
            for i, key, m in attention_sublayers(model)]


def _text_windows(model, ids, max_windows: int | None):
    out = list(windows(ids, model.cfg.context))
    return out[:max_windows] if max_windows else out


@torch.no_grad()
def attention_stats(model, ids, top: int = 3, max_windows: int | None = 8) -> dict:
    """Per head: sink_share (mean attention of queries >= 1 to position 0), the `top` key positions
    by mean attention received (over the queries that see them, positions >= 1 only) and
    top_share, the mean attention each query gives to its own `top` most-attended keys."""
    model.eval()
    layers = _heads(model)
    C = model.cfg.context
    sink = {p: 0.0 for p, *_ in layers}
    topshare = {p: 0.0 for p, *_ in layers}
    received = {p: torch.zeros(m.n_heads, C) for p, *_, m in layers}     # summed per key position
    count = torch.zeros(C)
    n_windows = 0
    for x, _ in _text_windows(model, ids, max_windows):
        T = len(x)
        if T < 2:
            continue
        _, cache = run_with_cache(model, as_ids(model, x), [f"{p}.pattern" for p, *_ in layers])
        visible = torch.arange(T, 0, -1, dtype=torch.float32)              # queries that see key k
        for p, *_ in layers:
            pat = cache[f"{p}.pattern"][0].float().cpu()                    # [H, T, T]
            sink[p] = sink[p] + pat[:, 1:, 0].mean(1)
            topshare[p] = topshare[p] + pat[:, 1:].topk(min(top, T), -1).values.sum(-1).mean(1)
            received[p][:, :T] += pat.sum(1) / visible
        count[:T] += 1
        n_windows += 1
    if n_windows == 0:
        raise ValueError("the text is too short for attention statistics")
    seen = count > 0
    heads = []
    for p, label, layer, key, m in layers:
        share = (sink[p] / n_windows).tolist()
        tshare = (topshare[p] / n_windows).tolist()
        recv = received[p][:, seen] / count[seen]
        for h in range(m.n_heads):
            r = recv[h].clone()
            r[0] = -1  # rank the other positions; position 0 has its own number
            pos = r.topk(min(top, len(r) - 1)).indices.tolist() if len(r) > 1 else []
            heads.append({"head": f"{label}H{h}", "layer": layer, "sublayer": key, "index": h,
                          "sink_share": share[h], "top_share": tshare[h],
                          "top_positions": pos, "top_received": [float(recv[h][i]) for i in pos]})
    return {"heads": heads, "windows": n_windows, "top": top}


@torch.no_grad()
def massive_activations(model, ids, ratio: float = 100.0, max_windows: int | None = 8, token_text=str) -> dict:
    """Per residual state (blocks.i.resid_pre, and the last block's resid_post): dimensions with
    max |x| > ratio * median |x|, their largest value and the tokens (position, text) carrying them."""
    model.eval()
    names = stream_names(model)
    found = {n: {} for n in names}
    for x, _ in _text_windows(model, ids, max_windows):
        _, cache = run_with_cache(model, as_ids(model, x), names)
        for n in names:
            a = cache[n][0].float().abs().cpu()                            # [T, width]
            median = float(a.median())
            bar = ratio * median
            for dim in (a.max(0).values > bar).nonzero().flatten().tolist():
                rows = (a[:, dim] > bar).nonzero().flatten().tolist()
                entry = found[n].setdefault(dim, {"dim": dim, "max_abs": 0.0, "ratio_to_median": 0.0, "carriers": []})
                entry["max_abs"] = max(entry["max_abs"], float(a[:, dim].max()))
                entry["ratio_to_median"] = max(entry["ratio_to_median"], float(a[:, dim].max()) / max(median, 1e-30))
                for t in rows[:8]:
                    if len(entry["carriers"]) < 16:
                        entry["carriers"].append({"position": t, "token": token_text(int(x[t]))})
    return {"ratio": ratio, "states": [{"name": n, "dims": sorted(found[n].values(), key=lambda e: -e["max_abs"])}
                                       for n in names]}


@torch.no_grad()
def sink_reading(model, ids, massive: dict) -> dict:
    """Per head: the share of position 0's key norm that comes from the massive dimensions of the
    stream the head reads (|| x0[M] W_K[M] || / || x0 W_K ||, x0 the normed input at position 0)."""
    x = next(iter(_text_windows(model, ids, 1)))[0]
    layers = _heads(model)
    _, cache = run_with_cache(model, as_ids(model, x), [f"{p}.in" for p, *_ in layers])
    by_state = {s["name"]: [d["dim"] for d in s["dims"]] for s in massive["states"]}
    out = {}
    for p, label, layer, key, m in layers:
        dims = by_state.get(f"blocks.{layer}.resid_pre", [])
        x0 = cache[f"{p}.in"][0, 0].float()
        wk = projection_weights(m)[1][0]
        W = wk.detach().float().view(m.n_kv_heads, m.head_dim, -1)        # [kv, dh, d]
        rep = m.n_heads // m.n_kv_heads
        for h in range(m.n_heads):
            whole = (W[h // rep] @ x0).norm()
            part = (W[h // rep][:, dims] @ x0[dims]).norm() if dims else torch.tensor(0.0)
            out[f"{label}H{h}"] = float(part / whole) if whole > 0 else 0.0
    return out


def _pattern_edit(heads_by_layer: dict, renormalise: bool):
    """A pattern hook taking position 0's attention away from the chosen heads (queries >= 1)."""
    def edit(pattern, name):
        heads = heads_by_layer.get(name[:-len(".pattern")])
        if not heads:
            return None
        pattern = pattern.clone()
        sel = pattern[:, heads, 1:]                                        # [B, h, T-1, keys]
        to_sink = sel[..., :1]
        sel = torch.cat([torch.zeros_like(to_sink), sel[..., 1:]], -1)
        if renormalise:
            sel = sel / (1 - to_sink).clamp_min(1e-12)
        pattern[:, heads, 1:] = sel
        return pattern
    return edit


def redistribution(model, ids, token_nbytes, stats: dict, threshold: float = 0.5) -> dict:
    """bpb of the text unchanged, with the sink heads' attention to position 0 spread over the
    other visible tokens, and with only the sink token's value contribution removed."""
    sink_heads = [h for h in stats["heads"] if h["sink_share"] >= threshold]
    result = {"threshold": threshold, "sink_heads": [h["head"] for h in sink_heads]}
    base = evaluate_ids(model, ids, token_nbytes)
    result["bpb_before"] = base["bpb"]
    if not sink_heads:
        result["skipped"] = f"no head gives position 0 at least {threshold:.0%} of its attention"
        return result
    by_layer: dict = {}
    for h in sink_heads:
        by_layer.setdefault(f"blocks.{h['layer']}.{h['sublayer']}", []).append(h["index"])
    names = [f"{p}.pattern" for p in by_layer]
    for label, renorm in (("bpb_redistributed", True), ("bpb_sink_value_removed", False)):
        with hooked(model, [(n, _pattern_edit(by_layer, renorm)) for n in names]):
            result[label] = evaluate_ids(model, ids, token_nbytes)["bpb"]
    result["tokens"] = base["tokens"]
    result["delta_redistributed"] = result["bpb_redistributed"] - base["bpb"]
    result["delta_sink_value_removed"] = result["bpb_sink_value_removed"] - base["bpb"]
    return result
