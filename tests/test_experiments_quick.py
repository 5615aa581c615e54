"""Every `lmlab experiment NAME --quick` end to end, and its page redrawn from its results alone.

Each run is seconds of training on the shared corpora; --render-only must then write the same page
from the results JSON without measuring anything, which is what makes the pages' numbers the JSON's.
"""
import json

from lmlab.cli import main
from lmlab.experiments import architectures


def assert_rerendered(argv: list[str], page) -> str:
    """The page `argv` wrote, rewritten by `argv --render-only` from the results alone: the same text."""
    first = page.read_text(encoding="utf-8")
    page.unlink()
    assert main(argv + ["--render-only"]) == 0
    assert page.read_text(encoding="utf-8") == first
    return first


def test_core_quick(tmp_path, capsys):
    doc = tmp_path / "docs" / "core.md"
    argv = ["experiment", "core", "--quick", "--work", str(tmp_path / "runs"), "--doc", str(doc)]
    assert main(argv) == 0
    results = json.loads((tmp_path / "docs" / "core-results.json").read_text())
    page = assert_rerendered(argv, doc)
    assert set(results["runs"]) == {"demo (embedded Shakespeare, char)", "shakespeare-char (tinyshakespeare)"}
    for label, r in results["runs"].items():
        assert r["steps"] == 4 and r["tokens"] == 4 * 4 * 32  # steps x batch x context of --quick
        assert f"| {label} | 4 | 512 | {r['elapsed_min']:.1f} | {r['tok_per_s_median']:,.0f} | " \
               f"{r['val_loss']:.3f} | {r['val_bpb']:.3f} |" in page
        curves = results["curves"][label]
        assert [s for s, _ in curves["train"]] == [1, 2, 3, 4] and [s for s, _ in curves["val"]] == [2, 4]
        assert curves["val"][-1][1] == r["val_loss"]
    assert "--minutes 30 --quick`" in page and results["machine"]["torch"] in page
    assert (tmp_path / "docs" / "img" / "core-loss.png").read_bytes()[:4] == b"\x89PNG"


def test_frozen_glyph_quick(tmp_path):
    argv = ["experiment", "frozen-glyph", "--quick", "--out", str(tmp_path)]
    assert main(argv) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    report = assert_rerendered(argv, tmp_path / "report.md")
    assert list(results) == ["english", "multilingual"]
    for key, res in results.items():
        assert res["vocab_size"] == 512 and res["mc_items"] == 8
        assert len((tmp_path / f"items-{key}.jsonl").read_text().splitlines()) == 8
        assert set(res["glyphs"]["neighbours"]) <= {"a", "e", "的", "ть", "E"} and res["glyphs"]["neighbours"]["a"]
        assert (tmp_path / f"glyph-sheet-{key}.png").read_bytes()[:4] == b"\x89PNG"
        for emb, r in res["runs"].items():
            (seed,) = r["seeds"]
            assert [s for s, _ in r["curve"]] == [1, 2, 3] and r["curve"][-1][1] == r["val_bpb"] == seed["val_bpb"]
            assert (r["frozen"] > 0) == (emb != "trainable")
            assert f"| {key} | {emb} | 1 | {r['val_bpb']:.4f} | {r['mc']['acc']:.3f} |" in report
            assert f"| {emb} | {seed['sample']['text'][:150].replace(chr(10), '⏎')} |" in report
    assert list(results["english"]["runs"]) == ["trainable", "glyph", "binary", "gaussian"]
    assert report.count("| english | glyph − trainable | ") == 1


def test_superbpe_quick(tmp_path):
    doc = tmp_path / "docs" / "superbpe.md"
    argv = ["experiment", "superbpe", "--quick", "--out", str(tmp_path / "out"), "--doc", str(doc)]
    assert main(argv) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    page = assert_rerendered(argv, doc)
    rows = results["sweeps"][0]["rows"]
    assert [(r["kind"], r["vocab"], r["transition"]) for r in rows] == [("bpe", 512, None), ("superbpe", 512, 384)]
    assert f"| 512 | SuperBPE | 384 | {rows[1]['vocab_reached']} | {rows[1]['bytes_per_token']:.3f} |" in page
    (lm,) = results["lm"]
    assert lm["corpus"] == "english-prose" and lm["steps"] == 3 and list(lm["models"]) == ["bpe", "superbpe t=384"]
    for kind, m in lm["models"].items():
        assert f"| {kind} | {m['train_bytes_per_token']:.3f} |" in page and f"| {m['held_out_bpb']:.4f} |" in page
    assert doc.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_architectures_quick(tmp_path):
    argv = ["experiment", "architectures", "--quick", "--out", str(tmp_path / "runs"), "--docs", str(tmp_path / "docs")]
    assert main(argv) == 0
    measured = json.loads((tmp_path / "runs" / "results.json").read_text())
    page = assert_rerendered(argv, tmp_path / "docs" / "architectures.md")
    widths = [(r["name"], r["width"]) for r in measured["results"]]
    assert widths == [(n, 16) for n in architectures.VARIANTS] + [(n, 32) for n in architectures.SCALING]
    assert not measured["skipped"] and measured["planned"] == [{k: r[k] for k in ("name", "width", "seed")}
                                                               for r in measured["results"]]
    for r in measured["results"]:
        assert r["steps"] == 2 and r["tokens"] == 2 * 8 * 16 and r["train_flops_per_token"] > 0
        if r["width"] == 16:
            assert f"| {r['name']} |" in page and f"| {r['val_bpb']:.3f} (1 seed) |" in page
            assert f"| {r['params']:,} ({r['params_nonembed']:,}) |" in page
    claims = json.loads((tmp_path / "docs" / "architectures-results.json").read_text())["claims"]
    assert len(claims) == 6 and all(c["verdict"] == "not measurable here" for c in claims)  # one seed: no spread
    assert all(c["command"].startswith("nice lmlab experiment architectures --quick --threads 1") for c in claims)
    assert "nice lmlab experiment architectures --quick --threads 1 --out" in page


def test_inference_quick(tmp_path):
    argv = ["experiment", "inference", "--quick", "--out", str(tmp_path / "runs"), "--docs", str(tmp_path / "docs")]
    assert main(argv) == 0
    results = json.loads((tmp_path / "runs" / "results.json").read_text())
    page = assert_rerendered(argv, tmp_path / "docs" / "inference.md")
    assert {"machine", "lminfinite", "knn", "voids", "decoding"} <= set(results)
    knn = results["knn"]["in-domain (tinyshakespeare)"]
    assert knn["entries"] == 5000 and knn["eval_tokens"] == 1000  # --quick's caps
    assert f"{knn['entries']:,} ({knn['index']})" in page
    assert [q["mode"] for q in results["voids"]["quality"]] == ["detect", "last", "skip"]
    for section in ("## LM-Infinite", "## kNN-LM", "## Layer voids", "## Beam, conditional beam"):
        assert section in page
    for png in ("lminfinite_profile", "knn_token_changes", "knn_entropy", "voids_heatmap"):
        assert (tmp_path / "docs" / "inference" / f"{png}.png").read_bytes()[:4] == b"\x89PNG"
