import pytest
import torch

from lmlab.analysis.hooks import capture
from lmlab.config import ModelConfig
from lmlab.errors import LmlabError
from lmlab.infer.generate import sample_ids
from lmlab.infer.voids import LayerVoids, void_mask
from lmlab.model import Transformer


def make_model():
    torch.manual_seed(0)
    return Transformer(ModelConfig(n_layers=4, d_model=32, n_heads=4, context=16, vocab_size=30)).eval()


def test_void_rule_on_hand_made_norm_changes():
    d = torch.tensor([[1.0, 3.0, 1.5, 2.0, 0.1]])
    # layer 2: 3 < 0.8*(1-1)=0? no. layer 3: 1.5 < 0.8*(3-1)=1.6 -> void. layer 4: 2.0 < 1.6? no.
    # layer 5: 0.1 < 0.8*(3-1) -> void.
    assert void_mask(d, 0.8).tolist() == [[False, False, True, False, True]]
    assert not void_mask(d, -1e9).any()


@torch.no_grad()
def test_modes_without_voids_are_exactly_vanilla_and_detect_never_changes_outputs():
    model = make_model()
    ids = torch.randint(0, 30, (2, 16))
    vanilla = model(ids)[0]
    for mode in ("last", "skip"):
        with LayerVoids(model, alpha=float("-inf"), mode=mode) as lv:  # no layer is ever void
            assert torch.equal(model(ids)[0], vanilla)
        assert lv.active().all()
    with LayerVoids(model, alpha=0.8, mode="detect") as lv:
        assert torch.equal(model(ids)[0], vanilla)
    assert torch.equal(model(ids)[0], vanilla)  # hooks removed


@torch.no_grad()
def test_recorded_mask_matches_the_formula_and_last_mode_answers_from_that_layer():
    model = make_model()
    ids = torch.randint(0, 30, (1, 16))
    names = ["blocks.0.resid_pre"] + [f"blocks.{i}.resid_post" for i in range(4)]
    with capture(model, names) as acts:
        model(ids)
    h = torch.stack([acts[n][0] for n in names])          # [L+1, T, d]
    norms = h.float().norm(dim=-1)
    expected_void = void_mask((norms[1:] - norms[:-1]).T, 0.3)   # [T, L]
    with LayerVoids(model, alpha=0.3, mode="last") as lv:
        logits = model(ids)[0][0]
    assert torch.equal(~lv.active(), expected_void)
    assert expected_void.any() and not expected_void.all()
    last = torch.tensor([max(l for l in range(4) if not expected_void[t, l]) for t in range(16)])
    chosen = h[last + 1, torch.arange(16)]
    manual = torch.nn.functional.linear(model.final_norm(chosen), model.head_weight())
    torch.testing.assert_close(logits, manual)


@torch.no_grad()
def test_skip_mode_drops_void_updates_and_phases_are_recorded():
    model = make_model()
    with LayerVoids(model, alpha=1e9, mode="skip") as lv:   # layers 3, 4 always void; layer 2 if D_2 < 0
        out = list(sample_ids(model, [1, 2, 3], 5, temperature=0))
    for phase, rate in lv.rates().items():
        assert rate[0] == 1.0 and rate[2:] == [0.0, 0.0], phase
    assert len(lv.active("prompt")) == 3 and len(lv.active("generation")) == 5
    # The first answer = head(final_norm(h)) with h = block 2's output where it is not void, else block 1's.
    ids = torch.tensor([[1, 2, 3]])
    with capture(model, ["blocks.0.resid_post", "blocks.1.resid_post"]) as acts:
        model(ids)
    h1, h2 = acts["blocks.0.resid_post"], acts["blocks.1.resid_post"]
    void2 = h2.norm(dim=-1) - h1.norm(dim=-1) < 0
    h = torch.where(void2[..., None], h1, h2)
    logits = torch.nn.functional.linear(model.final_norm(h), model.head_weight())
    assert out[0] == int(logits[0, -1].argmax())
    with pytest.raises(LmlabError, match="void mode"):
        LayerVoids(model, mode="nope")


@torch.no_grad()
def test_first_layers_is_the_model_cut_after_k_blocks_and_void_share_counts_void_updates():
    from lmlab.infer.voids import first_layers

    model = make_model()
    ids = torch.randint(0, 30, (1, 16))
    names = [f"blocks.{i}.resid_post" for i in range(4)]
    with capture(model, names) as acts:
        full = model(ids)[0]
    with first_layers(model, 2):
        cut = model(ids)[0][0]
        assert len(model.blocks) == 2
    assert len(model.blocks) == 4 and torch.equal(model(ids)[0], full)  # restored
    manual = torch.nn.functional.linear(model.final_norm(acts["blocks.1.resid_post"][0]), model.head_weight())
    torch.testing.assert_close(cut, manual)
    with pytest.raises(LmlabError):
        with first_layers(model, 5):
            pass
    with LayerVoids(model, alpha=0.3, mode="skip") as lv:
        model(ids)
    assert lv.void_share() == float((~lv.active()).float().mean()) and 0 < lv.void_share() < 1
