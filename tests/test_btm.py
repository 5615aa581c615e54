"""Branch-Train-Merge: the Bayesian ensemble (eval/ensemble.py) and parameter merging (train/btm.py)."""
import json
import math

import numpy as np
import pytest
import torch

from lmlab import checkpoint, config
from lmlab.cli import main
from lmlab.eval import ensemble, perplexity
from lmlab.model import Transformer
from lmlab.train import btm


def tiny_model(seed: int) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(config.load("tiny", ["model.vocab_size=40", "model.context=16"]).model).eval()


def test_an_ensemble_of_one_expert_is_that_expert_exactly():
    model = tiny_model(0)
    ids = np.random.default_rng(0).integers(0, 40, 50)
    nbytes = np.ones(40, dtype=np.int64)
    lp = ensemble.expert_logprobs([model], ids)
    assert np.array_equal(ensemble.mixture_logprobs(ensemble.uniform_log_prior(1), lp, 16), lp[0])
    alone, ens = perplexity.evaluate_ids(model, ids, nbytes), ensemble.evaluate_ids([model], ids, nbytes)
    assert (ens["loss"], ens["bpb"], ens["tokens"]) == (alone["loss"], alone["bpb"], alone["tokens"])
    assert ens["mean_posterior"] == [1.0]


def test_posteriors_follow_bayes_rule_by_hand():
    log_prior = np.log([0.25, 0.75])
    lp = np.log([[0.9, 0.8, 0.5], [0.1, 0.4, 0.5]])  # each expert's probability of targets 0, 1, 2
    post = np.exp(ensemble.log_posteriors(log_prior, lp, context=10))
    expected = np.array([[0.25, 0.225 / 0.3, 0.18 / 0.21], [0.75, 0.075 / 0.3, 0.03 / 0.21]])
    np.testing.assert_allclose(post, expected, rtol=1e-12)
    np.testing.assert_allclose(post.sum(axis=0), 1.0, rtol=1e-12)
    mix = np.exp(ensemble.mixture_logprobs(log_prior, lp, context=10))
    np.testing.assert_allclose(mix, (expected * np.exp(lp)).sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(mix[0], 0.25 * 0.9 + 0.75 * 0.1, rtol=1e-12)
    # a new window (context 2) starts from the prior again: its models see nothing before it
    np.testing.assert_allclose(np.exp(ensemble.log_posteriors(log_prior, lp, context=2))[:, 2], [0.25, 0.75])


def test_prior_from_dev_sequences_is_the_mean_posterior():
    a, b = tiny_model(0), tiny_model(1)
    seqs = [np.arange(10) % 40, (np.arange(17) * 7) % 40]
    assert np.exp(ensemble.prior_from_sequences([a, a], seqs)) == pytest.approx([0.5, 0.5], rel=1e-12)  # twins
    lp = [ensemble.expert_logprobs([a, b], s) for s in seqs]
    by_hand = np.mean([np.exp(l.sum(1)) / np.exp(l.sum(1)).sum() for l in lp], axis=0)
    np.testing.assert_allclose(np.exp(ensemble.prior_from_sequences([a, b], seqs)), by_hand, rtol=1e-9)
    assert [len(s) for s in ensemble.dev_sequences(np.arange(100), 3, 16)] == [17, 17, 17]


def test_averaging_copies_of_one_model_returns_it_and_weights_act_linearly():
    a, b = tiny_model(0).state_dict(), tiny_model(1).state_dict()
    same = btm.average_states([a, a], [0.3, 0.7])
    assert all(torch.equal(same[k], a[k]) for k in a)
    mixed = btm.average_states([a, b], [1.0, 3.0])  # weights are normalised
    for k in a:
        torch.testing.assert_close(mixed[k], 0.25 * a[k] + 0.75 * b[k], rtol=1e-6, atol=1e-7)


def test_seed_branch_train_then_ensemble_and_merge(tmp_path, shared_data, capsys):
    prose = shared_data / "english-prose"
    root = tmp_path / "btm"
    small = ["--set", "train.max_steps=3", "--set", "train.eval_every=0", "--set", "train.ckpt_every=0",
             "--set", "train.batch_size=4", "--set", "train.warmup_steps=0", "--set", "train.threads=1"]
    assert main(["btm", "seed", "-c", "tiny", "-o", str(root), "--set", f"data.corpus={prose}", *small]) == 0
    assert main(["btm", "branch", str(root), f"frank={prose / 'frankenstein.txt'}",
                 f"tom={prose / 'tom_sawyer.txt'}", *small]) == 0
    assert main(["btm", "train", str(root)]) == 0
    experts = btm.expert_dirs(root)
    assert [checkpoint.read_state(checkpoint.resolve(d))["step"] for d in experts.values()] == [3, 3]
    capsys.readouterr()
    data = ["--data", str(prose / "jekyll_and_hyde.txt"), "--max-tokens", "300"]
    assert main(["btm", "ensemble", str(root), *data, "--dev", str(prose / "tom_sawyer.txt"),
                 "--dev-sequences", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["experts"]) == {"frank", "tom"} and math.isclose(sum(out["prior"].values()), 1.0)
    windows = math.ceil(out["tokens"] / 64)
    for name, alone in out["experts"].items():  # a Bayes mixture never loses more than -log prior per window
        bound = alone["loss"] * out["tokens"] - windows * math.log(out["prior"][name])
        assert out["loss"] * out["tokens"] <= bound + 1e-9
    assert main(["btm", "merge", str(root), "-o", str(tmp_path / "merged"), "--dev",
                 str(prose / "tom_sawyer.txt"), "--dev-sequences", "2"]) == 0
    merged = json.loads(capsys.readouterr().out)
    assert merged["weights"] == pytest.approx(out["prior"])
    model, _, cfg = checkpoint.load_model(tmp_path / "merged")
    assert cfg.data.corpus == str(prose)  # an ordinary run, with the seed's config
    assert main(["btm", "branch", str(root), f"tom={prose}"]) == 2  # names are unique
    assert "exists already" in capsys.readouterr().err
