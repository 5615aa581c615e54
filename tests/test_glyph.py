"""Glyph renderer, frozen glyph matrix (PCA) and the frozen code controls."""
import numpy as np
import pytest
import torch

from lmlab.embeddings import glyph, render
from lmlab.embeddings.codes import binary_codes, gaussian_codes
from lmlab.embeddings.render import FALLBACK, GlyphRenderer, default_font_chain

DISTINCT = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?()[]{}<>+-*/=&%$#@")
DISTINCT += list("αβγδεζηθλμπσφψω") + list("жшщэюя") + list("的一是不了人我在有他")
DISTINCT += ["😀", "🌍", "th", "he", "the", "ing", "tion"]
MPL_ONLY = [p for p in default_font_chain() if "mpl-data" in p]


@pytest.fixture(scope="module")
def renderer():
    return GlyphRenderer(size=32)


def test_renderer_is_deterministic_across_instances():
    for augment in (0.0, 1.0):
        a, _ = GlyphRenderer(size=32, augment=augment).bits(DISTINCT)
        b, _ = GlyphRenderer(size=32, augment=augment).bits(DISTINCT)
        assert a.dtype == np.uint8 and set(np.unique(a)) <= {0, 1}
        assert np.array_equal(a, b)


@pytest.mark.parametrize("fonts", ["default", "matplotlib-only"])
def test_distinct_characters_get_distinct_pictures(fonts):
    r = GlyphRenderer(size=32, fonts=None if fonts == "default" else MPL_ONLY)
    bits, cov = r.bits(DISTINCT)
    assert len({row.tobytes() for row in bits}) == len(DISTINCT)
    assert cov.duplicate_rows == 0
    distinct_chars = len(set("".join(DISTINCT)))
    assert sum(cov.chars_by_font.values()) == distinct_chars


def test_without_any_font_every_char_falls_back_to_distinct_hex_boxes():
    texts = [" ", "\t", "\u00a0", "a", "\ue000", "\U0010FFFF", "\u0378"]
    bits, cov = GlyphRenderer(size=32, fonts=[]).bits(texts)
    assert cov.chars_by_font == {FALLBACK: len(texts)}
    assert cov.tokens_with_fallback == len(texts)
    assert len({row.tobytes() for row in bits}) == len(texts)


def test_blank_glyphs_fall_back_and_bytes_get_byte_boxes(renderer):
    _, used = renderer.draw(" ")
    assert used == [(" ", FALLBACK)]  # every font draws a space empty: hex box instead
    pic_e2, used = renderer.draw("<0xE2>")
    assert used == [("<0xE2>", render.BYTE_BOX)]
    pic_e3, _ = renderer.draw("<0xE3>")
    assert not np.array_equal(pic_e2 >= 128, pic_e3 >= 128)
    a, _ = renderer.draw("a")
    assert (a >= 128).any()


def test_multi_char_token_is_a_squeezed_strip(renderer):
    ab, _ = renderer.draw("ab")
    assert ab.shape == (32, 32)
    a, _ = renderer.draw("a")
    b, _ = renderer.draw("b")
    # 'a' lands in the left half, 'b' in the right half of the squeezed picture
    assert (ab[:, :16] >= 128).sum() > 0 and (ab[:, 16:] >= 128).sum() > 0
    assert not np.array_equal(ab >= 128, a >= 128)


def test_polar_snake_order_is_a_centre_out_permutation():
    order = glyph.polar_snake_order(32)
    assert sorted(order.tolist()) == list(range(1024))
    ys, xs = np.divmod(order, 32)
    dist = np.hypot(ys - 15.5, xs - 15.5)
    assert dist[:4].max() < 1.0 and np.floor(dist[-1]) == np.floor(dist.max())
    assert np.all(np.diff(np.floor(dist)) >= 0)  # rings never go back inwards


def test_pca_is_centred_orthogonal_sorted_and_order_invariant():
    rng = np.random.default_rng(0)
    bits = (rng.random((300, 64)) < 0.3).astype(np.uint8)
    scores = glyph.pca_scores(bits, 64)
    assert np.allclose(scores.mean(0), 0, atol=1e-4)
    cov = scores.T @ scores / len(scores)
    off = cov - np.diag(np.diag(cov))
    assert np.abs(off).max() < 1e-3 * np.diag(cov).max()
    assert np.all(np.diff(np.diag(cov)) <= 1e-5)  # variance is non-increasing
    perm = rng.permutation(64)
    assert np.allclose(glyph.pca_scores(bits[:, perm], 64), scores, atol=1e-4)
    reduced = glyph.pca_scores(bits, 10)
    assert np.allclose(reduced, scores[:, :10], atol=1e-5)
    padded = glyph.pca_scores(bits, 80)
    assert padded.shape == (300, 80) and np.all(padded[:, 64:] == 0)


def test_glyph_matrix_unit_rows_and_disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path))
    m, report = glyph.build_glyph_matrix(DISTINCT, 48, size=16)
    assert m.shape == (len(DISTINCT), 48)
    assert torch.allclose(m.norm(dim=1), torch.ones(len(DISTINCT)), atol=1e-5)
    assert len(list((tmp_path / "glyph").glob("*.npy"))) == 1
    again, report2 = glyph.build_glyph_matrix(DISTINCT, 48, size=16)
    assert torch.equal(m, again) and report == report2
    glyph.build_glyph_matrix(DISTINCT, 32, size=16)  # another d_model: another cache entry
    assert len(list((tmp_path / "glyph").glob("*.npy"))) == 2
    fresh, _ = glyph.build_glyph_matrix(DISTINCT, 48, size=16, use_cache=False)
    assert torch.equal(m, fresh)


def test_codes_are_unit_distinct_and_fixed():
    b = binary_codes(1000, 64)
    assert torch.allclose(b.norm(dim=1), torch.ones(1000))
    assert len({tuple(r.tolist()) for r in b}) == 1000  # every token its own code
    assert torch.equal(b, binary_codes(1000, 64))
    # repeated: coordinate j carries bit j mod n_bits (n_bits = 10 for 1000 ids)
    assert torch.equal(b[:, :10], b[:, 10:20])
    g = gaussian_codes(500, 32)
    assert torch.allclose(g.norm(dim=1), torch.ones(500)) and torch.equal(g, gaussian_codes(500, 32))


def test_every_byte_box_and_a_range_of_hex_boxes_are_distinct():
    r = GlyphRenderer(size=32, fonts=[])
    _, cov = r.bits([f"<0x{i:02X}>" for i in range(256)])
    assert cov.duplicate_rows == 0  # renderer v2 drew 48 byte pairs alike (a frame hid a digit column)
    _, cov = r.bits([chr(c) for c in range(0x300)])
    assert cov.duplicate_rows == 0
