"""Byte-level BPE on HF tokenizers: byte map, stock interop, exact round-trips, bytes per token, errors."""
from pathlib import Path

import numpy as np
import pytest

from lmlab import tokenizers
from lmlab.config import TokenizerConfig
from lmlab.errors import LmlabError
from lmlab.tokenizers import bpe

DATA = Path("/work/shared/data")
PROSE = sorted((DATA / "english-prose").glob("*.txt"))
SHAKESPEARE = DATA / "tinyshakespeare.txt"
needs_data = pytest.mark.skipif(not PROSE, reason="shared corpora not present")


def test_byte_map_matches_hf_bytelevel():
    from tokenizers import pre_tokenizers

    assert sorted(bpe.BYTE_TO_CHAR.values()) == sorted(pre_tokenizers.ByteLevel.alphabet())
    text = "Grüße, 世界! tab\there\r\n\x00\x7f é"
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    mapped = "".join(s for s, _ in pre.pre_tokenize_str(text))
    assert mapped == "".join(bpe.BYTE_TO_CHAR[b] for b in text.encode("utf-8"))
    assert bpe.token_str_bytes(mapped) == text.encode("utf-8")


def test_safe_pieces_cut_only_before_non_space_after_newline():
    text = "a b\n\n c\nd  \n\ne\n" * 500
    pieces = bpe.safe_pieces(text, size=100)
    assert "".join(pieces) == text and len(pieces) > 10
    for p in pieces[:-1]:
        assert p.endswith("\n")
    for p in pieces[1:]:
        assert not p[0].isspace()


@pytest.fixture(scope="module")
def tok():
    if not PROSE:
        pytest.skip("shared corpora not present")
    return bpe.train(PROSE[0].read_text(encoding="utf-8")[:250_000], vocab_size=1200)


@needs_data
def test_stock_hf_loads_and_encodes_identically(tok, tmp_path):
    from tokenizers import Tokenizer

    tok.save(tmp_path)
    stock = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    text = SHAKESPEARE.read_text(encoding="utf-8")[:300_000]  # lmlab encodes it in parallel pieces
    ids = tok.encode(text)
    assert len(text) > 4 * bpe.PIECE_CHARS
    assert stock.encode(text).ids == ids
    assert stock.decode(ids) == text
    assert tok.decode(ids) == text
    assert tok.token_nbytes()[ids].sum() == len(text.encode("utf-8"))


@needs_data
def test_subwords_never_span_words_and_digits_group_by_three(tok):
    for i in range(tok.vocab_size):
        text = tok.token_bytes(i).strip()
        assert b" " not in text and b"\n" not in text.rstrip(b"\r\n"), text
    ids = tok.encode("in 1234567 ways")
    digits = [tok.token_text(i) for i in ids if tok.token_text(i).strip().isdigit()]
    assert "".join(digits) == "1234567" and max(len(d) for d in digits) <= 3


@needs_data
def test_eot_is_special_and_literal_text_is_not(tok):
    assert tok.token_nbytes()[tok.eot_id] == 0
    ids = tok.encode("a <|endoftext|> b")
    assert tok.eot_id not in ids
    assert tok.decode(ids + [tok.eot_id]) == "a <|endoftext|> b"


def test_errors():
    with pytest.raises(LmlabError, match="empty corpus"):
        bpe.train("", 1000)
    with pytest.raises(LmlabError, match="smaller than the byte alphabet"):
        bpe.train("abc", 100)
    with pytest.raises(LmlabError, match="only encode str"):
        bpe.train("abc abc abd", 260).encode(b"bytes")


def test_config_kind_trains_and_directory_loads(tmp_path):
    text = "to be or not to be, that is the question\n" * 40
    tok = tokenizers.build(TokenizerConfig(kind="bpe", vocab_size=300), lambda: text)
    assert tok.kind == "bpe" and bpe.N_BYTES < tok.vocab_size <= 300
    assert len(tok.encode(text)) < len(text) / 3
    tok.save(tmp_path)
    again = tokenizers.load(tmp_path)
    assert type(again) is type(tok) and again.encode(text) == tok.encode(text)
    assert np.array_equal(again.token_nbytes(), tok.token_nbytes())
    with pytest.raises(LmlabError, match="not a tokenizer directory"):
        tokenizers.load(tmp_path / "nowhere")
