"""The amino-acid tokenizer and the protein corpus parser."""
from hypothesis import given, settings, strategies as st

from lmlab import config, tokenizers
from lmlab.data.proteins import parse_fasta
from lmlab.tokenizers.amino import AminoTokenizer, RESIDUES


def test_every_residue_and_ambiguity_code_is_one_token():
    tok = AminoTokenizer()
    assert len(RESIDUES) == 26 and set("BZXUOJ") <= set(RESIDUES)
    assert tok.encode("ACDEFGHIKLMNPQRSTVWYBZXUOJ") == list(range(1, 27))
    assert tok.eot_id == 0 and tok.token_text(0) == "<|endoftext|>"
    assert tok.token_nbytes()[0] == 0 and tok.token_nbytes()[1:].tolist() == [1] * (tok.vocab_size - 1)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_string_round_trips(text):
    tok = AminoTokenizer()
    assert tok.decode(tok.encode(text)) == text


def test_registered_kind_saves_and_loads(tmp_path):
    cfg = config.TokenizerConfig(kind="amino")
    tok = tokenizers.build(cfg, lambda: "MKV")
    tok.save(tmp_path)
    again = tokenizers.load(tmp_path)
    assert again.kind == "amino" and again.encode("MKV*x") == tok.encode("MKV*x")
    assert "amino" in tokenizers.kinds()


def test_fasta_records_become_documents_without_the_stop():
    docs = parse_fasta(">p1 # 1 # 9\nMKV\nLLA*\n>p2\nGG\n\n>p3 desc\nWY*\n")
    assert [(d.name, d.text) for d in docs] == [("p1", "MKVLLA"), ("p2", "GG"), ("p3", "WY")]


def test_a_fasta_file_is_one_document_per_sequence(tmp_path):
    from lmlab.data.corpora import read_corpus

    path = tmp_path / "few.faa"
    path.write_text(">a one\nMKV\nLL*\n>b\nWW\n")
    assert [(d.name, d.text) for d in read_corpus(str(path))] == [("a", "MKVLL"), ("b", "WW")]
