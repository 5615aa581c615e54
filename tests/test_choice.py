"""Multiple-choice items from held-out text and their log-likelihood scoring."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lmlab.data.corpora import Document
from lmlab.errors import LmlabError
from lmlab.eval.choice import (ChoiceItem, items_from_documents, load_items, loglikelihood, save_items,
                               score_items, split_at_eot)
from lmlab.model import Transformer
from lmlab.tokenizers.char import CharTokenizer
from lmlab.tokenizers.unicode import train_corpus

ALPHABET = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 61))  # no spaces: any position is a boundary
CYCLE = ALPHABET * 60
WORDS = " ".join(f"w{i % 97}x{i % 13}" for i in range(4000))


class Bigram(torch.nn.Module):
    """A stub LM that knows (or, sign flipped, shuns) the successor of each token in a table."""

    def __init__(self, table: torch.Tensor, context: int = 64):
        super().__init__()
        self.table = torch.nn.Parameter(table)
        self.cfg = SimpleNamespace(context=context)

    def forward(self, idx, targets=None, cache=None):
        return self.table[idx], None


def bigram_for(tok, text, sign=1.0):
    ids = tok.encode(text)
    table = torch.zeros(tok.vocab_size, tok.vocab_size)
    for a, b in zip(ids, ids[1:]):
        table[a, b] = 20.0 * sign
    return Bigram(table)


def test_items_are_true_continuations_among_distractors_from_the_same_document():
    docs = [Document("cycle", CYCLE), Document("words", WORDS)]
    items = items_from_documents(docs, n_items=40, n_choices=4, context_chars=50, continuation_chars=20, seed=3)
    assert len(items) == 40 and {it.source for it in items} == {"cycle", "words"}
    for it in items:
        text = CYCLE if it.source == "cycle" else WORDS
        assert (it.context + it.choices[it.label]) in text
        assert len(set(it.choices)) == 4 and all(ch in text for ch in it.choices)
        if it.source == "words":  # continuations start at a space and end at a word's end
            assert all(ch.startswith(" ") for ch in it.choices)
    assert 1 < len({it.label for it in items})  # the answer's position varies
    again = items_from_documents(docs, n_items=40, n_choices=4, context_chars=50, continuation_chars=20, seed=3)
    assert again == items


def test_oracle_scores_one_and_anti_oracle_scores_zero():
    tok = CharTokenizer.train(CYCLE)  # one token per character: the table sees every junction
    items = items_from_documents([CYCLE], n_items=30, n_choices=4, context_chars=40, continuation_chars=12)
    assert score_items(bigram_for(tok, CYCLE), tok, items)["acc"] == 1.0
    anti = score_items(bigram_for(tok, CYCLE, sign=-1.0), tok, items)
    assert anti["acc"] == 0.0 and anti["acc_norm"] == 0.0 and anti["chance"] == 0.25


def test_loglikelihood_matches_a_direct_computation_and_ignores_batching():
    tok = train_corpus(WORDS, 400)
    cfg = SimpleNamespace(**{k: v for k, v in vars(__import__("lmlab.config", fromlist=["ModelConfig"])
                                                    .ModelConfig()).items()})
    cfg.vocab_size, cfg.d_model, cfg.n_layers, cfg.context = tok.vocab_size, 32, 1, 48
    torch.manual_seed(0)
    model = Transformer(cfg).eval()
    reqs = [(WORDS[:90], WORDS[90:110]), ("w1x1", " w2x2"), (WORDS[5:300], " w3x3 w4x4")]
    got1 = loglikelihood(model, tok, reqs, batch_size=1)
    got3 = loglikelihood(model, tok, reqs, batch_size=3)
    assert np.allclose(got1, got3, atol=1e-4)
    for (ctx, cont), value in zip(reqs, got1):
        c, x = tok.encode(ctx), tok.encode(cont)
        full = torch.tensor([(c + x)[-(cfg.context + 1):]])
        with torch.no_grad():
            logp = F.log_softmax(model(full[:, :-1])[0].float(), -1)[0]
        want = sum(logp[len(full[0]) - 1 - len(x) + j, x[j]].item() for j in range(len(x)))
        assert value == pytest.approx(want, abs=1e-4)


def test_split_at_eot_and_item_files(tmp_path):
    tok = train_corpus(WORDS, 400)
    ids = tok.encode("first doc") + [tok.eot_id] + tok.encode("second 🌍 doc")
    assert split_at_eot(ids, tok) == ["first doc", "second 🌍 doc"]
    items = [ChoiceItem("ctx", ["a", " b"], 1, "x")]
    save_items(items, tmp_path / "items.jsonl")
    assert load_items(tmp_path / "items.jsonl") == items
    with pytest.raises(LmlabError):
        items_from_documents(["too short"], n_items=3)
