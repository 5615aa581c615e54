"""`lmlab finetune` and its label tasks: seeded random labels that ignore the true ones, a 0-step
fine-tune that returns the weights, a fine-tune that moves them and writes a run eval reads."""
import json
from collections import Counter

import pytest
import torch

from lmlab import checkpoint, config
from lmlab.cli import main
from lmlab.errors import LmlabError
from lmlab.eval.tasks import labelled
from lmlab.train.loop import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("finetune") / "base"
    cfg = config.load("tiny", ["train.max_steps=2", "train.eval_every=0", "train.ckpt_every=2", "tokenizer.kind=byte",
                               "model.context=128"])
    train(cfg, out, progress=False, echo=lambda *a: None)
    return out


def test_random_labels_are_seeded_and_independent_of_the_true_ones():
    labels = ("a", "b", "c", "d")
    rows = [(f"text {i}", labels[i % 4]) for i in range(4000)]
    first = labelled.random_labels(rows, labels, seed=3)
    assert first == labelled.random_labels(rows, labels, seed=3)
    assert first != labelled.random_labels(rows, labels, seed=4)
    assert [t for t, _ in first] == [t for t, _ in rows]
    # every (true, random) pair about equally often: 250 expected per cell, a chi-square test at 16 cells
    cells = Counter((t, r) for (_, t), (_, r) in zip(rows, first))
    chi2 = sum((cells[(t, r)] - 250) ** 2 / 250 for t in labels for r in labels)
    assert chi2 < 37.7  # the 0.001 quantile of chi-square with 9 degrees of freedom
    agree = sum(t == r for (_, t), (_, r) in zip(rows, first)) / len(rows)
    assert abs(agree - 0.25) < 0.03


def test_label_tasks_fit_the_context_and_keep_splits_apart():
    for name, task in labelled.TASKS.items():
        mb = labelled.fitting_bytes([task], 128)
        rows = labelled.make(task, {"train": 40, "validation": 10, "test": 20}, 0, mb)
        texts = [t for split in rows.values() for t, _ in split]
        assert len(set(texts)) == len(texts) == 70
        assert all(len(t.encode()) <= mb for t in texts)
        assert all(label in task.labels for split in rows.values() for _, label in split)
        assert rows == labelled.make(task, {"train": 40, "validation": 10, "test": 20}, 0, mb)
    shuffled = labelled.make(labelled.get("shuffled"), {"test": 200}, 0, 100)["test"]
    assert 60 < sum(label == "yes" for _, label in shuffled) < 140


def test_unknown_task_names_the_known_ones():
    with pytest.raises(LmlabError, match="known tasks: language, author, shuffled"):
        labelled.get("sentiment")


def test_finetune_zero_steps_returns_the_weights(run, tmp_path):
    out = tmp_path / "ft0"
    assert main(["finetune", str(run), "--task", "shuffled", "--steps", "0", "--n-train", "30", "--n-test", "10",
                 "-o", str(out)]) == 0
    a, b = checkpoint.load_model(run)[0].state_dict(), checkpoint.load_model(out)[0].state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_finetune_trains_on_the_task_and_writes_a_normal_run(run, tmp_path, capsys):
    out = tmp_path / "ft"
    assert main(["finetune", str(run), "--task", "language,shuffled", "--random-labels", "--steps", "3",
                 "--n-train", "30", "--n-test", "10", "-o", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["step"] == 3 and summary["random_labels"] is True
    a, b = checkpoint.load_model(run)[0].state_dict(), checkpoint.load_model(out)[0].state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)
    info = json.loads((out / "task" / "task.json").read_text())
    assert info["sizes"] == {"train": 60, "validation": 20, "test": 20} and info["settings"]["random_labels"]
    state = checkpoint.read_state(checkpoint.resolve(out))
    assert state["step"] == 3 and state["config"]["data"]["task"] == str((out / "task").resolve())
    assert main(["eval", str(out), "--task", str(out / "task")]) == 0
    assert main(["probe", str(out), "--task", "shuffled", "--per-class", "10"]) == 0


def test_written_task_holds_the_random_labels_splits_of_draws(tmp_path):
    from lmlab.data.task_files import read_split

    tasks = [labelled.get("author"), labelled.get("shuffled")]
    labelled.write_mixture(tmp_path / "t", tasks, 20, 5, 7, 60, randomise=True)
    written = {(ex.input, ex.target) for ex in read_split(tmp_path / "t" / "train.jsonl")}
    drawn = labelled.splits_of(tasks, 20, 5, 7, 60, randomise=True)
    assert written == {(t + task.prompt, lab) for task in tasks for t, lab in drawn[task.name]["train"]}
    true = labelled.splits_of(tasks, 20, 5, 7, 60)
    test = {(ex.input, ex.target) for ex in read_split(tmp_path / "t" / "test.jsonl")}
    assert test == {(t + task.prompt, lab) for task in tasks for t, lab in true[task.name]["test"]}  # true labels
