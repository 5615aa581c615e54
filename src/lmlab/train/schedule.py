"""Learning-rate schedule: linear warmup, then cosine decay to min_lr at max_steps."""
import math


def lr_at(step: int, lr: float, min_lr: float, warmup: int, max_steps: int) -> float:
    """Learning rate for optimizer step `step` (0-based)."""
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    if max_steps <= warmup:
        return lr
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))
