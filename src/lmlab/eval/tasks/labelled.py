"""Short classification tasks from the shared corpora, asked as a prompt with label words.

    language  "<line of a UDHR translation>\\nlanguage:"  -> " german" | " english" | ...
    author    "<passage of a novel or of Shakespeare>\\nauthor:" -> " shelley" | " twain" | ...
    shuffled  "<English sentence, words maybe shuffled>\\nshuffled:" -> " yes" | " no"

A model answers by the log-likelihood of each label word after the prompt (eval/tasks/score.py,
choice scoring), and fine-tuning (`lmlab finetune`) puts its loss on the label word only. Every
text is cut into train / validation / test regions (60 / 10 / 30 per cent of its bytes) and a
split's passages come only from its region, so no test passage shares a byte with a training one.
Passages are short (`max_bytes`, default 100) so that a prompt fits a small model's context.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from ...data.task_files import Example, TaskInfo
from ...errors import LmlabError
from .sources import boundary, labelled_texts

FRACTIONS = (0.6, 0.1)  # train, validation; the rest is test
SPLITS = ("train", "validation", "test")
LANGUAGES = {"de": "german", "en": "english", "es": "spanish", "fr": "french", "pl": "polish", "tr": "turkish"}


@dataclass(frozen=True)
class LabelTask:
    name: str
    summary: str
    labels: tuple
    texts: Callable  # () -> {label: text}, the text a label's passages are cut from
    transform: Callable | None = None  # (rng, passage) -> (text, label) for tasks whose label is made, not found

    @property
    def prompt(self) -> str:
        return f"\n{self.name}:"


def _language_texts() -> dict:
    texts = labelled_texts("language")
    return {name: texts[code] for code, name in LANGUAGES.items()}


def _english_prose() -> dict:
    from ...data.corpora import read_corpus

    return {"prose": "\n".join(d.text for d in read_corpus("english-prose"))}


def _shuffle_or_keep(rng: random.Random, text: str) -> tuple[str, str]:
    words = text.split()
    if rng.random() < 0.5:
        return " ".join(words), "no"
    shuffled = words[:]
    for _ in range(10):  # a passage of one word, or of one word repeated, cannot be shuffled
        rng.shuffle(shuffled)
        if shuffled != words:
            return " ".join(shuffled), "yes"
    return " ".join(words), "no"


TASKS = {t.name: t for t in (
    LabelTask("language", "which of six Latin-script languages a line of the UDHR is in",
              tuple(LANGUAGES.values()), _language_texts),
    LabelTask("author", "which author (three novels and Shakespeare) a passage is from",
              ("shakespeare", "shelley", "stevenson", "twain"), lambda: labelled_texts("author")),
    LabelTask("shuffled", "whether the words of an English passage have been shuffled",
              ("no", "yes"), _english_prose, _shuffle_or_keep),
)}


def get(name: str) -> LabelTask:
    if name not in TASKS:
        raise LmlabError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]


def regions(texts: dict) -> dict:
    """split -> label -> bytes of that label's region of its text."""
    out: dict = {s: {} for s in SPLITS}
    for label, text in texts.items():
        data = " ".join(text.split()).encode("utf-8")  # one line: newlines would end a prompt early
        a = boundary(data, int(len(data) * FRACTIONS[0]))
        b = boundary(data, int(len(data) * sum(FRACTIONS)))
        for split, part in zip(SPLITS, (data[:a], data[a:b], data[b:])):
            out[split][label] = part
    return out


def _passage(rng: random.Random, data: bytes, max_bytes: int) -> str:
    """About max_bytes/2..max_bytes bytes of `data`, from a word start to a word end."""
    n = rng.randint(max(1, max_bytes // 2), max_bytes)
    start = rng.randint(0, max(0, len(data) - n))
    text = data[boundary(data, start):boundary(data, start + n)].decode("utf-8")
    words = text.split(" ")
    return " ".join(words[1:-1]) if len(words) > 3 else text.strip()


def make(task: LabelTask, sizes: dict, seed: int = 0, max_bytes: int = 100) -> dict[str, list[tuple[str, str]]]:
    """split -> [(text, label)], each split from its own region and seeded stream; no text twice."""
    if max_bytes < 8:
        raise LmlabError(f"{task.name}: passages of at most {max_bytes} bytes are too short (need 8 or more)")
    parts = regions(task.texts())
    seen: set[str] = set()
    out = {}
    for split in ("test", "validation", "train"):  # test first: it depends only on the seed and its size
        rng = random.Random(f"{task.name}:{seed}:{split}")
        rows: list[tuple[str, str]] = []
        tries = 0
        while len(rows) < sizes.get(split, 0):
            tries += 1
            if tries > 100 * sizes[split] + 1000:
                raise LmlabError(f"{task.name}: cannot draw {sizes[split]} distinct {split} passages")
            if task.transform is None:
                label = rng.choice(task.labels)
                text = _passage(rng, parts[split][label], max_bytes)
            else:
                text, label = task.transform(rng, _passage(rng, parts[split]["prose"], max_bytes))
            if text and text not in seen:
                seen.add(text)
                rows.append((text, label))
        out[split] = rows
    return out


def random_labels(rows: list[tuple[str, str]], labels, seed: int) -> list[tuple[str, str]]:
    """The same texts, each with a label drawn uniformly at random (independently of its true one)."""
    rng = random.Random(f"random-labels:{seed}")
    return [(text, rng.choice(tuple(labels))) for text, _ in rows]


def examples(task: LabelTask, rows: list[tuple[str, str]]) -> list[Example]:
    return [Example(text + task.prompt, label, list(task.labels)) for text, label in rows]


def info(name: str, settings: dict) -> TaskInfo:
    """Choice scoring; each example carries its own task's label words (a mixture holds several)."""
    return TaskInfo(name, "choice", [], dict(settings), " ")


def fitting_bytes(tasks, context: int, cap: int = 100) -> int:
    """The longest passage whose prompt and label word fit `context` byte tokens, at most `cap`."""
    need = max(len(t.prompt) + 1 + max(len(label) for label in t.labels) for t in tasks) + 2
    if context - need < 8:
        raise LmlabError(f"model.context={context} leaves no room for a passage (a prompt and label need {need})")
    return min(cap, context - need)


def splits_of(tasks, n_train: int, n_test: int, seed: int, max_bytes: int, randomise: bool = False) -> dict:
    """task name -> split -> [(text, label)]; with `randomise`, the train split's labels are random."""
    sizes = {"train": n_train, "validation": n_test, "test": n_test}
    out = {}
    for k, task in enumerate(tasks):
        rows = make(task, sizes, seed, max_bytes)
        if randomise:
            rows["train"] = random_labels(rows["train"], task.labels, seed + k)
        out[task.name] = rows
    return out


def write_mixture(out, tasks, n_train: int, n_test: int, seed: int, max_bytes: int, randomise: bool = False):
    """A task directory (train/validation/test JSONL) holding every task's examples, shuffled together."""
    from ...data.task_files import write_task

    by_task = splits_of(tasks, n_train, n_test, seed, max_bytes, randomise)
    rng = random.Random(f"mixture:{seed}")
    splits = {}
    for split in SPLITS:
        rows = [ex for t in tasks for ex in examples(t, by_task[t.name][split])]
        rng.shuffle(rows)
        splits[split] = rows
    settings = {"tasks": [t.name for t in tasks], "n_train": n_train, "n_test": n_test, "seed": seed,
                "max_bytes": max_bytes, "random_labels": randomise}
    return write_task(out, splits, info("+".join(t.name for t in tasks), settings))
