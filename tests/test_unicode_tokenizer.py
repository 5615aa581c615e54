"""Unicode-centric tokenizer: exact round trips, no <unk>, the paper's BMP layout."""
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlab import config, tokenizers
from lmlab.errors import LmlabError
from lmlab.tokenizers.unicode import BMP_SIZE, UnicodeTokenizer, train_bmp, train_corpus

DATA = Path("/work/shared/data")
MULTI = sorted((DATA / "multilingual").glob("*.txt"))
ENGLISH = ("It was on a dreary night of November that I beheld the accomplishment of my toils. "
           "With an anxiety that almost amounted to agony, I collected the instruments of life around me. ") * 20

CORPUS_TOK = train_corpus(ENGLISH, 400)
BMP_TOK = train_bmp(ENGLISH)
# Any code point, lone surrogates included (Python strings may hold them).
ANY_TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, blacklist_categories=()))


@settings(max_examples=150, deadline=None)
@given(ANY_TEXT)
def test_round_trip_any_string(text):
    for tok in (CORPUS_TOK, BMP_TOK):
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert all(0 <= i < tok.vocab_size for i in ids)
        # every byte of the text is accounted for by exactly one token (bits/byte stays honest)
        assert int(tok.token_nbytes()[ids].sum()) == len(text.encode("utf-8", "surrogatepass"))


@pytest.mark.skipif(not MULTI, reason="shared multilingual corpus not present")
def test_round_trip_every_multilingual_file():
    texts = [p.read_text(encoding="utf-8") for p in MULTI]
    multi_tok = train_corpus("".join(texts), 3000)
    for tok in (multi_tok, CORPUS_TOK, BMP_TOK):  # CORPUS_TOK knows only English: byte fallback
        for path, text in zip(MULTI, texts):
            assert tok.decode(tok.encode(text)) == text, (tok.kind, path.name)
    # the multilingual tokenizer compresses its own corpus: fewer tokens than code points
    assert sum(len(multi_tok.encode(t)) for t in texts) < 0.8 * sum(len(t) for t in texts)


def test_nothing_is_unk_emoji_astral_private_use():
    text = "👩‍👩‍👧‍👦 🏳️‍🌈 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \U0010FFFD \ue123 \U000F0000 𓂀"
    for tok in (CORPUS_TOK, BMP_TOK):
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert "<unk>" not in "".join(tok.token_text(i) for i in range(min(tok.vocab_size, 600)))


def test_bmp_layout_matches_the_paper():
    tok = BMP_TOK
    assert tok.vocab_size == BMP_SIZE
    for ch in "Aé中Ж한\u0000\uFFFD":
        assert tok.encode(ch) == [ord(ch)]
        assert tok.token_text(ord(ch)) == ch
    special_ids = {tok.eot_id} | set(tok.encode("\ue000"))  # private use -> byte fallback ids
    assert all(0xD800 <= i <= 0xFFFF and not (0xF900 <= i < 0xFFFF) for i in special_ids)
    assert tok.token_text(tok.eot_id) == "<|endoftext|>"
    assert len(tok.ngrams) > 0 and all(0xD800 <= tok._ids[g] < 0xF900 for g in tok.ngrams[:50])
    bigger = train_bmp(ENGLISH, BMP_SIZE + 10)
    assert bigger.vocab_size == BMP_SIZE + 10
    with pytest.raises(LmlabError):
        train_bmp(ENGLISH, 1000)


def test_ngrams_are_in_word_and_shorten_text():
    assert CORPUS_TOK.ngrams, "no n-grams learned"
    for g in CORPUS_TOK.ngrams:
        assert 2 <= len(g) <= 5 and all(c.isalnum() for c in g), g
    ids = CORPUS_TOK.encode(ENGLISH)
    assert len(ids) < 0.6 * len(ENGLISH)
    # a word is cut into the fewest tokens: "the" is one token when "the" is an n-gram
    if "the" in CORPUS_TOK.ngrams:
        assert len(CORPUS_TOK.encode("the")) == 1
    assert CORPUS_TOK.encode(" ") == [CORPUS_TOK._ids[" "]]  # spaces are never merged


def test_save_load_and_registry(tmp_path):
    for kind, vocab in (("unicode", 500), ("unicode-bmp", 0)):
        cfg = config.load(None, [f"tokenizer.kind={kind}", f"tokenizer.vocab_size={vocab}"])
        tok = tokenizers.build(cfg.tokenizer, lambda: ENGLISH)
        assert tok.kind == kind
        tok.save(tmp_path / kind)
        back = tokenizers.load(tmp_path / kind)
        assert isinstance(back, UnicodeTokenizer) and back.vocab_size == tok.vocab_size
        sample = "Agony 🌍 of my toils\ue000!"
        assert back.encode(sample) == tok.encode(sample)
        assert np.array_equal(back.token_nbytes(), tok.token_nbytes())


def test_vocab_too_small_is_a_clear_error():
    with pytest.raises(LmlabError, match="too small"):
        train_corpus(ENGLISH, 300)
