"""`lmlab experiment interpretability --quick` end to end: the page, its figures, the claims list
in the results JSON, and --render-only redrawing the same page from the results alone."""
import json

from lmlab import checkpoint
from lmlab.cli import main

VERDICTS = {"holds", "does not hold at this scale", "mixed", "not measurable here"}
FIELDS = {"paper", "claim", "setting", "number", "verdict", "why", "report", "command"}


def test_quick_run_writes_page_figures_and_claims_and_render_only_redraws_it(tmp_path, capsys):
    doc = tmp_path / "docs" / "experiments" / "interpretability.md"
    argv = ["experiment", "interpretability", "--quick", "--work", str(tmp_path / "runs"), "--doc", str(doc)]
    assert main(argv) == 0
    page = doc.read_text()
    results = json.loads((doc.parent / "interpretability-results.json").read_text())
    claims = results["claims"]
    assert len(claims) == 10 and all(set(c) == FIELDS for c in claims)
    assert {c["verdict"] for c in claims} <= VERDICTS
    assert {c["paper"].split(":")[0] for c in claims} == {
        "Talking Heads", "Analyzing Transformer Dynamics as Movement through Embedding Space",
        "Correlation and Navigation in the Vocabulary Key Representation Space of Language Models",
        "See What You Are Told"}
    assert all(c["command"].startswith("lmlab experiment interpretability --quick") for c in claims)
    for what in ("laundry", "keys", "trajectory", "sinks", "lens"):
        for png in results["figures"][what]:
            assert (doc.parent / png).is_file() and png in page
    assert "over 20%" in page and claims[2]["verdict"] in page
    appears = "appears here" if claims[2]["verdict"] == "holds" else "is not measurable here" \
        if claims[2]["verdict"] == "not measurable here" else "does not appear here"
    assert f'The paper\'s "over 20%" improvement {appears}' in page and "Test accuracy by scale" in page
    # the curriculum: a run on short lists first, the task run continues from its weights on all lengths
    runs = tmp_path / "runs"
    assert (runs / "laundry-warmup" / "metrics.jsonl").is_file()
    warm_task = json.loads((runs / "laundry-warmup-task" / "task.json").read_text())
    assert warm_task["settings"]["lengths"] == [2, 3]
    source = checkpoint.read_state(checkpoint.resolve(runs / "laundry"))["config"]["data"]["task"]
    assert source == str((runs / "laundry-task").resolve())
    assert "warm-up of 4 steps" in page
    (doc.parent / "interpretability-results.json").write_text(json.dumps(results))
    assert main(argv + ["--render-only"]) == 0
    assert doc.read_text() == page


def test_laundry_claims_are_not_measurable_when_the_model_names_list_items_no_better_than_chance():
    from lmlab.experiments.interpretability_report import _laundry_claims

    def rows(acc_short):
        return [{"length": 2, "accuracy": acc_short, "n": 100, "ci95": [acc_short - 0.05, acc_short + 0.05]},
                {"length": 6, "accuracy": 0.1, "n": 100, "ci95": [0.05, 0.15]}]

    def results(acc_short):
        laundry = {"test": {"by_length": rows(acc_short), "accuracy": 0.3}, "gain": 0.25, "control_gain": 0.0,
                   "channel": {"mode": "K", "component": 0, "share": 0.99, "score": 0.7}, "writer": "L0H0",
                   "mover": "L1H0", "controls": 4, "test_at_chosen": 0.55, "chosen_scale": 2.0}
        return {"laundry": laundry, "laundry_run": {"steps": 10}}

    s = {"laundry_d_model": 64, "laundry_context": 32, "laundry_steps": 10, "seed": 1, "laundry_data": "task",
         "laundry_examples": 10, "laundry_batch_size": 8, "laundry_lr": 0.003}
    unlearned = [c["verdict"] for c in _laundry_claims(results(0.45), s)]  # below naming a random item (0.5)
    assert unlearned == ["not measurable here"] * 3
    learned = [c["verdict"] for c in _laundry_claims(results(0.9), s)]
    assert learned == ["holds", "holds", "holds"]


def test_the_page_says_whether_the_laundry_model_had_the_short_list_warm_up():
    from lmlab.experiments.interpretability_report import _laundry_data, _laundry_model

    s = {"laundry_data": "task", "laundry_examples": 10, "laundry_batch_size": 8, "laundry_lr": 0.003,
         "laundry_lengths": "2,3,4,5,6", "laundry_warmup_steps": 600, "laundry_warmup_lengths": "2,3",
         "laundry_warmup_examples": 3500, "laundry_warmup_batch_size": 64}
    assert "after a warm-up of 600 steps (batch 64) on 3500 examples of lengths 2,3 only" in _laundry_data(s)
    assert "warm-up of 600 steps on short lists only (lengths 2,3" in _laundry_model(s)
    without = dict(s, laundry_warmup_steps=0)
    assert "warm-up" not in _laundry_data(without) and "after a warm-up" not in _laundry_model(without)


def test_a_mixed_laundry_run_is_refused_with_the_warm_up_before_anything_is_written(tmp_path):
    import argparse

    import pytest

    from lmlab.errors import LmlabError
    from lmlab.experiments.interpretability import add_arguments, check_laundry

    p = argparse.ArgumentParser()
    add_arguments(p)
    with pytest.raises(LmlabError, match="--laundry-warmup-steps 0"):
        check_laundry(p.parse_args(["--laundry-data", "mix", "--work", str(tmp_path / "w")]))
    check_laundry(p.parse_args(["--laundry-data", "mix", "--laundry-warmup-steps", "0"]))
    with pytest.raises(LmlabError, match="--laundry-warmup-lengths 2,12: .*need vocab >= 12"):
        check_laundry(p.parse_args(["--laundry-warmup-lengths", "2,12"]))
    assert not (tmp_path / "w").exists()
