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
