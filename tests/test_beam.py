import itertools

import pytest
import torch

from lmlab.config import ModelConfig
from lmlab.errors import LmlabError
from lmlab.eval import diversity
from lmlab.infer import degeneracy
from lmlab.infer.beam import beam_search
from lmlab.infer.generate import sample_ids
from lmlab.model import Transformer


def make_model(vocab=30, context=16, seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(n_layers=2, d_model=32, n_heads=4, context=context, vocab_size=vocab, tie_embeddings=False)
    model = Transformer(cfg).eval()
    with torch.no_grad():  # sharpen the random model so sequences differ in likelihood
        model.lm_head.weight.mul_(50)
    return model


@torch.no_grad()
def seq_logprob(model, prompt, cont):
    ids = torch.tensor([prompt + cont])
    lp = torch.log_softmax(model(ids)[0][0].float(), -1)
    return sum(float(lp[len(prompt) - 1 + i, t]) for i, t in enumerate(cont))


@pytest.mark.parametrize("seed", [0, 1])
def test_beam_one_equals_greedy_even_past_the_context(seed):
    model = make_model(seed=seed)
    prompt = [1, 2, 3, 4, 5]
    greedy = list(sample_ids(model, prompt, 30, temperature=0))   # 35 tokens > context 16
    hyp = beam_search(model, prompt, 30, beam=1)[0]
    assert hyp.ids == greedy


def test_wide_beam_is_exhaustive_search():
    model = make_model(vocab=5)
    prompt = [0, 1]
    best = max(itertools.product(range(5), repeat=3), key=lambda c: seq_logprob(model, prompt, list(c)))
    hyps = beam_search(model, prompt, 3, beam=25)
    assert hyps[0].ids == list(best)
    assert abs(hyps[0].logprob - seq_logprob(model, prompt, list(best))) < 1e-4
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)


def test_end_of_text_finishes_a_hypothesis():
    model = make_model()
    prompt = [1, 2, 3, 4, 5]
    greedy = list(sample_ids(model, prompt, 10, temperature=0))
    i = next(i for i in range(1, 10) if greedy[i] not in greedy[:i])
    hyp = beam_search(model, prompt, 10, beam=1, eot_id=greedy[i])[0]  # call that token end-of-text
    assert hyp.ids == greedy[:i]


def test_conditional_beam_follows_the_attribute():
    model = make_model()
    prompt = [1, 2, 3]
    plain = beam_search(model, prompt, 12, beam=3)[0].ids
    banned = plain[0]

    def attribute(seqs):  # log P(ok | prefix): prefixes containing `banned` are (almost) never ok
        return torch.tensor([-50.0 if banned in s else 0.0 for s in seqs])
    cond = beam_search(model, prompt, 12, beam=3, attribute=attribute)[0]
    assert banned not in cond.ids and len(cond.ids) == 12
    assert abs(cond.logprob - seq_logprob(model, prompt, cond.ids)) < 1e-3
    with pytest.raises(LmlabError):
        beam_search(model, prompt, 5, beam=0)


def test_diversity_metrics():
    assert diversity.distinct_n(["a b c", "a b d"], 1) == 4 / 6
    assert diversity.rep_n("x y x y x y", 2) == 1 - 2 / 5
    assert diversity.is_degenerate("   \n") and diversity.is_degenerate("the cat the cat the cat the cat")
    assert not diversity.is_degenerate("a quick brown fox jumps over the lazy dog")


def test_degeneracy_classifier_learns_repetition(tmp_path):
    good = ["the quick brown fox jumps over a lazy dog while birds sing", "a ship sailed far to the north and east",
            "she opened the old letter and read it twice slowly"]
    bad = ["and the and the and the and the and the", "no no no no no no no no no no", ""]
    clf = degeneracy.DegeneracyClassifier()
    stats = clf.fit(*degeneracy.training_set(good + bad, every=8))
    assert stats["train_accuracy"] > 0.7
    lp = clf.log_prob_ok(["so so so so so so so so", "the river ran past a tall mill"])
    assert lp[0] < lp[1] and torch.all(lp <= 0)
    clf.save(tmp_path / "c.json")
    assert torch.equal(degeneracy.DegeneracyClassifier.load(tmp_path / "c.json").weight, clf.weight)
    with pytest.raises(LmlabError, match="both kinds"):
        degeneracy.DegeneracyClassifier().fit(*degeneracy.training_set(good))


def test_cli_beam_one_is_greedy_and_icn(tiny_run, capsys, tmp_path):
    from lmlab.cli import main
    args = ["generate", str(tiny_run), "--prompt", "ROMEO:", "--max-new-tokens", "30"]
    assert main(args + ["--temperature", "0"]) == 0
    greedy = capsys.readouterr().out
    assert main(args + ["--beam", "1"]) == 0
    assert capsys.readouterr().out.rstrip("\n") == greedy.rstrip("\n")
    assert main(args + ["--icn", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line[:3] for line in lines] == ["1. ", "2. ", "3. "]
    (tmp_path / "x.json").write_text("{}")  # there (a missing file is refused before this check)
    assert main(args + ["--degeneracy", str(tmp_path / "x.json")]) == 2
    assert "--beam" in capsys.readouterr().err
