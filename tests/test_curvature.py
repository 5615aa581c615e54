"""K-FAC factors and curvature editing (lmlab/analysis/curvature.py, `lmlab edit`)."""
import torch
import torch.nn.functional as F
from torch import nn

from lmlab import config
from lmlab.analysis import curvature
from lmlab.cli import main
from lmlab.model import Transformer


class EmbedLinear(nn.Module):
    """ids -> embedding -> one linear layer -> logits: its factors can be written down directly."""

    def __init__(self, vocab=7, d=5):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.head = nn.Linear(d, vocab)

    def forward(self, x):
        return self.head(self.embed(x)), None


def test_factors_equal_direct_computation():
    torch.manual_seed(0)
    model = EmbedLinear()
    x = torch.randint(0, 7, (3, 4))
    (f,) = curvature.collect_factors(model, {"head": model.head}, [x], seed=5).values()
    a = model.embed(x).detach().reshape(-1, 5).double()
    p = F.softmax(model(x)[0].detach().reshape(-1, 7), -1)
    y = torch.multinomial(p, 1, generator=torch.Generator().manual_seed(5)).squeeze(1)
    g = (p - F.one_hot(y, 7)).double()  # d(-log p_y)/d logits
    assert f.tokens == 12
    torch.testing.assert_close(f.A, a.T @ a / 12, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(f.G, g.T @ g / 12, rtol=1e-6, atol=1e-9)


def test_mask_of_ones_returns_the_weights():
    torch.manual_seed(0)
    W = torch.randn(6, 4)
    ua = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))[0]
    ug = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))[0]
    out = curvature.masked_weight(W, ua, ug, torch.ones(6, 4, dtype=torch.bool))
    torch.testing.assert_close(out, W, rtol=0, atol=1e-6)
    zero = curvature.masked_weight(W, ua, ug, torch.zeros(6, 4, dtype=torch.bool))
    assert torch.count_nonzero(zero) == 0


def test_curvature_mask_keeps_largest_until_mass():
    l, m = torch.tensor([1.0, 2.0]), torch.tensor([1.0, 3.0])  # curvature [[1, 2], [3, 6]], total 12
    assert curvature.curvature_mask(l, m, 0.5).tolist() == [[False, False], [False, True]]
    assert curvature.curvature_mask(l, m, 0.6).tolist() == [[False, False], [True, True]]
    assert curvature.curvature_mask(l, m, 1.0).all()
    ctrl = curvature.random_mask_like(curvature.curvature_mask(l, m, 0.6), torch.Generator().manual_seed(0))
    assert int(ctrl.sum()) == 2


def test_edit_changes_only_the_targeted_matrices():
    cfg = config.load("tiny", ["model.vocab_size=50"])
    torch.manual_seed(0)
    model = Transformer(cfg.model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = torch.randint(0, cfg.model.vocab_size, (4 * cfg.model.context,)).numpy()
    summary = curvature.edit_model(model, ids, 0.5, ("ffn",))
    targets = {f"{n}.weight" for n in summary["layers"]}
    assert targets and all(".ffn." in t or ".mixer." in t for t in targets)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]) == (k not in targets), k
    assert all(0 < f < 1 for f in summary["kept_fraction"].values())


def test_edit_cli(tiny_run, tmp_path, capsys):
    out = tmp_path / "edited"
    for rho in ("0", "1.5", "-0.1"):
        assert main(["edit", str(tiny_run), "--curvature-mass", rho, "--data", "tinyshakespeare", "-o", str(out)]) == 2
        assert "error: --curvature-mass must be in (0, 1]" in capsys.readouterr().err
        assert not out.exists()
    assert main(["edit", str(tiny_run), "--curvature-mass", "1", "--data", "tinyshakespeare", "-o", str(out),
                 "--max-tokens", "2048"]) == 0
    from lmlab.checkpoint import load_model

    edited, _, _ = load_model(out)
    original, _, _ = load_model(tiny_run)
    for (k, a), b in zip(edited.state_dict().items(), original.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert (out / "config.toml").is_file()
    assert main(["eval", str(out), "--max-tokens", "256"]) == 0
    assert main(["edit", str(tiny_run), "--curvature-mass", "0.5", "--data", "tinyshakespeare", "-o", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err
