"""Branch-Train-Merge (Li et al. 2022): a seed model, one expert per domain branched from it and
trained on that domain alone, then either an ensemble (eval/ensemble.py) or one merged model.

A BTM directory:
    BTM/btm.json          {"seed": "seed", "experts": {NAME: {"corpus": ..., "dir": "experts/NAME"}}}
    BTM/seed/             an ordinary run (the seed, trained on all domains)
    BTM/experts/NAME/     ordinary runs, each starting from the seed's weights at step 0
A merged model is an ordinary run too (`lmlab generate`, `lmlab eval` read it).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from .. import checkpoint
from .. import config as config_mod
from ..errors import LmlabError

INDEX = "btm.json"


def read_index(btm: Path) -> dict:
    path = Path(btm) / INDEX
    if not path.is_file():
        raise LmlabError(f"{btm} is not a BTM directory (no {INDEX}; start one with `lmlab btm seed`)")
    return json.loads(path.read_text())


def _write_index(btm: Path, index: dict) -> None:
    tmp = Path(btm) / f".{INDEX}.tmp"
    tmp.write_text(json.dumps(index, indent=1))
    tmp.replace(Path(btm) / INDEX)


def seed(cfg, btm, echo=print) -> dict:
    """Train the seed run in BTM/seed (or continue it) and start the index."""
    from .loop import train

    btm = Path(btm)
    index = read_index(btm) if (btm / INDEX).is_file() else {"seed": "seed", "experts": {}}
    run = btm / index["seed"]
    btm.mkdir(parents=True, exist_ok=True)
    _write_index(btm, index)
    resume = (run / checkpoint.CKPT_DIR / checkpoint.LATEST).is_file()
    return train(cfg, run, resume=resume, echo=echo)


def branch(btm, domains: dict[str, str], overrides: list[str] | None = None) -> list[Path]:
    """One expert per domain NAME -> corpus: the seed's latest weights (no optimizer state) as its
    step-0 checkpoint, its config the seed's with data.corpus = the domain (plus overrides)."""
    btm = Path(btm)
    index = read_index(btm)
    seed_run = btm / index["seed"]
    model, tokenizer, seed_cfg = checkpoint.load_model(seed_run)
    made = []
    for name, corpus in domains.items():
        if not name or "/" in name or name.startswith("."):
            raise LmlabError(f"expert name {name!r} must be a plain directory name")
        if name in index["experts"]:
            raise LmlabError(f"expert {name!r} exists already in {btm}")
        cfg = config_mod.apply_overrides(copy.deepcopy(seed_cfg), [f"data.corpus={corpus}", *(overrides or [])])
        run = btm / "experts" / name
        run.mkdir(parents=True)
        config_mod.save(cfg, run / "config.toml")
        checkpoint.save(run, 0, model, None, tokenizer, cfg,
                        {"tokens_seen": 0, "branched_from": str(checkpoint.resolve(seed_run))})
        index["experts"][name] = {"corpus": corpus, "dir": f"experts/{name}"}
        made.append(run)
    _write_index(btm, index)
    return made


def expert_dirs(btm, only: list[str] | None = None) -> dict[str, Path]:
    index = read_index(btm)
    names = only or list(index["experts"])
    missing = [n for n in names if n not in index["experts"]]
    if missing or not names:
        raise LmlabError(f"no expert {missing[0] if missing else '(none branched yet)'} in {btm}; "
                         f"experts: {', '.join(index['experts']) or 'none'}")
    return {n: Path(btm) / index["experts"][n]["dir"] for n in names}


def train_experts(btm, only: list[str] | None = None, overrides: list[str] | None = None, echo=print) -> dict:
    """Train each expert on its own domain, continuing from its latest checkpoint."""
    from .loop import train

    results = {}
    for name, run in expert_dirs(btm, only).items():
        cfg = config_mod.load(str(run / "config.toml"), overrides)
        results[name] = train(cfg, run, resume=True, echo=echo)
    return results


def load_experts(btm, only: list[str] | None = None):
    """(names, models, tokenizer, configs): the experts must share the seed's tokenizer."""
    from ..data.shards import tokenizer_fingerprint

    names, models, cfgs, tokenizer, prints = [], [], [], None, set()
    for name, run in expert_dirs(btm, only).items():
        model, tok, cfg = checkpoint.load_model(run)
        names.append(name), models.append(model), cfgs.append(cfg)
        tokenizer = tokenizer or tok
        prints.add(tokenizer_fingerprint(tok))
    if len(prints) > 1:
        raise LmlabError(f"the experts of {btm} do not share one tokenizer")
    return names, models, tokenizer, cfgs


@torch.no_grad()
def average_states(states: list[dict], weights: list[float]) -> dict:
    """sum_j w_j * state_j, written as state_0 + sum_j w_j (state_j - state_0) so that averaging
    copies of one model returns it exactly. Non-float tensors must agree and are kept."""
    if not states or len(states) != len(weights):
        raise LmlabError("averaging needs one weight per model")
    total = float(sum(weights))
    if total <= 0 or any(w < 0 for w in weights):
        raise LmlabError(f"merge weights must be non-negative with a positive sum, got {weights}")
    weights = [w / total for w in weights]
    base = states[0]
    if any(s.keys() != base.keys() for s in states):
        raise LmlabError("the experts' parameters differ in names; they must share one architecture")
    out = {}
    for k, v in base.items():
        if not v.is_floating_point():
            if any(not torch.equal(s[k], v) for s in states):
                raise LmlabError(f"{k} differs between experts and cannot be averaged")
            out[k] = v.clone()
            continue
        acc = torch.zeros_like(v, dtype=torch.float64)
        for w, s in zip(weights, states):
            acc += w * (s[k].double() - v.double())
        out[k] = (v.double() + acc).to(v.dtype)
    return out


def merge(btm, out, weights: list[float] | None = None, only: list[str] | None = None) -> dict:
    """Average the experts' weights (uniform, or the given weights) into an ordinary run at OUT."""
    out = Path(out)
    if (out / checkpoint.CKPT_DIR).exists():
        raise LmlabError(f"{out} already holds checkpoints; choose another -o")
    names, models, tokenizer, cfgs = load_experts(btm, only)
    weights = weights if weights is not None else [1.0] * len(models)
    if len(weights) != len(models):
        raise LmlabError(f"{len(weights)} merge weights for {len(models)} experts")
    merged = models[0]
    merged.load_state_dict(average_states([m.state_dict() for m in models], weights))
    cfg = config_mod.load(str(Path(btm) / read_index(btm)["seed"] / "config.toml"))  # the seed's: all domains
    out.mkdir(parents=True, exist_ok=True)
    config_mod.save(cfg, out / "config.toml")
    total = float(sum(weights))
    mix = {n: w / total for n, w in zip(names, weights)}
    ckpt = checkpoint.save(out, 0, merged, None, tokenizer, cfg, {"tokens_seen": 0, "merged_from": mix})
    return {"checkpoint": str(ckpt), "weights": mix}
