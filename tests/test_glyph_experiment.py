"""The frozen-glyph experiment's data split and the `lmlab glyphs` verb."""
import json
from types import SimpleNamespace

import numpy as np

from lmlab import config
from lmlab.cli import main
from lmlab.data.corpora import Document
from lmlab.data.shards import token_splits
from lmlab.experiments.frozen_glyph import prepare_corpus

DOCS = [Document(f"{name}.txt", " ".join(f"{name}{i % 17} said {i} things" for i in range(300)))
        for name in ("alpha", "beta", "gamma")]


def test_validation_split_is_exactly_the_held_out_pieces(tmp_path, monkeypatch):
    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path / "cache"))
    args = SimpleNamespace(heldout=0.1, vocab_english=600, vocab_multilingual=600)
    folder, tok_dir, tok, val_fraction, held = prepare_corpus(args, tmp_path, "english", DOCS)
    cfg = config.load(None, [f"data.corpus={folder}", f"data.val_fraction={val_fraction}", "model.context=16"])
    _, val = token_splits(cfg, tok)
    val = np.asarray(val)
    assert val[0] == tok.eot_id  # the split starts at the boundary before the first held-out piece
    cuts = np.flatnonzero(val == tok.eot_id)
    decoded = [tok.decode(p[p != tok.eot_id]) for p in np.split(val, cuts)[1:]]
    assert decoded == [d.text for d in held]
    assert [d.name for d in held] == [d.name for d in DOCS]
    for original, piece in zip(DOCS, held):
        assert original.text.endswith(piece.text) and 0.05 < len(piece.text) / len(original.text) < 0.2


def test_glyphs_verb_writes_a_sheet_and_reports_coverage(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path / "cache"))
    corpus = tmp_path / "c.txt"
    corpus.write_text(DOCS[0].text + " Ελληνικά 中文 😀", encoding="utf-8")
    out = tmp_path / "sheet.png"
    rc = main(["glyphs", "--set", f"data.corpus={corpus}", "--set", "tokenizer.vocab_size=400",
               "--set", "model.d_model=32", "--set", "model.glyph_size=16", "--query", "a", "--query", "中",
               "--k", "3", "--count", "20", "-o", str(out)])
    assert rc == 0 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads(capsys.readouterr().out)
    assert report["coverage"]["tokens"] == 400 and sum(report["coverage"]["chars_by_font"].values()) > 90
    assert [len(v) for v in report["neighbours"].values()] == [3, 3]
    rc = main(["glyphs", "--set", f"data.corpus={corpus}", "--set", "tokenizer.vocab_size=400",
               "--query", "not-a-single-token", "-o", str(out)])
    assert rc == 2 and "not one" in capsys.readouterr().err


def test_resume_keeps_the_finished_runs_and_trains_only_the_missing_ones(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["experiment", "frozen-glyph", "--quick", "--corpora", "english", "--embeddings", "trainable,glyph",
            "--out", str(out)]
    assert main(argv + ["--seeds", "1"]) == 0
    first = json.loads((out / "results.json").read_text())
    assert main(argv + ["--seeds", "1,2", "--resume"]) == 0
    both = json.loads((out / "results.json").read_text())
    for emb in ("trainable", "glyph"):
        kept, new = both["english"]["runs"][emb]["seeds"]
        assert kept == first["english"]["runs"][emb]["seeds"][0]  # not retrained: the same record, timing included
        assert new["seed"] == 2
    assert both["timing"]["runs_done"] == 4 and both["timing"]["resumed_runs"] == 2
    assert both["timing"]["wall_s"] > first["timing"]["wall_s"]  # the earlier run's time is counted
    capsys.readouterr()
    assert main(argv + ["--seeds", "1,2", "--resume", "--threads", "1"]) == 2  # other settings: refused, one line
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "made with other settings" in err


def test_doc_fills_only_the_marked_regions_of_the_page(tmp_path):
    from lmlab.experiments import frozen_glyph_report

    out = tmp_path / "out"
    argv = ["experiment", "frozen-glyph", "--quick", "--corpora", "english", "--embeddings", "trainable,glyph,binary,"
            "gaussian", "--seeds", "1", "--out", str(out)]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    page = tmp_path / "docs" / "frozen-glyph.md"
    page.parent.mkdir()
    prose = ["# Title", "hand-written method", "hand-written conclusion"]
    regions = [f"<!-- frozen-glyph:{part} -->\nold numbers\n<!-- /frozen-glyph:{part} -->"
               for part in ("results", "details", "verdicts")]
    page.write_text("\n\n".join([prose[0], regions[0], prose[1], regions[1], regions[2], prose[2]]) + "\n")
    assert main(["experiment", "frozen-glyph", "--render-only", "--out", str(out), "--doc", str(page)]) == 0
    text = page.read_text()
    assert "old numbers" not in text and all(p in text for p in prose)
    for part, body in frozen_glyph_report.page_parts(results).items():
        assert f"<!-- frozen-glyph:{part} -->\n{body.rstrip()}\n<!-- /frozen-glyph:{part} -->" in text
    assert text.index("hand-written method") < text.index("Differences per seed") < text.index("| claim |")
    assert text.index(results["command"]) < text.index("| corpus | embedding |")  # what it ran on, first
    assert json.loads((page.parent / "frozen-glyph-results.json").read_text())["english"] == results["english"]
    page.write_text("\n\n".join([prose[0], regions[0]]) + "\n")  # a region missing: refused, page unchanged
    assert main(["experiment", "frozen-glyph", "--render-only", "--out", str(out), "--doc", str(page)]) == 2
    assert "old numbers" in page.read_text()


def test_provenance_says_what_the_numbers_were_measured_on():
    from lmlab.experiments.frozen_glyph_report import provenance

    cpu = {"cpu": "x86_64", "cpu_model": "AMD EPYC", "cpus": 2, "cpu_threads": 1, "cuda": None, "torch": "2.13.0",
           "device": "cpu"}
    timing = {"wall_s": 5400.0, "load_1min_start": 1.0, "load_1min_end": 2.0, "runs_done": 24}
    line = provenance({"command": "lmlab experiment frozen-glyph", "machine": cpu, "settings": {"threads": 1},
                       "timing": timing})
    assert line.startswith("Measured by `lmlab experiment frozen-glyph` on the CPU (AMD EPYC, 2 cores) with PyTorch "
                           "2.13.0, 1 torch thread(s); its 24 training runs with their evaluation took 90.0 minutes")
    gpu = {**cpu, "cuda": "NVIDIA H200", "device": "cuda"}
    line = provenance({"command": "c", "machine": gpu, "settings": {"threads": 0}})
    assert "on NVIDIA H200 with PyTorch 2.13.0" in line and "kernel launches" in line and "thread" not in line
    assert "do not record the machine" in provenance({"english": {}})  # results from before it was recorded
