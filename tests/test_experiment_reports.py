"""The committed experiment pages are what their report modules render from the committed results JSON."""
import json
import shutil
from pathlib import Path

from lmlab.cli import main
from lmlab.experiments import core_report, frozen_glyph_report

DOCS = Path(__file__).resolve().parents[1] / "docs"
# the flags docs/core.md was made with (core-results.json predates recording them)
CORE_SETTINGS = {"work": "runs/core-v2", "sc_steps": 500, "sc_batch": 32, "minutes": 40.0}


def test_core_page_is_rendered_from_core_results():
    results = json.loads((DOCS / "core-results.json").read_text())
    page = core_report.markdown({**results, "settings": CORE_SETTINGS})
    doc = (DOCS / "core.md").read_text()
    assert doc.startswith(page)  # the page's hand-written notes come after what is rendered
    assert "| demo (embedded Shakespeare, char) | 500 | 2,048,000 | 4.0 | 8,768 | 1.665 | 2.402 |" in page


def test_core_report_only_rewrites_the_page_from_the_results(tmp_path, capsys):
    doc = tmp_path / "core.md"
    results = json.loads((DOCS / "core-results.json").read_text())
    results["runs"]["demo (embedded Shakespeare, char)"]["val_bpb"] = 1.23456  # numbers come from the file
    (tmp_path / "core-results.json").write_text(json.dumps(results))
    argv = ["experiment", "core", "--report-only", "--doc", str(doc), "--work", "runs/core-v2", "--sc-steps", "500",
            "--sc-batch", "32", "--minutes", "40"]
    assert main(argv) == 0
    page = doc.read_text()
    assert "| 1.665 | 1.235 |" in page and page.startswith("# The core, measured\n\nRegenerate: `lmlab experiment "
                                                            "core --work runs/core-v2 --sc-steps 500 --sc-batch 32 "
                                                            "--minutes 40`")
    assert not (tmp_path / "img").exists()  # that file has no curves: the committed PNG is kept as it is
    assert json.loads(capsys.readouterr().out)["shakespeare-char (tinyshakespeare)"]["steps"] == 500


def test_frozen_glyph_page_tables_are_rendered_from_its_results():
    results = json.loads((DOCS / "experiments" / "frozen-glyph-results.json").read_text())
    doc = (DOCS / "experiments" / "frozen-glyph.md").read_text()
    rows = [line for line in frozen_glyph_report.markdown(results).splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 8 and all(row in doc for row in rows)
    embeddings = ["trainable", "glyph", "binary", "gaussian"]
    assert [row.split(" | ")[1:3] for row in rows[2:]] == [[emb, "3"] for emb in embeddings * 2]  # three seeds each
    differences = frozen_glyph_report.seed_differences(results)
    assert differences in doc and "| seed 1337 | seed 1338 | seed 1339 |" in differences
    samples = frozen_glyph_report.samples(results)
    assert samples in doc
    assert sum(line.split(" | ")[0] in ("| trainable", "| glyph", "| binary", "| gaussian")
               for line in samples.splitlines()) == 8


def test_frozen_glyph_page_is_what_render_only_draws_from_its_committed_results(tmp_path):
    # the page's sentence on the machine was once prose that went false when the numbers were re-run
    out, docs = tmp_path / "out", tmp_path / "docs"
    out.mkdir()
    docs.mkdir()
    shutil.copy(DOCS / "experiments" / "frozen-glyph-results.json", out / "results.json")
    shutil.copy(DOCS / "experiments" / "frozen-glyph.md", docs / "frozen-glyph.md")
    assert main(["experiment", "frozen-glyph", "--render-only", "--out", str(out), "--doc", str(docs / "frozen-glyph.md")]) == 0
    assert (docs / "frozen-glyph.md").read_text() == (DOCS / "experiments" / "frozen-glyph.md").read_text()
    committed = json.loads((DOCS / "experiments" / "frozen-glyph-results.json").read_text())
    assert json.loads((docs / "frozen-glyph-results.json").read_text()) == committed
    assert frozen_glyph_report.provenance(committed) in (docs / "frozen-glyph.md").read_text()


def test_frozen_glyph_render_only_marks_results_of_an_older_renderer_stale(tmp_path):
    results = json.loads((DOCS / "experiments" / "frozen-glyph-results.json").read_text())
    results.pop("fonts", None)
    for key in ("english", "multilingual"):
        results[key]["glyphs"]["coverage"].pop("renderer", None)  # as the results before glyph-v3 were
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert main(["experiment", "frozen-glyph", "--render-only", "--out", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    stale = frozen_glyph_report.stale(json.loads((tmp_path / "results.json").read_text()))
    assert stale.startswith("Stale: these runs used a renderer older than glyph-v3")
    assert report.startswith(frozen_glyph_report.provenance(results) + "\n" + stale + "\n| corpus | embedding |")
    assert "Differences per seed" in report and (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_committed_claims_are_what_the_report_modules_decide_from_the_committed_numbers():
    from lmlab.experiments import claims, superbpe_report

    glyph = json.loads((DOCS / "experiments" / "frozen-glyph-results.json").read_text())
    assert glyph["claims"] == frozen_glyph_report.claims_of(glyph)
    doc = (DOCS / "experiments" / "frozen-glyph.md").read_text()
    assert frozen_glyph_report.verdicts(glyph) in doc and frozen_glyph_report.fonts(glyph) in doc
    assert frozen_glyph_report.stale(glyph) in doc and frozen_glyph_report.provenance(glyph) in doc
    core = json.loads((DOCS / "core-results.json").read_text())
    assert core["claims"] == core_report.claims_of(core) and core["claims"][0]["verdict"] == "not measurable here"
    sbpe = json.loads((DOCS / "experiments" / "superbpe-results.json").read_text())
    assert sbpe["claims"] == superbpe_report.claims_of(sbpe, [sbpe["claims"][0]["command"]])
    for row in sbpe["sweeps"][0]["rows"]:  # every headline comparison at one vocabulary size
        bpe = next(r for r in sbpe["sweeps"][0]["rows"] if r["kind"] == "bpe" and r["vocab"] == row["vocab"])
        assert row["vocab_reached"] == bpe["vocab_reached"]
    for c in glyph["claims"] + core["claims"] + sbpe["claims"]:
        assert set(c) == set(claims.FIELDS) and c["verdict"] in claims.VERDICTS


def test_the_committed_claims_index_is_current(tmp_path):
    from lmlab.experiments import claims

    page = tmp_path / "README.md"
    claims.index(DOCS, page)
    assert page.read_text() == (DOCS / "experiments" / "README.md").read_text()


def test_inference_page_is_what_render_only_draws_from_its_committed_results(tmp_path):
    # the page was once spliced by hand from several runs and showed numbers its results JSON did not hold
    out, docs = tmp_path / "runs", tmp_path / "docs"
    out.mkdir()
    (docs / "experiments").mkdir(parents=True)
    shutil.copy(DOCS / "inference-results.json", out / "results.json")
    shutil.copy(DOCS / "experiments" / "knnlm-results.json", docs / "experiments" / "knnlm-results.json")
    assert main(["experiment", "inference", "--render-only", "--out", str(out), "--docs", str(docs)]) == 0
    assert (docs / "inference.md").read_text() == (DOCS / "inference.md").read_text()
    committed = json.loads((DOCS / "inference-results.json").read_text())
    assert json.loads((docs / "inference-results.json").read_text())["claims"] == committed["claims"]
