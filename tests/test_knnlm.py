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
