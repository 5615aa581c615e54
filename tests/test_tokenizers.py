import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlab import tokenizers
from lmlab.config import TokenizerConfig
from lmlab.tokenizers import ByteTokenizer, CharTokenizer

HARD = [
    "👩‍👩‍👧‍👦 family (ZWJ)", "🇫🇷🇯🇵 flags", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 astral 𠀀", "\u0301 lone combining mark",
    "nul\x00byte", "\ud800 lone surrogate \udfff", "private use \ue000\U000f0000", "", "\r\n\t",
]
TRAINED_ON = "the quick brown fox jumps over the lazy dog. ÉÀ"


def all_tokenizers():
    return [ByteTokenizer(), CharTokenizer.train(TRAINED_ON)]


@pytest.mark.parametrize("tok", all_tokenizers(), ids=lambda t: t.kind)
@pytest.mark.parametrize("text", HARD)
def test_hard_strings_round_trip(tok, text):
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize("tok", all_tokenizers(), ids=lambda t: t.kind)
@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=60))
def test_arbitrary_strings_round_trip(tok, text):
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


def test_multilingual_files_round_trip_and_count_bytes(shared_data, tmp_path):
    files = sorted((shared_data / "multilingual").glob("*.txt"))
    assert len(files) == 18
    char = CharTokenizer.train(files[0].read_text(encoding="utf-8"))  # trained on one language only
    for tok in (ByteTokenizer(), char):
        for f in files:
            text = f.read_text(encoding="utf-8")
            ids = tok.encode(text)
            assert tok.decode(ids) == text, f.name
            assert int(tok.token_nbytes()[ids].sum()) == len(text.encode("utf-8"))


def test_char_vocab_is_frequency_ranked_with_byte_fallback():
    tok = CharTokenizer.train("aaab")
    assert tok.chars == ["a", "b"]
    assert tok.encode("ab") == [257, 258]
    assert tok.encode("é") == list("é".encode("utf-8"))  # unseen: spelled as bytes
    assert tok.vocab_size == 259 and tok.eot_id == 256


def test_save_load_through_registry(tmp_path):
    tok = CharTokenizer.train(TRAINED_ON)
    tok.save(tmp_path / "t")
    back = tokenizers.load(tmp_path / "t")
    assert back.chars == tok.chars and back.encode("fox 🦊") == tok.encode("fox 🦊")
    built = tokenizers.build(TokenizerConfig(kind="byte"), lambda: "")
    assert isinstance(built, ByteTokenizer)


def test_unknown_kind_is_a_clear_error():
    from lmlab.errors import LmlabError

    with pytest.raises(LmlabError, match="valid kinds"):
        tokenizers.build(TokenizerConfig(kind="wordpiece"), lambda: "x")
