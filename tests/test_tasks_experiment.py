"""`lmlab experiment tasks`: the quick run end to end, its page redrawn from the results alone, the
claims list, and the pieces with exact answers (equal parameter budgets, meta-token prompts)."""
import json

from lmlab.cli import main
from lmlab.experiments import tasks, tasks_report

CLAIM_KEYS = {"paper", "claim", "setting", "number", "verdict", "why", "report", "command"}
VERDICTS = {"holds", "does not hold at this scale", "mixed", "not measurable here"}


def test_tasks_quick_end_to_end(tmp_path):
    docs = tmp_path / "docs"
    # one job: the worker processes are tested by test_the_numbers_do_not_depend_on_jobs
    argv = ["experiment", "tasks", "--quick", "--out", str(tmp_path / "runs"), "--docs", str(docs), "--jobs", "1"]
    assert main(argv) == 0
    res = json.loads((docs / "tasks-results.json").read_text())
    page = (docs / "tasks.md").read_text()
    (docs / "tasks.md").unlink()
    assert main(argv + ["--render-only"]) == 0
    assert (docs / "tasks.md").read_text() == page
    assert (docs / tasks_report.PNG).read_bytes()[:4] == b"\x89PNG"

    rows = res["archs"]["rows"]
    # every architecture on every task; the meta part: attention with and without meta-tokens on recall
    assert sorted({(r["task"], r["label"]) for r in rows}) == sorted([(t, a) for t in tasks.TASKS for a in tasks.ARCHS])
    assert [(r["task"], r["label"]) for r in res["meta"]["rows"]] == [("mqar", "attention (AF)"),
                                                                      ("mqar", "attention + meta-tokens")]
    # the baseline is one model shared by both parts (the same config), not trained twice
    assert res["meta"]["rows"][0] == next(r for r in rows if r["task"] == "mqar" and r["label"] == "attention (AF)")
    assert all(r["seed"] == 1 for r in rows)
    meta = res["meta"]["rows"][1]
    # recall is scored within the training lengths and beyond them (up to 2x)
    assert sorted(map(int, meta["meta_prompt"]["by_length"])) == [8, 12, 16, 24, 32]
    for r in rows:
        assert 0.0 <= r["plain"]["accuracy"] <= 1.0 and r["plain"]["n"] == tasks.QUICK_SIZES["n_test"]
    for part in ("meta", "archs", "passkey"):  # each part says how it was made
        assert res[part]["command"] == "lmlab experiment tasks --quick --out {} --docs {}".format(
            tmp_path / "runs", docs) and res[part]["timing"]["wall_s"] > 0
        assert f"`{res[part]['command']}`" in page
    for task in tasks.TASKS:
        s = tasks_report.series(rows, task, "attention (AF)")
        assert f"| attention (AF) | `AF` | {s['d_ff']} | {s['params']:,} | {tasks_report.fmt(s['accuracy'])} |" in page
    multipliers = sorted({r["multiplier"] for r in res["passkey"]["rows"]})
    assert len(res["passkey"]["rows"]) == 2 * len(tasks.PASSKEY_MULTIPLIERS) * len(tasks.PASSKEY_DEPTHS)
    assert res["passkey"]["model"]["steps"] == tasks.QUICK["passkey_steps"]  # its own training length
    assert multipliers == list(tasks.PASSKEY_MULTIPLIERS)
    assert {r["method"] for r in res["passkey"]["rows"]} == {"vanilla", "lminfinite"}

    claims = res["claims"]
    assert [c["paper"].split(":")[0] for c in claims] == [
        "Language Modeling with Learned Meta-Tokens", "Hunyuan-TurboS", "LMUFormer", "Long Range Arena",
        "LM-Infinite"]
    for c in claims:
        assert set(c) == CLAIM_KEYS and c["verdict"] in VERDICTS and c["report"] == "docs/experiments/tasks.md"
        assert c["command"].startswith("lmlab experiment tasks --quick") and f"**{c['verdict']}**" in page


def without_times(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("tok_per_s", "train_s", "wall_s")} for r in rows]


def test_a_run_of_some_parts_keeps_the_other_parts_results(tmp_path):
    docs, runs = tmp_path / "docs", tmp_path / "runs"
    base = ["experiment", "tasks", "--quick", "--out", str(runs), "--docs", str(docs), "--jobs", "1"]
    assert main(base + ["--parts", "passkey"]) == 0
    first = json.loads((docs / "tasks-results.json").read_text())
    assert main(base + ["--parts", "meta"]) == 0
    res = json.loads((docs / "tasks-results.json").read_text())
    assert set(res) == {"passkey", "meta", "claims"}
    assert res["passkey"] == first["passkey"]  # kept as it was, command and timing included
    assert "--parts passkey" in res["passkey"]["command"] and "--parts meta" in res["meta"]["command"]
    page = (docs / "tasks.md").read_text()
    assert f"`{res['passkey']['command']}`" in page and f"`{res['meta']['command']}`" in page
    assert {c["paper"].split(":")[0]: c["command"] for c in res["claims"]} == {
        "Language Modeling with Learned Meta-Tokens": res["meta"]["command"], "LM-Infinite": res["passkey"]["command"]}


def test_the_numbers_do_not_depend_on_jobs(tmp_path):
    def run(jobs):
        docs = tmp_path / f"docs{jobs}"
        assert main(["experiment", "tasks", "--quick", "--parts", "meta", "--out", str(tmp_path / f"runs{jobs}"),
                     "--docs", str(docs), "--jobs", str(jobs)]) == 0
        return json.loads((docs / "tasks-results.json").read_text())["meta"]

    one, two = run(1), run(2)
    assert one["jobs"] == 1 and two["jobs"] == 2
    assert without_times(one["rows"]) == without_times(two["rows"]) and len(one["rows"]) == 2


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
    for part in tasks.PARTS:  # every part measured by a full run with at least two seeds
        assert committed[part]["settings"]["quick"] is False and len(committed[part]["seeds"]) >= 2
