"""The vocabulary key space against a hand computation on a tiny model, and the ICN query shift."""
import numpy as np
import pytest
import torch

from lmlab.analysis.keys import icn_shift, key_space, rank_bins, text_prompts
from lmlab.config import ModelConfig
from lmlab.errors import LmlabError
from lmlab.infer.icn import icn_context
from lmlab.model import Transformer
from lmlab.tokenizers.byte import ByteTokenizer


def tiny(vocab, seed=0, **kw):
    torch.manual_seed(seed)
    return Transformer(ModelConfig(**{**dict(vocab_size=vocab, n_layers=2, d_model=32, n_heads=4, context=24), **kw})).eval()


def hand_key_space(model, ids, top, seed):
    """The same measure with numpy loops: rank by sorting, cosines from the key vectors."""
    K = model.head_weight().detach().double().numpy()
    V = len(K)
    perm = torch.randperm(V, generator=torch.Generator().manual_seed(seed)).numpy()
    x, y = ids[:-1], ids[1:]
    logits = model(torch.tensor([x]))[0][0].detach().double().numpy()
    real, ctrl, ranks = np.zeros(V), np.zeros(V), []
    cos = lambda a, b: a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    for t in range(len(x)):
        order = sorted(range(V), key=lambda i: (-logits[t, i], i))
        for r, tok in enumerate(order):
            real[r] += cos(K[tok], K[order[0]])
            ctrl[r] += cos(K[perm[tok]], K[perm[order[0]]])
        ranks.append(order.index(y[t]))
    real, ctrl = real / len(x), ctrl / len(x)
    bins = rank_bins(V)
    ranks = np.array(ranks)
    return {"cos_to_top1": [real[lo:hi].mean() for lo, hi in bins],
            "cos_to_top1_shuffled": [ctrl[lo:hi].mean() for lo, hi in bins],
            "middle_cos": real[top:V // 2].mean(), "middle_cos_shuffled": ctrl[top:V // 2].mean(),
            "top": np.mean(ranks < top), "middle": np.mean((ranks >= top) & (ranks < V // 2)),
            "tail": np.mean(ranks >= V // 2)}


@pytest.mark.parametrize("kw", [dict(), dict(tie_embeddings=False)])
def test_key_space_equals_the_hand_computation(kw):
    model = tiny(37, **kw)
    ids = torch.randint(0, 37, (21,), generator=torch.Generator().manual_seed(3)).tolist()
    got = key_space(model, ids, top=3, seed=5)
    want = hand_key_space(model, ids, 3, 5)
    assert got["positions"] == 20 and got["bins"] == [[1, 2], [2, 4], [4, 8], [8, 16], [16, 32], [32, 37]]
    for key in ("cos_to_top1", "cos_to_top1_shuffled"):
        assert got[key] == pytest.approx(want[key], abs=1e-5)
    assert got["middle_cos"] == pytest.approx(want["middle_cos"], abs=1e-5)
    assert got["middle_cos_shuffled"] == pytest.approx(want["middle_cos_shuffled"], abs=1e-5)
    for part in ("top", "middle", "tail"):
        assert got["correct_rank_share"][part] == pytest.approx(want[part], abs=1e-12)
    assert sum(got["correct_rank_by_bin"]) == pytest.approx(1.0)


def test_rank_bins_cover_every_rank_but_the_top_once():
    for V in (2, 3, 64, 65, 1000):
        covered = [r for lo, hi in rank_bins(V) for r in range(lo, hi)]
        assert covered == list(range(1, V))


def test_rank_top_out_of_range_is_refused():
    model = tiny(37)
    with pytest.raises(LmlabError, match="--rank-top must be in"):
        key_space(model, list(range(10)), top=18)


def test_icn_shift_uses_the_query_the_model_decodes_with():
    tok = ByteTokenizer()
    model = tiny(tok.vocab_size, context=64)
    ids = tok.encode("the cat sat on the mat and the dog sat on the log")
    prompts = text_prompts(tok, ids, 2, 8)
    assert len(prompts) == 2 and all(len(tok.encode(p)) == 8 for p in prompts)
    got = icn_shift(model, tok, prompts[:1], n_answers=3, max_new_tokens=3)
    assert got["pairs"] == 1 + 2  # answer 2 sees answer 1; answer 3 sees answers 1 and 2
    # the 'before' log-probability of the first explored key, from the model's own logits
    from lmlab.infer.icn import navigate

    first = navigate(model, tok, prompts[0], n_answers=3, max_new_tokens=3)
    with torch.no_grad():
        last = lambda answers: model(torch.tensor([icn_context(tok, prompts[0], answers, 64)]))[0][0, -1]
        plain, one, two = last([]), last([first[0].text]), last([first[0].text, first[1].text])
    lp = lambda logits, t: float(torch.log_softmax(logits.float(), -1)[t])
    t0, t1 = first[0].first_token, first[1].first_token
    # pairs: (answer 2's context, key 1), (answer 3's context, key 1), (answer 3's context, key 2)
    assert got["mean_logp_before"] == pytest.approx((2 * lp(plain, t0) + lp(plain, t1)) / 3, abs=1e-5)
    assert got["mean_logp_after"] == pytest.approx((lp(one, t0) + lp(two, t0) + lp(two, t1)) / 3, abs=1e-5)
