"""decode(encode(s)) == s for BPE and SuperBPE: every multilingual file and arbitrary strings."""
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from lmlab.tokenizers import bpe, superbpe

DATA = Path("/work/shared/data")
PROSE = sorted((DATA / "english-prose").glob("*.txt"))
MULTI = sorted((DATA / "multilingual").glob("*.txt"))
pytestmark = pytest.mark.skipif(not PROSE, reason="shared corpora not present")

# Arbitrary code points, lone surrogates included, mixed with pieces the pre-tokenizers care about.
STRINGS = st.lists(st.one_of(
    st.characters(exclude_categories=()),
    st.sampled_from(["\ud800", "\udfff", " ", "  ", "\n", "\r\n", ": ", "12345", " the", "<|endoftext|>"]),
)).map("".join)


@pytest.fixture(scope="module", params=["bpe", "superbpe"])
def tok(request):
    text = PROSE[0].read_text(encoding="utf-8")[:250_000]
    if request.param == "bpe":
        return bpe.train(text, vocab_size=1200)
    return superbpe.train(text, vocab_size=1200, transition=700)


@pytest.mark.parametrize("path", MULTI, ids=lambda p: p.stem)
def test_round_trip_multilingual(tok, path):
    text = path.read_text(encoding="utf-8")
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=120, deadline=None)
@given(s=STRINGS)
def test_round_trip_arbitrary_strings(tok, s):
    ids = tok.encode(s)
    assert tok.decode(ids) == s
    assert tok.token_nbytes()[ids].sum() == len(s.encode("utf-8", "surrogatepass"))
