"""Logit lens and trajectories: the last state decodes to the model's logits, the lens's bpb of
the last state is `lmlab eval`'s on a windowed text, embeddings are their own nearest tokens."""
import numpy as np
import pytest
import torch

from lmlab.analysis.lens import decode, logit_lens, residual_states, trajectory
from lmlab.eval.perplexity import evaluate_ids

from test_analysis_hooks import ARCHITECTURES, make, prompt


@pytest.mark.parametrize("arch", ["default", "gpt2-like", "llama-like", "crmsnorm", "hybrid-ssm", "meta-tokens", "frozen-embedding"])
def test_the_last_state_decodes_to_the_models_logits(arch):
    model = make(**ARCHITECTURES[arch])
    ids = prompt(model)
    logits, states = residual_states(model, ids)
    assert states.shape[0] == 3
    assert torch.equal(decode(model, states[-1]), logits)
    with torch.no_grad():
        assert torch.equal(logits, model(ids)[0])


@pytest.mark.parametrize("arch", ["default", "gpt2-like"])
def test_lens_bpb_of_the_last_state_is_eval_bpb_and_the_first_is_the_embedding_decoded(arch):
    model = make(**ARCHITECTURES[arch])
    ids = torch.randint(0, 61, (70,), generator=torch.Generator().manual_seed(4)).numpy()  # 3 windows of 24
    nbytes = np.arange(61) % 3 + 1
    lens = logit_lens(model, ids, nbytes)
    want = evaluate_ids(model, ids, nbytes)
    assert lens["tokens"] == want["tokens"] == 69 and lens["bytes"] == want["bytes"]
    assert lens["bpb"][-1] == pytest.approx(want["bpb"], rel=1e-6)
    assert lens["kl_to_last_bits"][-1] == pytest.approx(0, abs=1e-9) and lens["top1_agreement"][-1] == 1.0
    assert all(k > 0 for k in lens["kl_to_last_bits"][:-1])
    # state 0 by hand: the embeddings (+ learned positions) of each window, decoded
    nats = 0.0
    for s, lo in ((0, 0), (24, 24), (48, 69 - 24)):  # the last, shorter window sees the 24 tokens before its end
        x, y = torch.as_tensor(ids[lo:lo + 24]), torch.as_tensor(ids[lo + 1:lo + 25])
        with torch.no_grad():
            e = model.embed(x) + (model.pos_embed(torch.arange(len(x))) if model.pos_embed is not None else 0)
            losses = torch.nn.functional.cross_entropy(decode(model, e), y, reduction="none")
            nats += losses[s - lo:].sum().item()
    assert lens["bpb"][0] == pytest.approx(nats / np.log(2) / want["bytes"], rel=1e-5)


@pytest.mark.parametrize("arch", ["default", "crmsnorm", "frozen-embedding"])
def test_trajectory_embeddings_are_their_own_nearest_tokens(arch):
    model = make(**ARCHITECTURES[arch])  # RoPE: state 0 is the token embedding itself
    ids = prompt(model, batch=1, length=10)[0]
    traj = trajectory(model, ids, token_text=lambda i: f"t{i}")
    assert traj["tokens"] == [f"t{int(i)}" for i in ids]
    assert [row[0]["token"] for row in traj["nearest"][0]] == traj["tokens"]
    assert traj["cos_to_input_token"][0] == pytest.approx(1.0, abs=1e-5)
    assert np.array(traj["pca"]).shape == (3, 10, 2)
    a, b = traj["pca_variance_share"]
    assert 1 >= a >= b >= 0
    assert len(traj["lens_top1"]) == 3 and len(traj["cos_to_next_token"]) == 3


@pytest.mark.parametrize("arch", ["default", "crmsnorm"])
def test_an_untrained_tuned_lens_is_the_logit_lens_and_training_brings_every_state_nearer_the_output(arch):
    from lmlab.analysis.tuned_lens import train_tuned_lens

    model = make(**ARCHITECTURES[arch])
    ids = torch.randint(0, 61, (70,), generator=torch.Generator().manual_seed(5)).numpy()
    nbytes = np.ones(61, dtype=np.int64)
    plain = logit_lens(model, ids, nbytes)
    assert logit_lens(model, ids, nbytes, translate=train_tuned_lens(model, ids, 0)) == plain
    tuned = logit_lens(model, ids, nbytes, translate=train_tuned_lens(model, ids, 60, lr=1e-2))
    assert all(t < p for t, p in zip(tuned["kl_to_last_bits"][:-1], plain["kl_to_last_bits"][:-1]))
    assert tuned["bpb"][-1] == plain["bpb"][-1] and tuned["kl_to_last_bits"][-1] == plain["kl_to_last_bits"][-1]
    assert all(p.requires_grad for p in model.parameters())      # the model is left as it was
