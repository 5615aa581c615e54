import json
import math

import numpy as np
import pytest
import torch

from lmlab.config import ModelConfig
from lmlab.errors import LmlabError
from lmlab.infer import knnlm
from lmlab.model import Transformer

pytest.importorskip("faiss")


def make_model(context=16, vocab=30):
    torch.manual_seed(0)
    cfg = ModelConfig(n_layers=2, d_model=32, n_heads=4, context=context, vocab_size=vocab)
    return Transformer(cfg).eval()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    model = make_model()
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 30, size=101)  # 100 targets: 6 full windows of 16 + one of 4
    store = knnlm.build(model, ids, tmp_path_factory.mktemp("s") / "store")
    return model, ids, store


def test_datastore_holds_one_entry_per_target_token(setup):
    model, ids, path = setup
    store = knnlm.Datastore.load(path)
    assert len(store) == len(ids) - 1 == json.loads((path / "meta.json").read_text())["entries"]
    assert store.keys.dtype == np.float16 and store.keys.shape == (100, 32)
    assert np.array_equal(store.vals, ids[1:])
    # Each key is the normed FFN input of the last block at the position before its value.
    keys, _ = knnlm.keys_and_logits(model, torch.from_numpy(ids[16:32][None]))
    np.testing.assert_array_equal(store.keys[16:32], keys[0].numpy().astype(np.float16))


@torch.no_grad()
def test_lambda_zero_is_exactly_the_base_model(setup):
    model, ids, path = setup
    store = knnlm.Datastore.load(path)
    x = torch.from_numpy(ids[:16][None])
    lm, knn, mix = knnlm.mixed_logprobs(model, store, x, lmbda=0.0, k=8)
    assert torch.equal(mix, torch.log_softmax(model(x)[0].float(), -1))
    assert torch.isfinite(knn).any()  # the search really ran
    base, mixed = knnlm.token_logprobs(model, store, ids, lmbda=0.0, k=8)
    assert np.array_equal(base, mixed)


@torch.no_grad()
def test_knn_distribution_and_mixture(setup):
    model, ids, path = setup
    store = knnlm.Datastore.load(path)
    x = torch.from_numpy(ids[:16][None])
    keys, _ = knnlm.keys_and_logits(model, x)
    lp = knnlm.knn_logprobs(store, keys[0], 30, k=4, temperature=1e-4)
    assert torch.allclose(lp.exp().sum(-1), torch.ones(16), atol=1e-5)
    # Queries equal to stored keys: at a tiny temperature the nearest (itself) takes all the mass.
    assert torch.equal(lp.argmax(-1), torch.from_numpy(ids[1:17]))
    lm, knn, mix = knnlm.mixed_logprobs(model, store, x, lmbda=0.25, k=8)
    expected = torch.log(0.25 * knn.exp() + 0.75 * lm.exp())
    torch.testing.assert_close(mix, expected, atol=1e-5, rtol=1e-5)
    assert torch.allclose(knnlm.mixed_logprobs(model, store, x, lmbda=1.0, k=8)[2], knn)
    # The per-target shortcut used for evaluation agrees with the full distributions.
    nb = knnlm.target_neighbours(model, store, ids[:17], k=8)
    y = torch.from_numpy(ids[1:17])
    torch.testing.assert_close(knnlm.mix_target_logprobs(nb, 0.25).float(), mix[0].gather(-1, y[:, None])[:, 0],
                               atol=1e-5, rtol=1e-5)


def test_in_store_text_gets_better_and_report_fields(setup):
    model, ids, path = setup
    store = knnlm.Datastore.load(path)
    r = knnlm.evaluate(model, store, ids, np.ones(30, dtype=np.int64), lmbda=0.5, k=4, temperature=0.1)
    assert r["knn"]["ppl"] < r["base"]["ppl"]  # memorised text: retrieval must help
    assert r["tokens"] == 100 and sum(r["hist_counts"]) == 100
    assert r["frac_better"] + r["frac_worse"] <= 1.0 and r["frac_better"] > 0.5
    assert math.isclose(r["base"]["bpb"], r["base"]["loss"] / math.log(2))


def test_ivfpq_index_and_interrupted_build(tmp_path, monkeypatch):
    model = make_model()
    ids = np.random.default_rng(1).integers(0, 30, size=3000)
    path = knnlm.build(model, ids, tmp_path / "pq", index="ivfpq")
    store = knnlm.Datastore.load(path)
    assert store.meta["index"] == "ivfpq" and (path / "index.faiss").is_file()
    dist, vals = store.search(torch.from_numpy(store.keys[:5].astype(np.float32)), k=3)
    assert dist.shape == (5, 3) and torch.all(dist[:, 0] <= dist[:, 1])

    def boom(*a, **k):  # the build dies half-way through writing the keys
        yield next(iter_entries(*a, **k))
        raise KeyboardInterrupt
    iter_entries = knnlm.iter_entries
    monkeypatch.setattr(knnlm, "iter_entries", boom)
    with pytest.raises(KeyboardInterrupt):
        knnlm.build(model, ids, tmp_path / "half")
    assert not (tmp_path / "half").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pq"]  # no temporary left either
    with pytest.raises(LmlabError, match="already exists"):
        knnlm.build(model, ids, tmp_path / "pq")


def test_generation_records_entropies(setup):
    model, ids, path = setup
    store = knnlm.Datastore.load(path)
    rec = []
    out = knnlm.generate_ids(model, store, list(ids[:5]), 20, lmbda=0.25, k=8, record=rec)
    assert len(out) == 20 == len(rec) and all(0 <= t < 30 for t in out)
    assert all(r["h_lm"] >= 0 and r["h_knn"] >= 0 for r in rec)
    greedy0 = knnlm.generate_ids(model, store, list(ids[:5]), 10, lmbda=0.0, temperature=0)
    seq = list(ids[:5])
    for _ in range(10):  # lambda 0 + greedy = the base model's greedy decoding
        seq.append(int(model(torch.tensor([seq]))[0][0, -1].argmax()))
    assert greedy0 == seq[5:]


def test_errors():
    with pytest.raises(LmlabError, match="lambda"):
        knnlm.interpolate(torch.zeros(2), torch.zeros(2), 1.5)
    with pytest.raises(LmlabError, match="not a kNN datastore"):
        knnlm.Datastore.load("/nonexistent")


def test_cli_build_and_eval(tiny_run, tmp_path, capsys):
    from lmlab.cli import main
    store = tmp_path / "store"
    assert main(["knn", "build", str(tiny_run), "--data", "tinyshakespeare", "-o", str(store),
                 "--max-tokens", "3000"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["entries"] == 3000 and built["index"] == "flat"
    assert main(["eval", str(tiny_run), "--knn", str(store), "--lmbda", "0", "--k", "16", "--max-tokens", "300"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["knn"]["loss"] == r["base"]["loss"] and r["tokens"] == 300
    assert main(["eval", str(tiny_run), "--max-tokens", "300"]) == 0
    assert json.loads(capsys.readouterr().out)["loss"] == pytest.approx(r["base"]["loss"], rel=1e-6)
    assert main(["knn", "build", str(tiny_run), "--data", "tinyshakespeare", "-o", str(store)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_lambda_zero_samples_exactly_the_plain_model(setup):
    """Sampling from the mixture at lambda 0 is the plain sampler, penalties and filters included."""
    from lmlab.infer.generate import decode_steps, sample_ids

    model, ids, path = setup
    store = knnlm.Datastore.load(path)
    prompt = [int(t) for t in ids[:6]]
    kw = dict(temperature=1.0, top_k=12, top_p=0.9, repetition_penalty=1.3, seed=5)
    plain = list(sample_ids(model, prompt, 30, **kw))  # 36 tokens > context 16: the window slides too
    assert knnlm.generate_ids(model, store, prompt, 30, lmbda=0.0, k=8, **kw) == plain
    # Batched, through the step hook: every row equals its own plain sampling.
    x = torch.from_numpy(np.stack([ids[:6], ids[10:16]]))
    mixed = torch.stack(list(decode_steps(model, x, 20, seed=2, step=knnlm.knn_step(model, store, 0.0, 8))), 1)
    assert torch.equal(mixed, torch.stack(list(decode_steps(model, x, 20, seed=2)), 1))
    # lambda > 0 really changes what is drawn.
    assert knnlm.generate_ids(model, store, prompt, 30, lmbda=0.9, k=8, knn_temperature=0.01, **kw) != plain


def test_teacher_forcing_feeds_the_given_tokens(setup):
    from lmlab.infer.generate import decode_steps

    model, ids, path = setup
    store = knnlm.Datastore.load(path)
    x, forced = torch.from_numpy(ids[None, :6]), torch.from_numpy(ids[None, 6:30])
    rec = []
    out = torch.stack(list(decode_steps(model, x, 24, step=knnlm.knn_step(model, store, 0.25, 8, record=rec),
                                        forced=forced)), 1)
    assert torch.equal(out, forced) and len(rec) == 25  # one record per call, the last after the last token
    # Within the context, the recorded LM entropy is that of the full forward pass over the true text.
    full = torch.log_softmax(model(torch.from_numpy(ids[None, :16]))[0].float(), -1)
    torch.testing.assert_close(torch.stack([r["h_lm"][0] for r in rec[:10]]), knnlm.entropy(full[0, 5:15]),
                               atol=1e-5, rtol=1e-5)


def test_raised_and_lowered_shares_on_a_hand_example():
    """Five tokens, two equidistant neighbours each: p_kNN(target) = 0, 0.5 or 1."""
    from lmlab.experiments.knnlm import breakdown

    p_lm = torch.tensor([0.2, 0.6, 0.95, 0.4, 0.05], dtype=torch.float64)
    hit = torch.tensor([[1, 1], [1, 0], [1, 1], [0, 0], [0, 1]], dtype=torch.bool)  # p_kNN: 1, .5, 1, 0, .5
    nb = {"base": p_lm.log(), "dist": torch.zeros(5, 2), "hit": hit}
    mixed = knnlm.mix_target_logprobs(nb, 0.5).numpy()
    expected = np.log(0.5 * np.array([1, 0.5, 1, 0, 0.5]) + 0.5 * p_lm.numpy())
    np.testing.assert_allclose(mixed, expected, rtol=1e-12)
    r = knnlm.per_token_report(nb["base"].numpy(), mixed, nbytes=5)
    assert (r["frac_better"], r["frac_worse"]) == (0.6, 0.4)  # raised: tokens 0, 2, 4; lowered: 1, 3
    for lmbda in (0.05, 0.5, 0.95):  # any lambda in (0, 1): raised exactly where p_kNN > p_LM
        w = breakdown(nb, {"lmbda": lmbda, "k": 2, "temperature": 1.0})
        assert w["knn_above_lm"] == 0.6 and w["nearest_holds_target"] == 0.6 and w["target_in_k"] == 0.8
        shares = [(b["share"], b["raised"]) for b in w["by_confidence"]]
        assert shares == [(0.2, 1.0), (0.4, 0.5), (0.2, 0.0), (0.2, 1.0)]  # p_LM bins (0,.1], (.1,.5], (.5,.9], (.9,1]
    w = breakdown(nb, {"lmbda": 0.5, "k": 1, "temperature": 1.0})  # the nearest neighbour alone
    assert w["knn_above_lm"] == 0.6 and w["target_in_k"] == 0.6
