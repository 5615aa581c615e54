"""`lmlab experiment objectives --quick` end to end: every part trains, measures and reports."""
import json
import subprocess
import sys


def lmlab(*args):
    return subprocess.run([sys.executable, "-m", "lmlab.cli", *args], capture_output=True, text=True)


def test_quick_objectives_experiment_writes_every_part(tmp_path):
    done = lmlab("experiment", "objectives", "--quick", "--out", str(tmp_path / "runs"), "--docs", str(tmp_path / "docs"))
    assert done.returncode == 0, done.stderr
    docs = tmp_path / "docs"
    results = json.loads((docs / "objectives-results.json").read_text())
    assert {"mlm", "protein", "denoise", "fusion"} <= set(results)
    assert all(set(results[p]["runs"]) == {"1337", "1338"} for p in ("mlm", "protein", "denoise", "fusion"))
    mlm = results["mlm"]["runs"]["1337"]
    assert set(mlm["variants"]) == {"attention, causal", "attention, bidirectional", "SSM, bidirectional",
                                    "LMU, bidirectional"}
    protein = results["protein"]["runs"]["1338"]["variants"]
    assert all(set(v["by_length"]) == {"16", "32"} and set(v["train_cost"]) == {"32", "64"} for v in protein.values())
    a, m = (v["params"] for v in protein.values())
    assert abs(a - m) / a < 0.05  # the SSM's FFN width is chosen to match attention's parameters
    fusion = results["fusion"]["runs"]["1337"]["lms"]
    assert fusion["char 5-gram, 50% of the text"]["text_chars"] == fusion["char 5-gram"]["text_chars"] // 2
    papers = {c["paper"].split(":")[0] for c in results["claims"]}
    assert papers == {"Long-context Protein Language Model", "Denoising LM", "Whisper-LM", "Making the Most of your Model"}
    report = (docs / "objectives.md").read_text()
    for title in ("## Masked LM", "## Protein masked LM", "## Denoising LM", "## LM fusion"):
        assert title in report
    assert "--quick: numbers are a smoke test" in report
    (docs / "objectives.md").unlink()  # the page comes from the results JSON alone
    redrawn = lmlab("experiment", "objectives", "--render-only", "--docs", str(docs))
    assert redrawn.returncode == 0, redrawn.stderr
    assert (docs / "objectives.md").read_text() == report
    for png in ("objectives_protein.png", "objectives_denoise.png", "objectives_fusion.png"):
        assert (docs / png).stat().st_size > 1000
    again = lmlab("experiment", "objectives", "--quick", "--parts", "fusion", "--out", str(tmp_path / "runs"),
                  "--docs", str(tmp_path / "docs"))
    assert again.returncode == 0, again.stderr
    assert set(json.loads((docs / "objectives-results.json").read_text())) >= {"mlm", "fusion"}  # parts kept


def test_unknown_part_is_a_one_line_error(tmp_path):
    done = lmlab("experiment", "objectives", "--parts", "mlm,speech", "--docs", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip() == "error: unknown part(s) speech; valid: mlm, protein, denoise, fusion"
