"""Training on a task directory: targets only on answer positions, windows at example starts."""
import json
import random

import numpy as np
import pytest

from lmlab import config
from lmlab.cli import main
from lmlab.data import loader
from lmlab.data.task_tokens import encode_split, task_splits
from lmlab.errors import LmlabError
from lmlab.tokenizers.byte import ByteTokenizer


def first_letter_task(path, n_train=2000):
    """input: three letters and ' ?'; target: the first letter (learnable in seconds)."""
    path.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("validation", 100), ("test", 100)):
        rng = random.Random(split)
        lines = []
        for _ in range(n):
            s = "".join(rng.choice("abcd") for _ in range(3))
            lines.append(json.dumps({"input": s + " ?", "target": s[0]}) + "\n")
        (path / f"{split}.jsonl").write_text("".join(lines))
    return path


def test_targets_are_the_answers_of_examples_begun_in_the_window(tmp_path):
    task = first_letter_task(tmp_path / "t", 50)
    tok = ByteTokenizer()
    data = encode_split(task / "train.jsonl", tok, " ")
    assert len(data) == 50 * 8 and data.answer.sum() == 50 * 2  # "abc ?" + " a" + end-of-text
    x, y = loader.random_batch(data, 16, 20, seed=0, step=3)
    for row in range(16):
        kept = [(i, int(t)) for i, t in enumerate(y[row]) if t >= 0]
        assert kept and int(x[row, 0]) in b"abcd" and x[row, 0] != ord(" ")  # starts at an example
        for i, t in kept:  # every target is an answer token: the space or the letter after "?"
            text = tok.decode(x[row, :i + 1].tolist())
            assert text.endswith("?") and t == ord(" ") or text.endswith("? ") and chr(t) == text[-6]
    # evaluation windows start anywhere: the answer of an example begun before the window is dropped
    # (examples are 8 tokens: input at 0-4, answer at 5-6, end-of-text at 7)
    _, y = loader.windows(data, np.array([3, 9]), 20)
    assert set(np.flatnonzero(y[0] >= 0)) == {9, 10, 17, 18}  # tokens 13, 14, 21, 22
    assert set(np.flatnonzero(y[1] >= 0)) == {11, 12, 19}     # tokens 21, 22, 29


def test_training_on_a_task_learns_its_answers(capsys, tmp_path):
    task = first_letter_task(tmp_path / "first")
    assert main(["train", "-c", "tiny", "-o", str(tmp_path / "run"), "--set", f"data.task={task}",
                 "--set", "train.max_steps=150", "--set", "train.eval_every=50"]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--task", str(task)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] >= 0.95  # chance is 1/4 for a model that learned only the format
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["val_loss"] < 0.2  # over answer tokens only: the prompts' letters are random


def test_task_data_errors(tmp_path):
    cfg = config.load("tiny", [f"data.task={tmp_path / 'none'}"])
    with pytest.raises(LmlabError, match="is not a task directory"):
        task_splits(cfg, ByteTokenizer())
    task = first_letter_task(tmp_path / "t", 50)
    cfg = config.load("tiny", [f"data.task={task}", "model.context=6"])
    with pytest.raises(LmlabError, match="examples run to 8 tokens .*model.context must be at least 7"):
        task_splits(cfg, ByteTokenizer())
