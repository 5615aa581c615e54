"""Fine-tune a run on a task directory: a new run that starts from another run's weights.

No second training loop: the source weights are written as the new run's step-0 checkpoint
(no optimizer state) under a config whose data.task is the task directory, and train() resumes
from it; the loss falls on the answers only (data/task_tokens.py). The new run is a normal run
that every verb reads; 0 steps leaves the source weights unchanged. No validation loss is
logged during training (`lmlab eval OUT --task OUT/task` scores the held-out split instead).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from .. import checkpoint
from .. import config as config_mod
from ..errors import LmlabError


def finetune(source, out, task_dir, steps: int, lr: float = 1e-3, batch_size: int = 16, seed: int = 0,
             device: str = "cpu", echo=print, note: dict | None = None) -> dict:
    """Train `source`'s weights `steps` steps on the task in `task_dir` into the new run `out`."""
    from .loop import train

    out = Path(out)
    if (out / checkpoint.CKPT_DIR).exists() or (out / "config.toml").exists():
        raise LmlabError(f"{out} already holds a run; choose a new directory")
    model, tokenizer, cfg = checkpoint.load_model(source)
    cfg.data = dataclasses.replace(cfg.data, task=str(Path(task_dir).resolve()))
    cfg.train = dataclasses.replace(
        cfg.train, max_steps=steps, lr=lr, min_lr=lr / 10, warmup_steps=min(cfg.train.warmup_steps, steps // 10),
        batch_size=batch_size, grad_accum=1, seed=seed, eval_every=0, ckpt_every=steps, max_minutes=0, progress=False, device=device)
    checkpoint.save(out, 0, model, None, tokenizer, cfg,
                    {"tokens_seen": 0, "elapsed_s": 0.0, "finetune": {"source": str(source), **(note or {})}})
    return train(cfg, out, resume=True, progress=False, echo=echo)
