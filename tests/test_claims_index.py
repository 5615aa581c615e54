"""The claims index (`lmlab experiment index`) and `lmlab experiment all`."""
import json
import types

import pytest

from lmlab.cli import main
from lmlab.experiments import claims, suite


def entry(paper, verdict="holds", n="1.0"):
    return claims.claim(paper, f"claim of {paper}", "a setting", n, verdict, "a reason", "docs/x.md", "lmlab experiment x")


def test_claim_refuses_a_verdict_outside_the_four():
    with pytest.raises(ValueError):
        entry("P", verdict="sort of")


def test_index_has_one_row_per_paper_and_hides_not_measured_rows_of_measured_papers(tmp_path):
    docs = tmp_path / "docs"
    (docs / "experiments").mkdir(parents=True)
    (docs / "a-results.json").write_text(json.dumps({"claims": [entry("LM-Infinite: long title", n="2.5"),
                                                                  entry("LM-Infinite", "mixed", n="3.5")]}))
    (docs / "experiments" / "b-results.json").write_text(json.dumps({"claims": [entry("Other paper", "mixed"),
                                                                               {"paper": "broken"}]}))
    (docs / "experiments" / "plain.json").write_text(json.dumps({"no": "claims"}))
    (docs / "experiments" / claims.NOT_MEASURED).write_text(
        '[[paper]]\ntitle = "LM-Infinite: anything"\nbuilt = "x"\nwhy = "y"\n\n'
        '[[paper]]\ntitle = "Unmeasured paper"\nbuilt = "a tool"\nwhy = "no experiment"\nreport = "docs/t.md"\n')
    page = tmp_path / "README.md"
    assert main(["experiment", "index", "--results", str(docs), "--page", str(page)]) == 0
    rows = [line for line in page.read_text().splitlines() if line.startswith("| ") and not line.startswith("| paper")]
    assert [r.split(" | ")[0] for r in rows] == ["| LM-Infinite: long title", "| Other paper", "| Unmeasured paper"]
    assert "(1) 2.5<br>(2) 3.5" in rows[0]
    assert "(1) **holds**: a reason<br>(2) **mixed**: a reason" in rows[0]
    assert "**not measured**: no experiment" in rows[2] and "[t.md](../t.md)" in rows[2]


def fake(name, calls):
    def add_arguments(p):
        p.add_argument("--out", default=f"runs/{name}")
        p.add_argument("--doc", default=f"docs/{name}.md")
        p.add_argument("--figures", default="")
        p.add_argument("--quick", action="store_true")

    def run(args):
        calls.append((name, args.quick, args.out, args.doc, args.figures))
        path = suite.Path(args.doc).with_name(f"{name}-results.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"claims": [entry(f"Paper {name}")]}))
        return 0

    return types.SimpleNamespace(NAME=name, add_arguments=add_arguments, run=run)


def test_all_quick_runs_every_discovered_experiment_under_out_then_writes_the_index(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(suite, "discover", lambda: {n: fake(n, calls) for n in ("beta", "alpha")})
    out = tmp_path / "q"
    assert suite.run_all(suite.argparse.Namespace(quick=True, out=str(out), skip="", index="")) == 0
    assert calls == [("alpha", True, str(out / "alpha" / "runs/alpha"), str(out / "alpha" / "docs/alpha.md"), ""),
                     ("beta", True, str(out / "beta" / "runs/beta"), str(out / "beta" / "docs/beta.md"), "")]
    page = (out / "README.md").read_text()
    assert "| Paper alpha |" in page and "| Paper beta |" in page


def test_all_finds_the_real_experiments_and_their_quick_flags():
    found = suite.discover()
    assert {"core", "frozen-glyph", "inference", "superbpe"} <= set(found)
    for name, module in found.items():
        args = suite.experiment_args(module, True, suite.Path("/tmp/x"))
        assert args.quick, name
        assert not any(isinstance(v, str) and v.startswith(("runs/", "docs")) for v in vars(args).values()), name


def test_no_committed_not_measured_row_names_a_paper_that_a_results_json_measures():
    # a stale row is hidden by the index, so nothing else would notice its reason going out of date
    root = suite.Path(__file__).resolve().parents[1]
    measured = {claims.paper_key(c["paper"]) for c in claims.measured(root / "docs")}
    rows = claims.not_measured(root / "docs" / "experiments" / claims.NOT_MEASURED)
    assert rows, "the committed not-measured list is empty: delete the file instead"
    stale = [r["title"] for r in rows if claims.paper_key(r["title"]) in measured]
    assert not stale, f"measured papers still listed as not measured: {stale}"
