import pytest
import torch

from lmlab.config import ModelConfig
from lmlab.errors import LmlabError
from lmlab.infer.generate import sample_ids
from lmlab.infer.icn import cut_at_stop, navigate
from lmlab.model import Transformer
from lmlab.tokenizers.char import CharTokenizer


@pytest.fixture(scope="module")
def lm():
    tok = CharTokenizer.train("the cat sat on a mat.\nwhy? because.\n")
    torch.manual_seed(0)
    model = Transformer(ModelConfig(n_layers=2, d_model=32, n_heads=4, context=64, vocab_size=tok.vocab_size)).eval()
    return model, tok


@torch.no_grad()
def next_logp(model, ids):
    return torch.log_softmax(model(torch.tensor([ids]))[0][0, -1].float(), -1)


def test_answers_start_with_distinct_tokens_and_continue_greedily(lm):
    model, tok = lm
    answers = navigate(model, tok, "Q: why?\nA:", n_answers=4, max_new_tokens=12)
    assert len(answers) == 4
    assert len({a.first_token for a in answers}) == 4
    ids = tok.encode("Q: why?\nA:")
    # Answer 1 is plain greedy decoding (its first token is the argmax unless it would end the answer).
    greedy = list(sample_ids(model, ids, 12, temperature=0))
    assert greedy[0] != tok.eot_id and "\n" not in tok.decode(greedy[:1])  # so it may start an answer
    assert answers[0].first_token == greedy[0]
    assert answers[0].text == cut_at_stop(tok.decode(greedy), ["\n"])
    # Answer 2's first token: the best one not yet probed, in the context that lists answer 1.
    ctx_ids = tok.encode("Q: why?\nA:" + answers[0].text + "\n" + "Q: why?\nA:")
    logp = next_logp(model, ctx_ids)
    logp[answers[0].first_token] = float("-inf")
    logp[tok.eot_id] = float("-inf")
    for t in range(tok.vocab_size):
        if "\n" in tok.decode([t]):
            logp[t] = float("-inf")
    assert answers[1].first_token == int(logp.argmax())
    assert answers[1].first_logprob == pytest.approx(float(next_logp(model, ctx_ids)[answers[1].first_token]))
    for a in answers:
        assert "\n" not in a.text


def test_without_context_the_first_tokens_follow_the_ranking(lm):
    model, tok = lm
    answers = navigate(model, tok, "the", n_answers=3, max_new_tokens=4, use_context=False)
    logp = next_logp(model, tok.encode("the"))
    logp[tok.eot_id] = float("-inf")
    for t in range(tok.vocab_size):
        if "\n" in tok.decode([t]):
            logp[t] = float("-inf")
    assert [a.first_token for a in answers] == logp.topk(3).indices.tolist()


def test_bad_input(lm):
    model, tok = lm
    with pytest.raises(LmlabError, match="empty"):
        navigate(model, tok, "")
    with pytest.raises(LmlabError, match="at least one"):
        navigate(model, tok, "x", n_answers=0)
