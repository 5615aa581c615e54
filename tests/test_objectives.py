"""Masked-LM objective and bidirectional mixers (train/objectives.py, eval/mlm.py)."""
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lmlab import config
from lmlab.data.masking import choose_positions
from lmlab.errors import LmlabError
from lmlab.model import Transformer
from lmlab.train import objectives

VOCAB = 50


def small_model(pattern: str, causal: bool, seed: int = 0) -> Transformer:
    cfg = config.ModelConfig(n_layers=2, d_model=32, n_heads=4, context=48, vocab_size=VOCAB, pattern=pattern,
                             causal=causal, ssm_head_dim=16, ssm_state=8, lmu_order=8)
    torch.manual_seed(seed)
    return Transformer(cfg).eval()


@pytest.mark.parametrize("pattern", ["AF", "MF", "LF", "AMF LF"])
def test_bidirectional_output_sees_later_tokens_and_causal_does_not(pattern):
    ids = torch.randint(0, VOCAB, (2, 40), generator=torch.Generator().manual_seed(1))
    later = ids.clone()
    later[:, 30] = (later[:, 30] + 1) % VOCAB
    with torch.no_grad():
        causal = small_model(pattern, causal=True)
        c0, c1 = causal(ids)[0], causal(later)[0]
        bi = small_model(pattern, causal=False)
        b0, b1 = bi(ids)[0], bi(later)[0]
    if "L" in pattern:  # the LMU's FFT convolution mixes every position at rounding level
        torch.testing.assert_close(c1[:, :30], c0[:, :30], atol=1e-5, rtol=0)
    else:
        assert torch.equal(c1[:, :30], c0[:, :30])
    moved = (b1[:, :30] - b0[:, :30]).abs().amax(-1)
    assert moved.min() > 0 and moved[:, 25:].min() > 1e-4  # the SSM's influence decays with distance


@pytest.mark.parametrize("pattern", ["AF", "MF", "LF"])
def test_bidirectional_mixers_refuse_incremental_decoding(pattern):
    model = small_model(pattern, causal=False)
    with pytest.raises(ValueError, match="cannot decode incrementally"):
        model(torch.zeros(1, 3, dtype=torch.long), cache=model.new_cache())


def test_reversed_input_through_a_bidirectional_ssm_with_swapped_directions_is_reversed():
    # the reverse scan is the forward scan on the flipped sequence: swap the two directions'
    # parameters, flip the input, and the mixer's output is the flipped original
    from lmlab.model.mixers.ssm import SelectiveSSM

    cfg = config.ModelConfig(d_model=32, causal=False, ssm_head_dim=16, ssm_state=8)
    torch.manual_seed(0)
    ssm = SelectiveSSM(cfg)
    x = torch.randn(2, 20, 32)
    with torch.no_grad():
        y = ssm(x)
        for name in ("dt_bias", "A_log", "D"):
            a, b = getattr(ssm, name).clone(), getattr(ssm.rev, name).clone()
            getattr(ssm, name).copy_(b), getattr(ssm.rev, name).copy_(a)
        w, b = ssm.conv.weight.clone(), ssm.conv.bias.clone()
        ssm.conv.weight.copy_(ssm.rev.conv.weight), ssm.conv.bias.copy_(ssm.rev.conv.bias)
        ssm.rev.conv.weight.copy_(w), ssm.rev.conv.bias.copy_(b)
        y_flipped = ssm(x.flip(1))
    torch.testing.assert_close(y_flipped.flip(1), y, atol=1e-5, rtol=1e-5)


def mlm_cfg(*extra):
    return config.load("tiny", ["train.objective=mlm", "model.causal=false", *extra])


class _Tok:
    vocab_size = VOCAB - 1


def test_masking_chooses_exactly_the_rate_and_replaces_80_10_10():
    rng = np.random.default_rng(0)
    x = torch.randint(0, VOCAB - 1, (64, 200), generator=torch.Generator().manual_seed(0))
    inputs, targets = objectives.mask_batch(x, rng, 0.15, 1.0, VOCAB - 1)
    chosen = targets >= 0
    assert (chosen.sum(1) == 30).all()  # round(0.15 * 200) in every row
    assert torch.equal(targets[chosen], x[chosen])
    assert torch.equal(inputs[~chosen], x[~chosen])  # unchosen positions are never touched
    masked = (inputs == VOCAB - 1)
    assert not (masked & ~chosen).any()
    n = int(chosen.sum())
    frac_mask = int(masked.sum()) / n
    kept = int((chosen & (inputs == x)).sum()) / n  # the 10% kept (+ random draws equal to the original)
    assert 0.77 < frac_mask < 0.83 and 0.08 < kept < 0.14


def test_span_masking_makes_runs_of_the_mean_length():
    rng = np.random.default_rng(0)
    chosen = choose_positions(rng, 200, 128, 0.15, mean_span=3.0)
    assert (chosen.sum(1) == 19).all()
    runs = [len(r) for row in chosen for r in "".join("1" if c else "0" for c in row).split("0") if r]
    assert 2.0 < np.mean(runs) < 4.0  # single-token masking would give ~1.1
    single = choose_positions(np.random.default_rng(0), 200, 128, 0.15, mean_span=1.0)
    runs1 = [len(r) for row in single for r in "".join("1" if c else "0" for c in row).split("0") if r]
    assert np.mean(runs1) < 1.3


def test_mlm_draw_is_seeded_by_seed_and_step():
    cfg = mlm_cfg()
    cfg.model.vocab_size = VOCAB
    ids = np.random.default_rng(0).integers(0, VOCAB - 1, 5000)
    a = objectives.draw(cfg, ids, _Tok(), step=7)
    b = objectives.draw(cfg, ids, _Tok(), step=7)
    c = objectives.draw(cfg, ids, _Tok(), step=8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    cfg.model.vocab_size = VOCAB - 1  # no room for [MASK]
    with pytest.raises(LmlabError, match="one extra id"):
        objectives.draw(cfg, ids, _Tok(), step=7)


def test_loss_is_over_the_masked_positions_only():
    cfg = mlm_cfg()
    cfg.model.vocab_size = VOCAB
    ids = np.random.default_rng(0).integers(0, VOCAB - 1, 5000)
    x, y = objectives.draw(cfg, ids, _Tok(), step=3)
    model = small_model("AF", causal=False)
    logits, loss = model(x, y)
    keep = y >= 0
    by_hand = F.cross_entropy(logits[keep].float(), y[keep])
    torch.testing.assert_close(loss, by_hand, atol=0, rtol=1e-6)
    # the logits at unmasked positions do not reach the loss: their gradient is exactly zero
    logits = logits.detach().requires_grad_()
    F.cross_entropy(logits.view(-1, VOCAB), y.view(-1), ignore_index=-1).backward()
    assert logits.grad[~keep].abs().max() == 0 and logits.grad[keep].abs().max() > 0
    assert not torch.allclose(loss, F.cross_entropy(logits.view(-1, VOCAB), x.view(-1)))


def test_unknown_objective_and_bad_rates_are_one_line_errors():
    for bad, match in (("train.objective=xlm", "must be one of clm, mlm, denoise"), ("train.mask_rate=0", "mask_rate"),
                       ("train.mask_span=0.5", "mask_span")):
        with pytest.raises(LmlabError, match=match):
            objectives.reserved_ids(config.load("tiny", [bad]).train)


def test_pseudo_log_likelihood_masks_each_position_alone():
    from lmlab.eval.mlm import pseudo_log_likelihoods

    model = small_model("AF", causal=False)
    window = torch.randint(0, VOCAB - 1, (20,))
    got = pseudo_log_likelihoods(model, window, VOCAB - 1, rows=7)  # rows split the window unevenly
    for t in (0, 6, 7, 19):
        x = window.clone()
        x[t] = VOCAB - 1
        with torch.no_grad():
            want = F.log_softmax(model(x[None])[0][0, t].float(), -1)[window[t]]
        torch.testing.assert_close(got[t], want, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def mlm_run(tmp_path_factory):
    from lmlab.train.loop import train

    out = tmp_path_factory.mktemp("mlm-run")
    train(mlm_cfg("train.max_steps=12", "train.eval_every=6"), out, progress=False, echo=lambda *a: None)
    return out


def test_mlm_run_reserves_mask_and_logs_masked_validation(mlm_run):
    from lmlab.checkpoint import load_model
    from lmlab.train.metrics import read

    model, tokenizer, cfg = load_model(mlm_run)
    assert cfg.model.vocab_size == tokenizer.vocab_size + 1
    assert "val_masked_acc" in [r for r in read(mlm_run) if "val_loss" in r][-1]


def test_eval_of_an_mlm_run_reports_masked_accuracy_and_pseudo_perplexity(mlm_run):
    import json

    done = subprocess.run([sys.executable, "-m", "lmlab.cli", "eval", str(mlm_run), "--max-tokens", "300"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["objective"] == "mlm" and 0 <= out["masked_acc"] <= 1
    assert out["pseudo_tokens"] == 256 and out["pseudo_ppl"] > 1  # 4 windows of 64 of the first 300 tokens


@pytest.mark.parametrize("verb", [["generate", "RUN", "--prompt", "To"], ["bench", "generate", "RUN"],
                                  ["serve", "RUN", "--port", "0"], ["rescore", "RUN", "--nbest", "-", "--weight", "1"]])
def test_generation_on_a_masked_lm_is_a_one_line_error(mlm_run, verb):
    args = [str(mlm_run) if a == "RUN" else a for a in verb]
    done = subprocess.run([sys.executable, "-m", "lmlab.cli", *args], capture_output=True, text=True,
                          input='{"id": 1, "hypotheses": [{"text": "a", "score": 0}]}\n')
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: generation needs a causal model (this one was trained with "
                                   "model.causal = false or train.objective = \"mlm\")")


def test_a_bidirectional_model_refuses_hf_export(mlm_run, tmp_path):
    done = subprocess.run([sys.executable, "-m", "lmlab.cli", "export", str(mlm_run), "--to", "hf", str(tmp_path / "hf")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "model.causal=False has no Hugging Face equivalent" in done.stderr
    assert not (tmp_path / "hf").exists()


def test_mlm_resume_after_sigkill_repeats_the_uninterrupted_losses(tmp_path, monkeypatch):
    import test_train

    monkeypatch.setattr(test_train, "RESUME_SETTINGS", test_train.RESUME_SETTINGS + [
        "train.objective=mlm", "model.causal=false", "train.mask_span=2.5", "model.pattern=AMF",
        "model.d_model=64", "model.context=64"])  # the SSM mixer is slow enough per step at this size
    test_train.test_resume_after_sigkill_repeats_the_uninterrupted_losses(tmp_path, "float32")
