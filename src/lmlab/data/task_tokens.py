"""Training on a task directory (`--set data.task=DIR`): the loss falls on the answers only.

A split becomes one token stream, example after example: ids(input), ids(delimiter + target),
end-of-text (the context and continuation encoded apart, as the scorers encode them). Next to
the ids it keeps, per token, whether it is an answer token and where its example begins.
loader.windows turns every other target into -1, which the model's loss ignores, and also
drops the answers of an example that began before the window (their question is cut off);
loader.random_batch starts every training window at the beginning of an example.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import LmlabError
from .corpora import Document, read_corpus
from .task_files import is_task_dir, read_info, read_split


@dataclass
class AnswerTokens:
    ids: np.ndarray       # int64 token ids
    answer: np.ndarray    # bool: the token is part of an answer (a training target)
    start: np.ndarray     # int64: where the token's example begins in the stream
    firsts: np.ndarray    # int64: where each example begins

    def __len__(self) -> int:
        return len(self.ids)

    def __array__(self, dtype=None, copy=None):
        return self.ids if dtype is None else self.ids.astype(dtype)


def _task_dir(cfg) -> Path:
    path = Path(cfg.data.task)
    if not is_task_dir(path):
        raise LmlabError(f"data.task={cfg.data.task!r} is not a task directory (lmlab task make NAME -o DIR)")
    return path


def training_documents(cfg) -> list[Document]:
    """The documents a tokenizer is trained on: the corpus, or a task's training examples."""
    if not cfg.data.task:
        return read_corpus(cfg.data.corpus, cfg.data.text_field, cfg.data.cache_dir)
    path = _task_dir(cfg)
    delimiter = read_info(path).delimiter
    return [Document(f"train.jsonl:{i + 1}", ex.input + delimiter + ex.target)
            for i, ex in enumerate(read_split(path / "train.jsonl"))]


def encode_split(path: Path, tokenizer, delimiter: str) -> AnswerTokens:
    ids, answer, start, firsts = [], [], [], []
    for ex in read_split(path):
        ctx, ans = tokenizer.encode(ex.input), tokenizer.encode(delimiter + ex.target)
        n = len(ctx) + len(ans) + 1
        firsts.append(len(ids))
        start += [len(ids)] * n
        ids += ctx + ans + [tokenizer.eot_id]
        answer += [False] * len(ctx) + [True] * len(ans) + [False]
    return AnswerTokens(np.asarray(ids, dtype=np.int64), np.asarray(answer, dtype=bool),
                        np.asarray(start, dtype=np.int64), np.asarray(firsts, dtype=np.int64))


def task_splits(cfg, tokenizer) -> tuple[AnswerTokens, AnswerTokens]:
    path = _task_dir(cfg)
    delimiter = read_info(path).delimiter
    context = cfg.model.context
    train = encode_split(path / "train.jsonl", tokenizer, delimiter)
    val = encode_split(path / "validation.jsonl", tokenizer, delimiter)
    longest = int(np.diff(np.append(train.firsts, len(train))).max()) if len(train.firsts) else 0
    if longest > context + 1:
        raise LmlabError(f"{path}: training examples run to {longest} tokens (input, answer, end-of-text); "
                         f"model.context must be at least {longest - 1}")
    for name, split in (("train", train), ("validation", val)):
        if len(split) < context + 1 and (name == "train" or cfg.train.eval_every):
            raise LmlabError(f"{path}: the {name} split has {len(split)} tokens; a window needs context+1 = "
                             f"{context + 1} (generate more examples)")
    return train, val
