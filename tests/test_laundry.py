"""The Laundry List generator's checker, and the Talking Heads intervention: scale 1 is the plain
model exactly, any other scale changes the writer head's output along the channel only."""
import pytest
import torch

from lmlab.analysis.heads import Heads
from lmlab.analysis.hooks import run_with_cache
from lmlab.analysis.laundry import (answer_position, find_channel, intervention, random_directions,
                                    scaled_direction)
from lmlab.config import ModelConfig
from lmlab.data.task_files import read_split
from lmlab.errors import LmlabError
from lmlab.eval import tasks
from lmlab.eval.tasks.laundry import solve
from lmlab.analysis.report import load_laundry
from lmlab.model import Transformer
from lmlab.tokenizers.byte import ByteTokenizer

SMALL = ["n_train=60", "n_validation=20", "n_test=30"]


def test_every_example_is_answered_by_the_checker(tmp_path):
    tasks.make("laundry", SMALL + ["lengths=2,5,9", "vocab=12"], tmp_path)
    for split in ("train", "validation", "test"):
        for ex in read_split(tmp_path / f"{split}.jsonl"):
            words = ex.input.split()
            cut = words.index(".")
            items, again = words[:cut], words[cut + 1:-1]
            assert words[-1] == "?" and len(items) in (2, 5, 9) and len(set(items)) == len(items)
            assert sorted(again + [ex.target]) == sorted(items)      # all but the answer, named again
            assert solve(ex.input) == ex.target


def test_the_checker_refuses_what_is_not_a_laundry_list():
    assert solve("a b c . c a ?") == "b"
    for bad in ("a b c . c ?", "a b c . c a", "a b . a b ?", "a b . c ?"):
        with pytest.raises(LmlabError):
            solve(bad)


def test_lists_longer_than_the_vocabulary_are_refused():
    with pytest.raises(LmlabError, match="need vocab >= 9"):
        tasks.get("laundry").settings(["vocab=8", "lengths=2,9"])


def model(**kw):
    torch.manual_seed(0)
    cfg = dict(vocab_size=ByteTokenizer().vocab_size, n_layers=2, d_model=32, n_heads=4, context=64)
    return Transformer(ModelConfig(**{**cfg, **kw})).eval()


def test_answer_position_points_at_the_answer_item():
    tok = ByteTokenizer()
    text = "ab cd ef . ef ab ?"
    assert tok.decode(tok.encode(text)[answer_position(tok, text):][:2]) == "cd"


@pytest.mark.parametrize("kw", [dict(), dict(norm="layernorm", bias=True), dict(n_kv_heads=2)])
def test_scale_one_is_the_plain_model_exactly_and_other_scales_edit_only_along_v(kw):
    m = model(**kw)
    heads = Heads(m)
    channel = find_channel(heads, 5)                                   # a head of block 1
    v, w = channel["direction"], channel["writer"]
    assert w < 4 and channel["component"] < 8 and 0 < channel["share"] <= 1
    ids = torch.randint(0, 200, (2, 20), generator=torch.Generator().manual_seed(1))
    plain, cache = run_with_cache(m, ids, ["blocks.0.attn.head_out"])
    with scaled_direction(m, heads, w, v, 1.0):
        same = m(ids)[0]
    assert torch.equal(same, plain)
    with scaled_direction(m, heads, w, v, 3.0):
        edited, cache3 = run_with_cache(m, ids, ["blocks.0.attn.head_out"])
    assert torch.equal(m(ids)[0], plain)                               # restored on leaving
    before, after = cache["blocks.0.attn.head_out"], cache3["blocks.0.attn.head_out"]
    want = before[:, :, w] + 2.0 * (before[:, :, w] @ v)[..., None] * v
    torch.testing.assert_close(after[:, :, w], want, atol=1e-5, rtol=1e-5)
    others = [h for h in range(4) if h != w]
    assert torch.equal(after[:, :, others], before[:, :, others]) and not torch.equal(edited, plain)


def test_control_directions_are_unit_orthogonal_and_in_the_write_space():
    heads = Heads(model())
    ch = find_channel(heads, 5)
    for u in random_directions(ch["write_space"], ch["direction"], 3, seed=0):
        assert float(u.norm()) == pytest.approx(1.0) and abs(float(u @ ch["direction"])) < 1e-5
        space = ch["write_space"]                                      # orthonormal rows
        assert float((u - (u @ space.T) @ space).norm()) < 1e-5


def test_the_intervention_reports_accuracies_for_the_channel_and_the_control():
    tok = ByteTokenizer()
    info, val, test = load_laundry("laundry")
    assert len(val) == 200 and len(test) == 200
    out = intervention(model(), tok, info, val[:12], test[:16], scales=(0.0, 2.0), controls=2)
    assert out["mover"].startswith("L1") and out["writer"].startswith("L0")
    assert out["chosen_scale"] in (0.0, 2.0) and len(out["sweep"]) == 2
    assert out["gain"] == pytest.approx(out["test_at_chosen"] - out["test"]["accuracy"])
    with pytest.raises(LmlabError, match="--scales"):
        intervention(model(), tok, info, val[:4], test[:4], scales=(float("nan"),))
