"""SuperBPE: stage-2 trainer exactness, superword rules, stock HF interop, round-trips, errors."""
import json
import random
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lmlab.config import TokenizerConfig
from lmlab.errors import LmlabError
from lmlab import tokenizers
from lmlab.tokenizers import superbpe
from lmlab.tokenizers.bpe import N_BYTES, token_str_bytes
from lmlab.tokenizers.superbpe_trainer import apply_merges, n_words, superword_ok, train_stage2

DATA = Path("/work/shared/data")
PROSE = sorted((DATA / "english-prose").glob("*.txt"))
MULTI = sorted((DATA / "multilingual").glob("*.txt"))
needs_data = pytest.mark.skipif(not PROSE, reason="shared corpora not present")


def naive_stage2(chunks, counts, token_bytes, n_merges, allowed, min_frequency=2):
    """Recount every pair after every merge; pick max count, then the smallest (left, right)."""
    chunks = [list(c) for c in chunks]
    token_bytes = list(token_bytes)
    existing = set(b for b in token_bytes if b)
    merges = []
    while len(merges) < n_merges:
        pc = Counter()
        for c, w in zip(chunks, counts):
            for x, y in zip(c, c[1:]):
                pc[(x, y)] += w
        cands = [(-n, p) for p, n in pc.items()
                 if n >= min_frequency and allowed(token_bytes[p[0]] + token_bytes[p[1]])
                 and token_bytes[p[0]] + token_bytes[p[1]] not in existing]
        if not cands:
            break
        _, (a, b) = min(cands)
        new = len(token_bytes)
        token_bytes.append(token_bytes[a] + token_bytes[b])
        existing.add(token_bytes[-1])
        merges.append((a, b))
        chunks = [apply_merges(c, [(a, b)], new) for c in chunks]
    return merges


def flatten(chunks):
    return [i for c in chunks for i in c], [len(c) for c in chunks]


@pytest.mark.parametrize("seed", range(6))
def test_incremental_trainer_equals_naive_recount(seed):
    rng = random.Random(seed)
    alphabet = [b"a", b"b", b" ", b"c", b":", b"ab"]  # "ab" already exists: a+b must be skipped
    chunks = [[rng.randrange(len(alphabet)) for _ in range(rng.randrange(1, 25))] for _ in range(40)]
    counts = [rng.randrange(1, 4) for _ in chunks]
    allowed = lambda t: superword_ok(t, max_words=2)  # noqa: E731
    fast = train_stage2(*flatten(chunks), counts, list(alphabet), 60, max_words=2)
    slow = naive_stage2(chunks, counts, alphabet, 60, allowed)
    assert fast == slow
    assert len(fast) > 5


def test_overlapping_runs_merge_left_to_right():
    merges = train_stage2(*flatten([[0] * 6]), [3], [b"a"], 2)
    assert merges == [(0, 0), (1, 1)]  # aaaaaa -> (aa)(aa)(aa) -> (aaaa)(aa)
    assert apply_merges([0] * 6, merges, 1) == [2, 1]


def test_python_chunker_equals_stock_pre_tokenizer():
    from lmlab.tokenizers.bpe import hf_pre_tokenizer

    text = "".join(p.read_text(encoding="utf-8") for p in MULTI)
    text += "Tel: 0123456789, ½ cup, x²³, Ⅻ, ١٢٣٤٥ and ४२ \r\n\n\n  end\n12\n\r"
    stock = Counter(token_str_bytes(s).decode("utf-8")
                    for s, _ in hf_pre_tokenizer(superbpe.SUPER_PATTERN).pre_tokenize_str(text))
    assert superbpe.chunk_counts(text) == stock
    assert "½" in superbpe.numeric_chars(text) and "a" not in superbpe.numeric_chars(text)


def test_superword_rules():
    assert superword_ok(b" of the big dog")
    assert not superword_ok(b" of the big old dog")
    assert not superword_ok(b"note: this")
    assert superword_ok(b"note:this") and superword_ok(b"a :b")
    assert n_words(b"  of  the ") == 2


@pytest.fixture(scope="module")
def sbpe():
    if not PROSE:
        pytest.skip("shared corpora not present")
    text = PROSE[0].read_text(encoding="utf-8")[:250_000]
    return superbpe.train(text, vocab_size=1500, transition=800)


@needs_data
def test_superwords_only_after_transition(sbpe):
    t = sbpe.transition
    assert t == 800
    words = [n_words(sbpe.token_bytes(i)) for i in range(sbpe.vocab_size)]
    assert max(words[:t]) <= 1  # stage 1: subwords only
    assert sum(w >= 2 for w in words[t:]) > 50  # stage 2 does learn superwords
    for i in range(sbpe.vocab_size):
        tb = sbpe.token_bytes(i)
        assert words[i] <= 4 and b": " not in tb, tb
        assert not re.search(rb"[\r\n][^\r\n]", tb), tb  # never across a newline
        assert not re.search(rb"\d", tb) or re.fullmatch(rb"\d{1,3}", tb), tb


@needs_data
def test_stock_hf_reproduces_ids_and_trained_segmentation(sbpe, tmp_path):
    from tokenizers import Tokenizer

    sbpe.save(tmp_path)
    stock = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    held = PROSE[1].read_text(encoding="utf-8")[:60_000]
    ids = sbpe.encode(held)
    assert stock.encode(held).ids == ids
    assert sum(sbpe.token_nbytes()[ids]) == len(held.encode("utf-8"))

    # Stage-2 merges applied one by one, in order, to the stage-1 segmentation give the same ids.
    spec = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    t = sbpe.transition
    merges = spec["model"]["merges"]
    n1 = len(merges) - (sbpe.vocab_size - t)
    spec["model"]["merges"] = merges[:n1]
    stage1 = Tokenizer.from_str(json.dumps(spec))
    vocab = spec["model"]["vocab"]
    stage2 = [(vocab[a], vocab[b]) for a, b in merges[n1:]]
    lines = [ln for ln in held.splitlines(keepends=True) if len(ln) > 20][:150]
    for line in lines:
        first = stage1.encode(line).ids
        assert apply_merges(first, stage2, t) == sbpe.encode(line)


@needs_data
def test_fewer_tokens_than_bpe_on_held_out_prose(sbpe):
    from lmlab.tokenizers import bpe

    text = PROSE[0].read_text(encoding="utf-8")[:250_000]
    plain = bpe.train(text, vocab_size=1500)
    held = PROSE[1].read_text(encoding="utf-8")[:60_000]
    assert len(sbpe.encode(held)) < 0.95 * len(plain.encode(held))


def test_errors():
    with pytest.raises(LmlabError, match="empty corpus"):
        superbpe.train("", 1000, 500)
    with pytest.raises(LmlabError, match="smaller than the byte alphabet"):
        superbpe.train("some text", 200, 100)
    with pytest.raises(LmlabError, match="larger than vocab_size"):
        superbpe.train("some text", 1000, 2000)
    with pytest.raises(LmlabError, match="transition 100 is smaller"):
        superbpe.train("some text", 1000, 100)


def test_config_kind_trains_and_directory_loads(tmp_path):
    rng = random.Random(0)
    words = "the cat dog sat on mat log a big red of in and ran to: 12345".split()
    text = "".join(" ".join(rng.choices(words, k=12)) + ".\n" for _ in range(300))
    cfg = TokenizerConfig(kind="superbpe", vocab_size=N_BYTES + 120, transition=N_BYTES + 60)
    tok = tokenizers.build(cfg, lambda: text)
    assert tok.kind == "superbpe" and tok.vocab_size == N_BYTES + 120
    assert any(n_words(tok.token_bytes(i)) >= 2 for i in range(tok.vocab_size))
    tok.save(tmp_path)
    again = tokenizers.build(TokenizerConfig(path=str(tmp_path)), lambda: "")
    assert type(again) is type(tok) and again.transition == tok.transition
    assert again.encode(text) == tok.encode(text)
    assert np.array_equal(again.token_nbytes(), tok.token_nbytes())
    assert token_str_bytes("Ġ") == b" "


@pytest.mark.parametrize("kind", ["bpe", "superbpe"])
def test_literal_endoftext_in_corpus_never_becomes_the_special_id(kind):
    from lmlab.tokenizers import bpe

    text = "".join(f"story {i} ends here.<|endoftext|>" for i in range(200))
    tok = bpe.train(text, 400) if kind == "bpe" else superbpe.train(text, 400, 300)
    ids = tok.encode(text)
    assert tok.eot_id not in ids and tok.decode(ids) == text
    assert tok.token_nbytes()[ids].sum() == len(text.encode())
