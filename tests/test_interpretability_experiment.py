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
