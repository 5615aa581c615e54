"""`lmlab experiment tasks`: the quick run end to end, its page redrawn from the results alone, the
claims list, and the pieces with exact answers (equal parameter budgets, meta-token prompts)."""
import json

from lmlab.cli import main
from lmlab.experiments import tasks, tasks_report

CLAIM_KEYS = {"paper", "claim", "setting", "number", "verdict", "why", "report", "command"}
VERDICTS = {"holds", "does not hold at this scale", "mixed", "not measurable here"}


def test_tasks_quick_end_to_end(tmp_path):
    docs = tmp_path / "docs"
    argv = ["experiment", "tasks", "--quick", "--out", str(tmp_path / "runs"), "--docs", str(docs)]
    assert main(argv) == 0
    res = json.loads((docs / "tasks-results.json").read_text())
    page = (docs / "tasks.md").read_text()
    (docs / "tasks.md").unlink()
    assert main(argv + ["--render-only"]) == 0
    assert (docs / "tasks.md").read_text() == page
    assert (docs / tasks_report.PNG).read_bytes()[:4] == b"\x89PNG"

    rows = res["archs"]["rows"]
    # every architecture on every task, plus the meta-token model on recall; one seed under --quick
    assert sorted({(r["task"], r["label"]) for r in rows}) == sorted(
        [(t, a) for t in tasks.TASKS for a in tasks.ARCHS] + [("mqar", "attention + meta-tokens")])
    assert all(r["seed"] == 1 for r in rows)
    meta = next(r for r in rows if r["label"] == "attention + meta-tokens")
    # recall is scored within the training lengths and beyond them (up to 2x)
    assert sorted(map(int, meta["meta_prompt"]["by_length"])) == [8, 12, 16, 24, 32]
    for r in rows:
        assert 0.0 <= r["plain"]["accuracy"] <= 1.0 and r["plain"]["n"] == tasks.QUICK_SIZES["n_test"]
    for task in tasks.TASKS:
        s = tasks_report.series(rows, task, "attention (AF)")
        assert f"| attention (AF) | `AF` | {s['d_ff']} | {s['params']:,} | {tasks_report.fmt(s['accuracy'])} |" in page
    multipliers = sorted({r["multiplier"] for r in res["passkey"]["rows"]})
    assert multipliers == list(tasks.PASSKEY_MULTIPLIERS)
    assert {r["method"] for r in res["passkey"]["rows"]} == {"vanilla", "lminfinite"}

    claims = res["claims"]
    assert [c["paper"].split(":")[0] for c in claims] == [
        "Language Modeling with Learned Meta-Tokens", "Hunyuan-TurboS", "LMUFormer", "Long Range Arena",
        "LM-Infinite"]
    for c in claims:
        assert set(c) == CLAIM_KEYS and c["verdict"] in VERDICTS and c["report"] == "docs/experiments/tasks.md"
        assert c["command"].startswith("lmlab experiment tasks --quick") and f"**{c['verdict']}**" in page


def test_the_ssm_hybrid_and_lmu_get_the_attention_models_parameter_count():
    class Args:
        d_model, steps, threads = 64, 10, 1

    target = tasks.params_of(tasks.base_config("", 64, Args, 0))
    for pattern in ("AMF MF", "LF"):
        d_ff = tasks.matched_d_ff(pattern, target, Args)
        got = tasks.params_of(tasks.base_config("", 64, Args, 0, pattern=pattern, d_ff=d_ff))
        per_unit = tasks.params_of(tasks.base_config("", 64, Args, 0, pattern=pattern, d_ff=d_ff + 1)) - got
        assert d_ff != 4 * Args.d_model and abs(got - target) <= per_unit / 2  # the nearest integer width


def test_meta_tokens_go_before_every_kth_prompt_token_in_turn():
    assert tasks.with_meta([1, 2, 3, 4, 5, 6, 7], 3, 100, 2) == [1, 2, 3, 100, 4, 5, 6, 101, 7]
    assert tasks.with_meta([1, 2], 3, 100, 2) == [1, 2]


def test_listops_lengths_fall_in_token_count_bins():
    assert [tasks.length_of("listops", " ".join(["1"] * n)) for n in (5, 10, 11, 20, 21, 40)] == [5, 5, 11, 11, 21, 21]
    assert tasks.length_of("mqar", "a b c d ? a") == 4


def test_the_committed_page_is_rendered_from_the_committed_results(tmp_path):
    import shutil
    from pathlib import Path

    docs = Path(__file__).resolve().parents[1] / "docs" / "experiments"
    shutil.copy(docs / "tasks-results.json", tmp_path / "tasks-results.json")
    assert main(["experiment", "tasks", "--render-only", "--docs", str(tmp_path)]) == 0
    assert (tmp_path / "tasks.md").read_text() == (docs / "tasks.md").read_text()
    committed = json.loads((docs / "tasks-results.json").read_text())
    assert json.loads((tmp_path / "tasks-results.json").read_text())["claims"] == committed["claims"]
    assert committed["settings"]["quick"] is False and len(committed["seeds"]) >= 2
