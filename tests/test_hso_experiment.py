"""`lmlab experiment hso --quick` end to end: results with claims, and the page redrawn from them alone."""
import json

from lmlab.cli import main
from test_experiments_quick import assert_rerendered

CLAIM_KEYS = {"paper", "claim", "setting", "number", "verdict", "why", "report", "command"}
VERDICTS = {"holds", "does not hold at this scale", "mixed", "not measurable here"}


def test_hso_quick(tmp_path):
    doc = tmp_path / "docs" / "hso.md"
    argv = ["experiment", "hso", "--quick", "--work", str(tmp_path / "runs"), "--doc", str(doc)]
    assert main(argv) == 0
    results = json.loads((tmp_path / "docs" / "hso-results.json").read_text())
    page = assert_rerendered(argv, doc)
    lm = results["lm"]
    assert set(lm["tune"]) == set(lm["test"]) == {"english-prose", "tinyshakespeare", "german"}
    assert set(lm["tune"]["german"]) == {"plain", "1 steps, lr 1", "2 steps, lr 1"} and lm["chosen"] in lm["flops"]
    assert lm["flops"]["2 steps, lr 1"]["ratio"] > lm["flops"]["1 steps, lr 1"]["ratio"] > 1
    for name, t in lm["test"].items():
        assert t["tokens"] == 64 and t["ci95"][0] <= t["hso"] - t["plain"] <= t["ci95"][1]
        assert f"| {name} | 64 ({t['chunks']}) | {t['plain']:.4f} | {t['hso']:.4f} |" in page
    assert set(results["choice"]) == {"english-prose", "tinyshakespeare"}
    assert all(c["n"] == 4 for c in results["choice"].values())
    assert len(results["claims"]) == 2
    for claim in results["claims"]:
        assert set(claim) == CLAIM_KEYS and claim["verdict"] in VERDICTS
        assert claim["paper"] == "Making the Most of your Model" and claim["command"].startswith("lmlab experiment hso")
        assert f"**{claim['verdict']}** | {claim['number']} |" in page
    assert "--quick" in page
