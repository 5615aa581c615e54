"""`lmlab experiment superbpe` end to end on a tiny corpus: sweep, two LMs, report and PNG."""
import json
import random

from lmlab.cli import main
from lmlab.experiments.superbpe import split_document


def test_split_document_cuts_at_a_line_start():
    text = "".join(f"line {i}\n" for i in range(100))
    head, tail = split_document(text, 0.15)
    assert head + tail == text and head.endswith("\n")
    assert 0.1 < len(tail) / len(text) < 0.16


def test_experiment_end_to_end(tmp_path):
    rng = random.Random(0)
    words = "the sun rose over a quiet sea and the old ship sailed on: 42 days".split()
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("a.txt", "b.txt"):
        (corpus / name).write_text("".join(" ".join(rng.choices(words, k=9)) + ".\n" for _ in range(300)))
    out, doc = tmp_path / "out", tmp_path / "docs" / "superbpe.md"
    assert main(["experiment", "superbpe", "--corpus", str(corpus), "--vocabs", "320", "--transitions", "0.9",
                 "--lm-vocab", "320", "--lm-steps", "3", "--lm-batch", "2", "--lm-context", "16",
                 "--lm-layers", "1", "--lm-d", "16", "--device", "cpu", "--out", str(out), "--doc", str(doc)]) == 0
    results = json.loads((out / "results.json").read_text())
    rows = results["sweeps"][0]["rows"]
    # BPE runs out of pairs seen twice short of 320 ids; SuperBPE is matched to what BPE reached
    vocab = rows[0]["vocab_reached"]
    t = round(vocab * 0.9)
    assert vocab < 320 and [r["kind"] for r in rows] == ["bpe", "superbpe"] and rows[1]["transition"] == t
    lm = results["lm"][0]["models"]  # the LMs use the sweep's best t for the requested 320 ids
    assert set(lm) == {"bpe", f"superbpe t={t}"}
    assert lm["bpe"]["held_out_bytes"] == lm[f"superbpe t={t}"]["held_out_bytes"] == results["held_out_bytes"]
    text = doc.read_text()
    assert f"| {vocab} (of 320 requested) | SuperBPE | {t} |" in text and "## Findings" in text
    assert doc.with_suffix(".png").stat().st_size > 1000


def test_sweep_is_vocabulary_matched_where_bpe_runs_out_of_pairs():
    from lmlab.experiments.superbpe import sweep

    rng = random.Random(0)
    words = "the sun rose over a quiet sea and the old ship sailed on".split()
    text = "".join(" ".join(rng.choices(words, k=9)) + ".\n" for _ in range(200))
    rows = sweep(text, text[:2000], [2000, 3000], [0.9, 0.5], log=lambda *a: None)
    bpe, sup, low = rows  # 3000 asks for no more than 2000 got: the same comparison, not repeated
    assert bpe["vocab_requested"] == 2000 and bpe["vocab_reached"] < 2000
    assert sup["vocab"] == bpe["vocab"] == bpe["vocab_reached"] and sup["transition"] == round(bpe["vocab"] * 0.9)
    assert sup["vocab_reached"] <= bpe["vocab_reached"]
    # a t below the 256 byte ids + 1 is raised to it: stage 1 has to learn at least one merge
    assert round(bpe["vocab"] * 0.5) < 257 and low["transition"] == 257
