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


def validate(model, what: str, layers=None, names=None, rank_top: int = 3) -> None:
    """LmlabError before anything is written: no attention where one is needed, bad names."""
    if what in ("heads", "sinks", "patterns", "laundry") and not attention_sublayers(model):
        raise LmlabError(f"--what {what} needs attention, and the model's pattern {model.cfg.pattern!r} has no 'A'")
    if what == "laundry" and len(attention_sublayers(model)) < 2:
        raise LmlabError("--what laundry needs attention in at least two sublayers (an inhibition head and a mover)")
    if what == "keys":
        from .keys import check_top

        check_top(model.head_weight().shape[0], rank_top)
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


def lens_report(model, ids, token_nbytes, out: Path, tuned_steps: int = 0) -> dict:
    """The logit lens over `ids`; with tuned_steps, the tuned lens trained on the first half of
    `ids` and both lenses measured on the second half (`tuned`, with `trained_on_tokens`)."""
    if tuned_steps:
        from .tuned_lens import train_tuned_lens

        half = len(ids) // 2
        translators = train_tuned_lens(model, ids[:half], tuned_steps)
        ids = ids[half:]
    lens = logit_lens(model, ids, token_nbytes)
    if tuned_steps:
        lens["tuned"] = logit_lens(model, ids, token_nbytes, translate=translators)
        lens["tuned"].update(trained_on_tokens=half, steps=tuned_steps)
    png = figures.lens_curves(lens, out / "lens.png")
    return {"json": _write(out, "lens.json", lens), "png": [png],
            "bpb": lens["bpb"], "kl_to_last_bits": lens["kl_to_last_bits"], "top1_agreement": lens["top1_agreement"],
            **({"tuned_kl_to_last_bits": lens["tuned"]["kl_to_last_bits"]} if tuned_steps else {})}


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


def keys_report(model, tokenizer, ids, out: Path, top: int = 3, icn_answers: int = 4, icn_prompts: int = 8,
                icn_prompt_tokens: int = 32, prompt: str | None = None) -> dict:
    """The vocabulary key space over a text, and the ICN query shift on prompts cut from it (or `prompt`)."""
    from .keys import icn_shift, key_space, text_prompts

    keys = key_space(model, ids, top)
    result = {"key_space": keys}
    if icn_answers:
        prompts = [prompt] if prompt else text_prompts(tokenizer, ids, icn_prompts, icn_prompt_tokens)
        result["icn"] = icn_shift(model, tokenizer, prompts, icn_answers)
    png = figures.key_cosines(keys, out / "keys.png")
    return {"json": _write(out, "keys.json", result), "png": [png],
            "middle_cos": keys["middle_cos"], "middle_cos_shuffled": keys["middle_cos_shuffled"],
            "correct_rank_share": keys["correct_rank_share"],
            "icn": {k: v for k, v in result.get("icn", {}).items() if k.startswith(("mean_rel", "share"))}}


def load_laundry(task: str):
    """(info, validation, test) of a Laundry List task directory, or of the generator's defaults
    for task 'laundry' (made in memory)."""
    from ..eval import tasks
    from ..eval.tasks.score import load

    if task == "laundry":
        gen = tasks.get("laundry")
        settings = gen.settings(["n_train=0"])
        splits = gen.make(settings)
        return gen.info(settings), splits["validation"], splits["test"]
    info, test = load(task, "test")
    if info.name != "laundry":
        raise LmlabError(f"--task {task}: a laundry task is needed (lmlab task make laundry), this one is {info.name!r}")
    _, validation = load(task, "validation")
    if not validation:
        raise LmlabError(f"--task {task}: the validation split is empty (the scale is chosen on it)")
    return info, validation, test


def laundry_report(model, tokenizer, task, out: Path, scales, controls: int = 4, seed: int = 0) -> dict:
    """The Laundry List accuracy by list length, the mover and inhibition heads, the intervention.
    `task`: what load_laundry returned."""
    from .laundry import intervention

    info, validation, test = task
    result = intervention(model, tokenizer, info, validation, test, scales, controls, seed)
    png = figures.laundry_sweep(result, out / "laundry.png")
    return {"json": _write(out, "laundry.json", result), "png": [png], "mover": result["mover"],
            "writer": result["writer"], "channel_share": result["channel"]["share"],
            "accuracy": result["test"]["accuracy"], "chosen_scale": result["chosen_scale"],
            "gain": result["gain"], "control_gain": result["control_gain"]}
