"""`lmlab experiment interpretability --quick` end to end: the page, its figures, the claims list
in the results JSON, and --render-only redrawing the same page from the results alone."""
import json

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
