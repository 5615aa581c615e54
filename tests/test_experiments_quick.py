"""Every `lmlab experiment NAME --quick` end to end, and its page redrawn from its results alone.

Each run is seconds of training on the shared corpora; --render-only must then write the same page
from the results JSON without measuring anything, which is what makes the pages' numbers the JSON's.
"""
import json
import math

import pytest
import torch

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
    assert list(results) == ["fonts", "settings", "command", "machine", "english", "multilingual", "claims", "timing"]
    # what the page says it was measured on comes from the run's own record
    assert results["command"] == f"lmlab experiment frozen-glyph --out {tmp_path} --quick"
    assert results["timing"]["runs_done"] == 8
    assert results["machine"]["device"] == "cpu" and results["machine"]["torch"] == torch.__version__
    assert report.startswith(f"Measured by `{results['command']}` on the CPU (")
    assert f"its 8 training runs with their evaluation took {results['timing']['wall_s'] / 60:.1f} minutes" in report
    assert results["fonts"]["renderer"] == "glyph-v3" and "DejaVuSans.ttf" in results["fonts"]["chain"]
    assert f"Font chain: {', '.join(results['fonts']['chain'])}" in report
    assert {c["verdict"] for c in results["claims"]} <= {"holds", "does not hold at this scale", "mixed"}
    assert len(results["claims"]) == 3 and "Stale" not in report  # the current renderer drew these
    for key in ("english", "multilingual"):
        res = results[key]
        assert res["glyphs"]["coverage"]["renderer"] == "glyph-v3" and f"{key}: {res['vocab_size']} tokens drawn" in report
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
    voids = results["voids"]
    assert [(q["alpha"], q["mode"]) for q in voids["quality"]] == [
        (a, m) for a in (0.2, 0.5, 0.8) for m in ("detect", "last", "skip")]
    for q in voids["quality"]:
        assert 0 <= q["void_share"] <= 1 and q["active_rate"][0] == 1.0  # layer 1 is never void
        if q["mode"] == "detect":  # outputs untouched: the plain model's numbers exactly
            assert (q["bpb"], q["mc_acc"]) == (voids["plain"]["bpb"], voids["plain"]["mc_acc"])
    assert [f["layers"] for f in voids["first_layers"]] == [1] and voids["items"] == 8
    papers = [c["paper"].split(":")[0] for c in results["claims"]]
    assert papers == ["LM-Infinite"] * 3 + ["Void in Language Models"] * 2 + [
        "Making the Most of your Model", "Correlation and Navigation in the Vocabulary Key Representation Space of Language Models"]
    assert json.loads((tmp_path / "docs" / "inference-results.json").read_text())["claims"] == results["claims"]
    assert "## Verdicts" in page and all(f"**{c['verdict']}**" in page for c in results["claims"])
    for section in ("## LM-Infinite", "## kNN-LM", "## Layer voids", "## Beam, conditional beam"):
        assert section in page
    for png in ("lminfinite_profile", "knn_token_changes", "knn_entropy", "voids_heatmap"):
        assert (tmp_path / "docs" / "inference" / f"{png}.png").read_bytes()[:4] == b"\x89PNG"
    # one part again, with no results under --out: the other parts come from the committed copy, unchanged
    (tmp_path / "runs" / "results.json").unlink()
    assert main(argv + ["--parts", "decoding"]) == 0
    again = json.loads((tmp_path / "docs" / "inference-results.json").read_text())
    assert all(again[p] == results[p] for p in ("lminfinite", "knn", "voids"))
    assert again["decoding"]["command"] == "nice lmlab experiment inference --parts decoding --quick"
    assert results["voids"]["model"] == again["decoding"]["model"] == results["model"]


def test_btm_quick(tmp_path):
    from lmlab.experiments import btm

    doc = tmp_path / "docs" / "btm.md"
    argv = ["experiment", "btm", "--quick", "--work", str(tmp_path / "runs"), "--doc", str(doc)]
    assert main(argv) == 0
    results = json.loads((tmp_path / "docs" / "btm-results.json").read_text())
    page = assert_rerendered(argv, doc)
    assert list(results["scores"]) == [*btm.DOMAINS, btm.UNSEEN]
    assert results["data"]["code"]["files"] >= 1 and len(results["data"]["languages"]) == 18
    for text, sc in results["scores"].items():
        assert sc["single"]["seed"] > 0 and sc["single"]["dense"] > 0
        for group, members in (("domain", btm.DOMAINS), ("random", btm.RANDOM)):
            st = sc["sets"][group]
            assert list(st["experts"]) == list(members)
            assert sum(st["dev_prior"].values()) == pytest.approx(1.0)
            posts = st["document_posteriors"]
            assert len(posts) == 3 and all(sum(p) == pytest.approx(1.0) for p in posts)
            # Bayes' mixture of 4 from a uniform prior: at most log2(4) bits per window above its best member
            n = results["data"]["sizes"][text]["test_bytes"] - 1  # byte tokens: one target per byte but the first
            assert st["ensemble_uniform"] <= min(st["experts"].values()) + 2 * math.ceil(n / 32) / n + 1e-9
    (c1, c2, c3) = results["claims"]
    assert {c["verdict"] for c in results["claims"]} <= {"holds", "mixed", "does not hold at this scale"}
    assert c1["number"] in page and c1["command"] == f"lmlab experiment btm --quick --work {tmp_path / 'runs'}"
    assert "| dense (compute-matched) | " in page and "--quick smoke run" in page
    assert (tmp_path / "docs" / "img" / "btm-posteriors.png").read_bytes()[:4] == b"\x89PNG"
    for name in (*btm.DOMAINS, *btm.RANDOM, "dense"):
        steps = [json.loads(line)["step"] for line in
                 (tmp_path / "runs" / "btm" / "experts" / name / "metrics.jsonl").read_text().splitlines()]
        assert steps == list(range(1, (12 if name == "dense" else 3) + 1))
def test_knnlm_quick(tmp_path):
    doc = tmp_path / "docs" / "knnlm.md"
    argv = ["experiment", "knnlm", "--quick", "--work", str(tmp_path / "runs"), "--doc", str(doc)]
    assert main(argv) == 0
    results = json.loads((tmp_path / "docs" / "knnlm-results.json").read_text())
    page = assert_rerendered(argv, doc)
    assert len(results["tokens"]) == 4 and len(results["claims"]) == 3
    for cell in results["tokens"].values():
        assert cell["entries"] == 3000 and cell["val_tokens"] == 300 and cell["test_tokens"] == 300
        r = cell["rows"]["tuned on validation"]
        assert f"| {r['base']['ppl']:.3f} | {r['knn']['ppl']:.3f} | {r['frac_better']:.3f} | {r['frac_worse']:.3f} |" in page
    gen = results["generation"]
    assert list(gen["settings"]) == ["plain LM", "kNN-LM, tuned on validation", "kNN-LM, paper default"]
    assert all(len(s["runs"]) == 2 and len(s["runs"][0]["entropy"]["h_knn"]) == 24 for s in gen["settings"].values())
    assert {c["verdict"] for c in results["claims"]} == {"not measurable here"} and "--quick" in page
    assert (tmp_path / "docs" / "img" / "knnlm-entropy.png").read_bytes()[:4] == b"\x89PNG"
    for cell in results["tokens"].values():  # 0 < lambda < 1: raised exactly where p_kNN(target) > p_LM(target)
        assert all(r["why"]["knn_above_lm"] == r["frac_better"] for r in cell["rows"].values())
    # docs/inference.md's kNN-LM section explains its `better` share from these results once they sit beside it
    from lmlab.experiments.inference_report import _knn_note

    assert _knn_note(tmp_path / "infer-docs", 0.625) == ""
    (tmp_path / "infer-docs" / "experiments").mkdir(parents=True)
    (tmp_path / "infer-docs" / "experiments" / "knnlm-results.json").write_text(json.dumps(results))
    note = _knn_note(tmp_path / "infer-docs", 0.625)
    default = results["tokens"][next(iter(results["tokens"]))]["rows"]["paper default"]
    assert f"{default['frac_better']:.1%} are raised" in note and "(62.5% above)" in note
    assert "experiments/knnlm.md" in note and results["claims"][0]["verdict"] in note
