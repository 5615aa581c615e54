import tomllib

import pytest

from lmlab import config
from lmlab.errors import LmlabError


def test_overrides_parse_by_field_type():
    cfg = config.load("tiny", ["model.n_layers=3", "train.lr=3e-4", "model.tie_embeddings=false",
                               "tokenizer.kind=byte", 'generate.stop=["\\n\\n", "END"]'])
    assert cfg.model.n_layers == 3 and cfg.train.lr == 3e-4 and cfg.model.tie_embeddings is False
    assert cfg.tokenizer.kind == "byte" and cfg.generate.stop == ["\n\n", "END"]


def test_unknown_key_names_the_valid_keys():
    with pytest.raises(LmlabError) as e:
        config.load(None, ["model.nlayers=3"])
    msg = str(e.value)
    assert "model.nlayers" in msg and "n_layers" in msg and "d_model" in msg and "\n" not in msg


def test_unknown_section_and_wrong_type():
    with pytest.raises(LmlabError, match="valid sections: model, tokenizer, data, train, generate"):
        config.load(None, ["modle.n_layers=3"])
    with pytest.raises(LmlabError, match="model.n_layers"):
        config.load(None, ["model.n_layers=three"])
    with pytest.raises(LmlabError, match="must be int"):
        config.from_dict({"model": {"n_layers": 2.5}})
    with pytest.raises(LmlabError, match="section.key=value"):
        config.load(None, ["n_layers=3"])


def test_toml_round_trip_writes_every_default():
    cfg = config.load("shakespeare-char", ["generate.stop=['a']"])
    text = config.to_toml(cfg)
    assert config.from_dict(tomllib.loads(text)) == cfg
    assert "warmup_steps" in text and "top_p" in text


def test_presets_load_and_missing_preset_lists_them():
    for name in ("tiny", "demo", "shakespeare-char"):
        config.load(name)
    sc = config.load("shakespeare-char")
    assert (sc.model.n_layers, sc.model.n_heads, sc.model.d_model, sc.model.context) == (6, 6, 384, 256)
    with pytest.raises(LmlabError, match="tiny"):
        config.load("no-such-preset")


def test_grad_accum_may_change_on_resume_only_when_the_batch_per_step_stays():
    run = config.load("tiny", ["train.grad_accum=1"])
    fewer_ranks = config.load("tiny", ["train.grad_accum=2"])
    config.check_resume(run, fewer_ranks, data_ranks=(2, 1))  # 1 x 2 ranks = 2 x 1 rank: the same batches
    for ranks in ((1, 1), None):
        with pytest.raises(LmlabError, match="train.grad_accum cannot change on resume"):
            config.check_resume(run, fewer_ranks, data_ranks=ranks)
