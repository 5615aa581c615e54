"""Norms (layernorm, rmsnorm, crmsnorm) and the exact Pre-LN -> Pre-(C)RMSNorm conversion."""
import pytest
import torch
import torch.nn.functional as F

from lmlab import config
from lmlab.cli import main
from lmlab.errors import LmlabError
from lmlab.model.convert import ConversionError, convert_norm
from lmlab.model.norms import CRMSNorm, to_stream
from lmlab.checkpoint import load_model
from lmlab.train.loop import train
from variant_checks import make_model, one_thread


@pytest.fixture(autouse=True)
def _one_thread():  # small models: threads only add contention on a shared CPU
    with one_thread():
        yield


def test_crmsnorm_of_stored_coordinates_is_layernorm_of_the_full_vector():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 16) * 3
    x = x - x.mean(-1, keepdim=True)                    # zero-mean: the last coordinate is implicit
    norm = CRMSNorm(16, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(16) + 0.5)
    expected = F.layer_norm(x, (16,), norm.weight, None, 1e-5)
    torch.testing.assert_close(norm(x[..., :15]), expected, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError):
        norm(x)                                          # a d-wide input is a wiring mistake


def test_to_stream_keeps_the_centred_coordinates():
    x = torch.tensor([[1.0, 2.0, 6.0]])
    assert torch.equal(to_stream(x, 3), x)
    torch.testing.assert_close(to_stream(x, 2), torch.tensor([[-2.0, -1.0]]))


def test_crmsnorm_model_carries_a_d_minus_1_stream():
    model = make_model(norm="crmsnorm")
    assert model.d_stream == 31
    attn = model.blocks[0].sublayers["attn"].mixer
    assert attn.o_proj.weight.shape == (31, 32) and attn.q_proj.weight.shape == (32, 32)
    assert model.blocks[0].sublayers["ffn"].mixer.down.weight.shape[0] == 31
    dense = make_model()
    assert dense.num_params() - model.num_params() == 2 * (32 + 128)  # a row of o_proj and of down per block


def perturbed(**kw):
    """A Pre-LN model whose gains, embeddings and writers are far from their init (means included)."""
    model = make_model(seed=1, **kw)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(0.5 + torch.rand_like(p))
            else:
                p.add_(0.05 * torch.randn_like(p) + 0.02)
    return model.eval()


@pytest.mark.parametrize("kw", [dict(), dict(positions="learned", tie_embeddings=False, ffn="swiglu"),
                                dict(ffn="moe"), dict(ffn="lowrank", self_guided=0.5), dict(ffn="blockdense")])
@pytest.mark.parametrize("target", ["rmsnorm", "crmsnorm"])
def test_conversion_is_exact_for_each_architecture(kw, target):
    model = perturbed(**kw)
    ids = torch.randint(0, 37, (2, 48))
    new = convert_norm(model, target)
    assert new.cfg.norm == target and not new.cfg.norm_affine
    assert not any("norm" in n for n, _ in new.named_parameters())     # the norms are parameter-free
    with torch.no_grad():
        ref, out = model(ids)[0], new(ids)[0]
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_conversion_refusals():
    with pytest.raises(ConversionError, match="Pre-LN"):
        convert_norm(make_model(norm="rmsnorm"), "crmsnorm")
    with pytest.raises(ConversionError, match="crmsnorm"):
        convert_norm(perturbed(ffn="blockshuffle"), "rmsnorm")          # its output cannot be centred
    model = perturbed(ffn="blockshuffle")                                  # ... but crmsnorm centres it
    ids = torch.randint(0, 37, (1, 20))
    with torch.no_grad():
        torch.testing.assert_close(convert_norm(model, "crmsnorm")(ids)[0], model(ids)[0], atol=1e-5, rtol=0)


def test_convert_command_on_a_trained_model_and_real_text(tmp_path, shared_data, capsys):
    full = (shared_data / "tinyshakespeare.txt").read_text(encoding="utf-8")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(full[:60_000], encoding="utf-8")
    cfg = config.load("tiny", [f"data.corpus={corpus}", f"data.cache_dir={tmp_path / 'cache'}", "train.max_steps=30",
                               "train.eval_every=0", "train.ckpt_every=30"])
    tiny_run = tmp_path / "run"
    train(cfg, tiny_run, progress=False, echo=lambda *a: None)
    text = full[200_000:200_000 + 64 * 4]                                 # text the model never trained on
    model, tokenizer, _ = load_model(tiny_run)
    ids = torch.tensor(tokenizer.encode(text)[:256]).view(4, 64)
    gains = model.blocks[1].sublayers["attn"].norm.weight
    assert (gains - 1).abs().max() > 1e-3                                 # training moved the gains
    with torch.no_grad():
        ref = model(ids)[0]
    for target in ("rmsnorm", "crmsnorm"):
        out_dir = tmp_path / target
        assert main(["convert", str(tiny_run), "--norm", target, "-o", str(out_dir)]) == 0
        new, new_tok, cfg = load_model(out_dir)
        assert cfg.model.norm == target and new_tok.encode(text) == tokenizer.encode(text)
        with torch.no_grad():
            torch.testing.assert_close(new(ids)[0], ref, atol=1e-5, rtol=0)
    assert main(["convert", str(tmp_path / "rmsnorm"), "--norm", "crmsnorm", "-o", str(tmp_path / "x")]) == 2
    assert "Pre-LN" in capsys.readouterr().err
