"""Noise, WER and the denoising objective (data/noise.py, eval/wer.py, train/objectives.py)."""
import numpy as np
import pytest
import torch

from lmlab import config
from lmlab.data.noise import Noise, parse_spec
from lmlab.errors import LmlabError
from lmlab.eval.wer import edit_distance, wer
from lmlab.tokenizers import CharTokenizer
from lmlab.train import objectives

TEXT = ("the night was cold and the knight rode to the light of the town where a right old man sat by the fire "
        "and told of what he saw in the white hills at the height of the fight ") * 20


def test_edit_distance_counts_substitutions_deletions_and_insertions():
    assert edit_distance("a b c".split(), "a x c".split()) == 1
    assert edit_distance("a b c".split(), []) == 3
    assert edit_distance([], "a b".split()) == 2
    assert edit_distance("a b c d".split(), "b c d e".split()) == 2
    assert wer(["a b c d", "e f"], ["a b c d", "e"]) == 1 / 6  # total edits over total reference words


def test_noise_spec_errors_name_the_problem():
    assert parse_spec("sub=0.1, del=0.05") == {"sub": 0.1, "del": 0.05}
    with pytest.raises(LmlabError, match="unknown kind 'swap'"):
        parse_spec("swap=0.1")
    with pytest.raises(LmlabError, match="must be in"):
        parse_spec("del=2")
    with pytest.raises(LmlabError, match="needs a rate"):
        parse_spec("del")


def test_each_noise_kind_does_what_it_says():
    words = "the cold knight rode to town".split()
    rng = np.random.default_rng(0)
    assert Noise("del=1")(" ".join(words), rng) == ""
    inserted = Noise("ins=1").words(words, rng)
    assert [ws[0] for ws in inserted] == words and all(len(ws) == 2 for ws in inserted)
    misspelt = Noise("char=1").words(words, rng)
    for w, (m,) in zip(words, misspelt):
        assert m != w or len(set(w)) < len(w)  # a swap of equal letters can leave the word as it was
        assert abs(len(m) - len(w)) <= 1
    assert Noise("sub=0,del=0")(" ".join(words), rng) == " ".join(words)


def test_substitutions_sound_alike_and_keep_case_and_punctuation():
    noise = Noise("sub=1", ["night", "knight", "light", "cold", "zebra"])
    assert set(noise.lexicon.neighbours("night")) == {"knight", "light"}
    rng = np.random.default_rng(0)
    out = noise("Night, cold", rng).split()
    assert out[0] in ("Knight,", "Light,")
    assert out[1] == "cold"  # no vocabulary word within one phoneme of it


def test_noise_is_seeded():
    noise = Noise("sub=0.2,del=0.1,ins=0.1,char=0.1", TEXT.split())
    a = noise(TEXT[:300], np.random.default_rng([1, 2]))
    assert a == noise(TEXT[:300], np.random.default_rng([1, 2]))
    assert a != noise(TEXT[:300], np.random.default_rng([1, 3]))


def test_denoise_batch_puts_the_loss_on_the_clean_target_only():
    tok = CharTokenizer.train(TEXT)
    ids = np.asarray(tok.encode(TEXT))
    cfg = config.load("tiny", ["train.objective=denoise", "model.context=96", "train.noise=del=0.3,char=0.2"])
    cfg.model.vocab_size = tok.vocab_size + 1
    sep = tok.vocab_size
    x, y = objectives.draw(cfg, ids, tok, step=5)
    x2, y2 = objectives.draw(cfg, ids, tok, step=5)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    changed = 0
    for row_x, row_y in zip(x, y):
        first = int((row_x == sep).nonzero()[0])
        assert (row_y[:first] == -1).all()  # nothing of the noisy source is predicted
        target = row_y[first:][row_y[first:] >= 0].tolist()
        assert target[-1] == tok.eot_id
        clean = tok.decode(target[:-1])
        assert clean and clean in " ".join(TEXT.split())  # the target is the clean text, whole words
        source = tok.decode(row_x[:first].tolist())
        changed += source != clean  # (0.7 * 0.8) ** 8 words: 1% of rows come out clean
        assert torch.equal(row_x[first + 1:first + 1 + len(target) - 1], torch.tensor(target[:-1]))
    assert changed >= 6
