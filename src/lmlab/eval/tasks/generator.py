"""What a task generator is, and the one loop that turns one into three splits.

A generator draws one example at a time from a `random.Random`. Each split has its own stream,
seeded by (task, seed, split), and the test split is drawn first, then validation, then train,
each skipping inputs already drawn: the test set depends only on the seed and n_test, and no
test input is ever a training input.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from ...data.task_files import DELIMITER, Example, TaskInfo
from ...errors import LmlabError
from .spec import Spec

DRAW_ORDER = ("test", "validation", "train")
MAX_REPEATS = 1000  # consecutive repeated inputs before the settings are judged too small


def _no_check(settings: dict) -> None:
    return None


def _no_state(settings: dict):
    return settings


@dataclass(frozen=True)
class Generator:
    name: str
    summary: str
    spec: Spec
    draw: Callable  # (rng, state, split) -> Example
    scoring: str = "exact"                       # exact | choice
    choices: Callable | None = None              # settings -> the candidate answers (choice scoring)
    length_of: Callable | None = None            # input -> its length, for per-length accuracy
    check: Callable = _no_check                  # cross-setting checks, before anything is drawn
    prepare: Callable = _no_state                # settings -> the state draw() reads (e.g. corpora)
    delimiter: str = DELIMITER                   # between input and target

    def settings(self, overrides: list[str]) -> dict:
        settings = self.spec.resolve(overrides, self.name)
        self.check(settings)
        return settings

    def info(self, settings: dict) -> TaskInfo:
        choices = list(self.choices(settings)) if self.choices else []
        return TaskInfo(self.name, self.scoring, choices, dict(settings), self.delimiter)

    def make(self, settings: dict) -> dict[str, list[Example]]:
        state = self.prepare(settings)
        seen: set[str] = set()
        splits = {}
        for split in DRAW_ORDER:
            rng = random.Random(f"{self.name}:{settings['seed']}:{split}")
            out: list[Example] = []
            repeats = 0
            while len(out) < settings[f"n_{split}"]:
                ex = self.draw(rng, state, split)
                if ex.input in seen:
                    repeats += 1
                    if repeats > MAX_REPEATS:
                        raise LmlabError(f"{self.name}: only {len(seen)} distinct inputs found for these settings; "
                                         f"ask for fewer examples or a larger vocab/length")
                    continue
                repeats = 0
                seen.add(ex.input)
                out.append(ex)
            splits[split] = out
        return splits
