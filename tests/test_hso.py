"""Hidden-state optimisation (infer/hso.py): zero steps is the plain model, the weights never change,
and the optimised cache fits the seen text better."""
import json

import numpy as np
import pytest
import torch

from lmlab import config
from lmlab.cli import main
from lmlab.infer import hso
from lmlab.infer.generate import decode_steps
from lmlab.model.transformer import Transformer


def tiny_model(positions="rope", seed=0, **kw):
    cfg = config.load("tiny").model
    cfg.vocab_size, cfg.positions, cfg.context = 40, positions, 32
    for k, v in kw.items():
        setattr(cfg, k, v)
    torch.manual_seed(seed)
    model = Transformer(cfg)
    model.eval()
    return model


def ids(n, seed=1, vocab=40):
    return torch.randint(0, vocab, (1, n), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("positions", ["rope", "learned"])
def test_zero_steps_samples_and_logits_are_the_plain_models(positions):
    model = tiny_model(positions)
    prompt = ids(10)
    for n_new in (8, 40):  # 40 runs past the context of 32: the window is re-encoded through prefill too
        plain = [t.clone() for t in decode_steps(model, prompt, n_new, temperature=1.0, seed=3)]
        zero = [t.clone() for t in decode_steps(model, prompt, n_new, temperature=1.0, seed=3,
                                                prefill=hso.prefill(hso.Setting(0, 1.0)))]
        assert torch.equal(torch.stack(plain), torch.stack(zero))
    seen, new = ids(12, seed=2), ids(6, seed=3)
    with torch.no_grad():
        full = model(torch.cat([seen, new], 1))[0][:, 11:]
    assert torch.equal(hso.continue_logits(model, seen, new, hso.Setting(0, 1.0)), full)


def test_zero_steps_chunked_losses_are_plain_windows_bit_for_bit():
    model = tiny_model()
    text = ids(100, seed=4)[0].numpy()
    got = hso.token_losses(model, text, 8, hso.Setting(0, 1.0), batch_size=1)["losses"]
    want = np.zeros(99)
    for lo, a, c in hso.chunk_windows(99, 8, 32):
        assert a + c - 1 - lo <= 32 and (lo == 0 or a + c - 1 - lo == 32)  # full windows once the text allows
        with torch.no_grad():
            logits = model(torch.from_numpy(text[lo:a + c - 1])[None])[0][:, a - 1 - lo:]
        want[a - 1:a - 1 + c] = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), torch.from_numpy(text[a:a + c])[None], reduction="none")[0].double().numpy()
    assert np.array_equal(got, want)


@pytest.mark.parametrize("positions", ["rope", "learned"])
def test_a_vanishing_step_reads_the_cache_as_the_plain_model(positions):
    # the optimised path (cache filled from the free K/V, last seen token fed afresh) at lr ~ 0
    # must give the plain logits: positions, RoPE and the layer order of the cache are right
    model = tiny_model(positions, n_kv_heads=2)
    seen, new = ids(15, seed=5), ids(7, seed=6)
    plain = hso.continue_logits(model, seen, new, hso.Setting(0, 1.0))
    tiny_step = hso.continue_logits(model, seen, new, hso.Setting(2, 1e-30))
    torch.testing.assert_close(tiny_step, plain, rtol=0, atol=1e-5)


def test_weights_unchanged_and_without_grad():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    setting = hso.Setting(3, 5.0)
    hso.continue_logits(model, ids(12), ids(4, seed=2), setting)
    list(decode_steps(model, ids(6), 5, prefill=hso.prefill(setting)))
    hso.choice_loglikelihoods(model, ids(10)[0].tolist(), [[1, 2], [3, 4, 5]], setting)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())


def test_optimised_cache_lowers_the_seen_text_loss_and_changes_predictions():
    model = tiny_model(seed=2)
    seen = ids(24, seed=7)
    kv, losses = hso.optimise(model, seen, hso.Setting(5, 20.0))
    with torch.no_grad():
        after = float(hso.seen_loss(model, seen, kv))
    plain = float(hso.seen_loss(model, seen, []).detach())
    assert losses[0] == pytest.approx(plain, abs=1e-6)  # the first step starts from the plain cache
    assert all(b < a for a, b in zip(losses, losses[1:])) and after < losses[-1] < plain - 0.05
    new = ids(5, seed=8)
    assert not torch.allclose(hso.continue_logits(model, seen, new, hso.Setting(5, 20.0)),
                              hso.continue_logits(model, seen, new, hso.Setting(0, 20.0)))


def test_every_layer_reaches_the_loss_and_the_last_seen_position_is_not_a_variable():
    model = tiny_model(n_layers=3)
    seen = ids(10, seed=9)
    kv = []
    loss = hso.seen_loss(model, seen, kv)
    grads = torch.autograd.grad(loss.sum(), [t for pair in kv for t in pair])
    assert len(grads) == 2 * 3 and all(g.shape[2] == 9 for g in grads)  # positions 0 .. P-2
    for g in grads:  # the top layer's K and V too; and the last variable position matters
        assert g.abs().sum() > 0 and g[:, :, -1].abs().sum() > 0


def test_generation_encodes_the_prompt_and_every_re_encoded_window_through_hso():
    model = tiny_model()
    setting, calls = hso.Setting(2, 10.0), []
    encode = hso.prefill(setting)

    def recorded(m, seq, cache):
        calls.append(seq.shape[1])
        return encode(m, seq, cache)

    prompt = ids(10)
    list(decode_steps(model, prompt, 40, prefill=recorded))
    assert calls == [10, 16, 16]  # the prompt, then the last half-context each time the cache of 32 fills
    first = encode(model, prompt, model.new_cache(32))[:, -1]
    torch.testing.assert_close(first, hso.continue_logits(model, prompt, prompt[:, :0], setting)[:, -1], rtol=0, atol=1e-5)
    assert not torch.allclose(first, model(prompt)[0][:, -1])


def test_rows_are_optimised_independently():
    model = tiny_model()
    a, b = ids(12, seed=10), ids(12, seed=11)
    new = ids(3, seed=12)
    s = hso.Setting(2, 10.0)
    both = hso.continue_logits(model, torch.cat([a, b]), torch.cat([new, new]), s)
    torch.testing.assert_close(both[1:], hso.continue_logits(model, b, new, s), rtol=0, atol=1e-5)


def test_refuses_a_model_with_a_recurrent_mixer():
    from lmlab.errors import LmlabError

    model = tiny_model(pattern="AF MF", n_layers=2)
    with pytest.raises(LmlabError, match="attention-only"):
        hso.optimise(model, ids(6), hso.Setting(1, 1.0))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from lmlab.train.loop import train

    out = tmp_path_factory.mktemp("hso") / "run"
    train(config.load("tiny", ["train.max_steps=4", "train.eval_every=0", "train.ckpt_every=4"]), out,
          progress=False, echo=lambda *a: None)
    return out


def test_cli_generate_and_eval(run, capsys):
    args = ["generate", str(run), "--prompt", "ROMEO: and", "--max-new-tokens", "12", "--seed", "2"]
    assert main(args) == 0
    plain = capsys.readouterr().out
    assert main(args + ["--hso", "0"]) == 0
    assert capsys.readouterr().out == plain
    assert main(args + ["--hso", "2", "--hso-lr", "3"]) == 0
    assert capsys.readouterr().out.startswith("ROMEO: and")
    assert main(["eval", str(run), "--max-tokens", "120", "--hso", "2", "--hso-lr", "3", "--hso-chunk", "16"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["hso"] == {"steps": 2, "lr": 3.0, "chunk": 16} and r["tokens"] == 120
    assert r["bpb"] != r["without_hso"]["bpb"]
