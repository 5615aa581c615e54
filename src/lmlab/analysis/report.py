"""Each analysis written to a directory as JSON plus PNGs (what `lmlab analyze` runs)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import LmlabError
from . import figures
from .heads import Heads, attention_sublayers
from .hooks import run_with_cache
from .lens import logit_lens, trajectory
from .names import resolve
from .sinks import attention_stats, massive_activations, redistribution, sink_reading


def pattern_names(layers=None) -> list[str]:
    return [f"blocks.{i}.attn.pattern" for i in layers] if layers else ["blocks.*.attn*.pattern"]


def validate(model, what: str, layers=None, names=None) -> None:
    """LmlabError before anything is written: no attention where one is needed, bad names."""
    if what in ("heads", "sinks", "patterns") and not attention_sublayers(model):
        raise LmlabError(f"--what {what} needs attention, and the model's pattern {model.cfg.pattern!r} has no 'A'")
    if what == "patterns":
        resolve(model, pattern_names(layers))
    if what == "cache":
        resolve(model, names)


def _write(out: Path, name: str, obj) -> str:
    path = out / name
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return str(path)


def _ranked(scores: torch.Tensor, labels, n: int = 10) -> list[dict]:
    flat = scores.flatten()
    top = flat.topk(min(n, int((flat > 0).sum()))).indices
    N = scores.shape[1]
    return [{"writer": labels[int(i) // N], "reader": labels[int(i) % N], "score": float(flat[i])} for i in top]


def heads_report(model, out: Path) -> dict:
    heads = Heads(model)
    files, result = [], {"heads": heads.labels, "convention": "row vectors; norms folded (docs/analysis.md)"}
    spectra = heads.spectra()
    result["spectra"] = {k: v.tolist() for k, v in spectra.items()}
    for k, v in spectra.items():
        files.append(figures.spectra(v.tolist(), heads.labels, out / f"spectra_{k}.png", f"{k} singular values per head"))
    result["composition"], result["strongest"], result["by_component"] = {}, {}, {}
    for mode in "QKV":
        scores = heads.composition(mode)
        result["composition"][mode] = scores.tolist()
        result["strongest"][mode] = _ranked(scores, heads.labels)
        per, _ = heads.composition_by_component(mode)
        best, comp = per.max(1)                                     # the writer's best component per pair
        result["by_component"][mode] = {"best_score": best.tolist(), "best_component": comp.tolist()}
        files.append(figures.heatmap(scores.numpy(), heads.labels, out / f"composition_{mode}.png",
                                     f"{mode}-composition: row writes, column reads"))
    return {"json": _write(out, "heads.json", result), "png": files,
            "strongest": {m: v[:3] for m, v in result["strongest"].items()}}


def lens_report(model, ids, token_nbytes, out: Path) -> dict:
    lens = logit_lens(model, ids, token_nbytes)
    png = figures.lens_curves(lens, out / "lens.png")
    return {"json": _write(out, "lens.json", lens), "png": [png],
            "bpb": lens["bpb"], "kl_to_last_bits": lens["kl_to_last_bits"], "top1_agreement": lens["top1_agreement"]}


def trajectory_report(model, ids, token_text, out: Path) -> dict:
    traj = trajectory(model, ids, token_text)
    png = figures.trajectory_path(traj, out / "trajectory.png")
    return {"json": _write(out, "trajectory.json", traj), "png": [png],
            "cos_to_input_token": traj["cos_to_input_token"], "pca_variance_share": traj["pca_variance_share"]}


def sinks_report(model, ids, token_nbytes, token_text, out: Path, threshold: float = 0.5) -> dict:
    stats = attention_stats(model, ids)
    massive = massive_activations(model, ids, token_text=token_text)
    reading = sink_reading(model, ids, massive)
    for h in stats["heads"]:
        h["key_share_from_massive_dims"] = reading[h["head"]]
    redis = redistribution(model, ids, token_nbytes, stats, threshold)
    result = {"attention": stats, "massive_activations": massive, "redistribution": redis}
    png = figures.sink_shares(stats, out / "sinks.png")
    return {"json": _write(out, "sinks.json", result), "png": [png], "redistribution": redis,
            "massive_dims": {s["name"]: [d["dim"] for d in s["dims"]] for s in massive["states"]}}


def patterns_report(model, ids, token_text, out: Path, layers=None) -> dict:
    """Attention patterns of one sequence, a PNG per attention sublayer (or the layers asked)."""
    _, cache = run_with_cache(model, ids, pattern_names(layers))
    tokens = [token_text(int(i)) for i in ids]
    files = [figures.patterns(p[0].numpy(), tokens, out / f"{n.replace('.', '_')}.png", n) for n, p in cache.items()]
    data = {"tokens": tokens, "patterns": {n: p[0].tolist() for n, p in cache.items()}}
    return {"json": _write(out, "patterns.json", data), "png": files}


def cache_report(model, ids, names, out: Path) -> dict:
    """The named activations of one sequence as safetensors, with their shapes in JSON."""
    from safetensors.torch import save_file

    _, cache = run_with_cache(model, ids, names)
    path = out / "cache.safetensors"
    save_file({n: t.contiguous().cpu() for n, t in cache.items()}, path)
    shapes = {n: list(t.shape) for n, t in cache.items()}
    return {"json": _write(out, "cache.json", {"shapes": shapes}), "safetensors": str(path), "names": len(shapes)}
