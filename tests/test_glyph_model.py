"""Frozen embeddings inside the model: frozen through training, untied head, save/load/generate."""
import pytest
import torch
from safetensors.torch import load_file

from lmlab import config, tokenizers
from lmlab.embeddings import frozen_matrix
from lmlab.model import Transformer
from lmlab.checkpoint import load_model, resolve
from lmlab.train.optim import make_optimizer

TEXT = ("The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs. "
        "Γαζέες καὶ μυρτιὲς δὲν θὰ βρῶ πιὰ στὸ χρυσαφὶ ξέφωτο. 我能吞下玻璃而不伤身体。\n") * 40


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path / "cache"))


def built(cfg, tok):
    """A model to train: the frozen matrix is made outside it, from the tokenizer (as train does)."""
    return Transformer(cfg.model, embedding_matrix=frozen_matrix(cfg.model, tok))


def small_cfg(embedding, extra=()):
    return config.load("tiny", [f"model.embedding={embedding}", "tokenizer.kind=unicode",
                                "tokenizer.vocab_size=420", "model.d_model=32", "model.n_heads=2",
                                "model.context=32", "model.glyph_size=16", *extra])


@pytest.mark.parametrize("kind", ["glyph", "binary", "gaussian"])
def test_frozen_embedding_is_bit_identical_after_training_steps(kind):
    cfg = small_cfg(kind)
    tok = tokenizers.build(cfg.tokenizer, lambda: TEXT)
    cfg.model.vocab_size = tok.vocab_size
    torch.manual_seed(0)
    model = built(cfg, tok)
    assert "embed.weight" in dict(model.named_buffers())
    assert not any(name.startswith("embed.") for name, _ in model.named_parameters())
    assert model.lm_head is not None and model.head_weight() is not model.embed.weight  # untied
    opt = make_optimizer(model, cfg.train, torch.device("cpu"))
    embed_before = model.embed.weight.clone()
    others_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = torch.tensor([tok.encode(TEXT[:400])[:33]])
    for _ in range(3):
        _, loss = model(ids[:, :-1], ids[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert torch.equal(model.embed.weight, embed_before)
    assert all(id(p) != id(model.embed.weight) for g in opt.param_groups for p in g["params"])
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, others_before[n])]
    assert len(changed) == len(others_before)  # everything else trained


def test_glyph_rows_depend_on_the_token_text():
    cfg = small_cfg("glyph")
    tok = tokenizers.build(cfg.tokenizer, lambda: TEXT)
    cfg.model.vocab_size = tok.vocab_size
    w = built(cfg, tok).embed.weight
    assert torch.allclose(w.norm(dim=1), torch.ones(len(w)), atol=1e-5)
    for a, b in [("a", "b"), ("x", "y"), ("Γ", "玻")]:
        assert not torch.allclose(w[tok.encode(a)[0]], w[tok.encode(b)[0]])


def test_missing_font_is_a_clear_error():
    from lmlab.errors import LmlabError

    cfg = small_cfg("glyph", ["model.glyph_font=/nonexistent/font.ttf"])
    tok = tokenizers.build(cfg.tokenizer, lambda: TEXT)
    cfg.model.vocab_size = tok.vocab_size
    with pytest.raises(LmlabError, match="glyph_font"):
        built(cfg, tok)


def test_glyph_model_trains_saves_loads_and_generates(tmp_path):
    from lmlab.infer.generate import generate
    from lmlab.train.loop import train

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    cfg = small_cfg("glyph", [f"data.corpus={corpus}", "train.max_steps=4", "train.eval_every=2",
                              "train.ckpt_every=4", "train.eval_batches=1"])
    train(cfg, tmp_path / "run", progress=False, echo=lambda *a, **k: None)
    model, tok, loaded_cfg = load_model(tmp_path / "run")
    assert loaded_cfg.model.embedding == "glyph" and tok.kind == "unicode"
    tensors = load_file(resolve(tmp_path / "run") / "model.safetensors")
    assert torch.equal(tensors["embed.weight"], model.embed.weight)  # saved once, in the model file
    fresh = built(loaded_cfg, tok)  # rebuilt from the (cached) renderer: same matrix
    assert torch.equal(fresh.embed.weight, model.embed.weight)
    optim = torch.load(resolve(tmp_path / "run") / "optim.pt", weights_only=True)["optimizer"]
    n_params = sum(len(g["params"]) for g in optim["param_groups"])
    assert n_params == len(list(model.parameters()))  # the frozen matrix has no optimizer state
    out = generate(model, tok, "The quick", max_new_tokens=8, temperature=0.0)
    assert isinstance(out, str)
    assert out == generate(model, tok, "The quick", max_new_tokens=8, temperature=0.0)


def test_the_model_renders_nothing_and_loading_reads_the_saved_matrix(tmp_path, monkeypatch):
    from lmlab.embeddings import glyph
    from lmlab.train.loop import train

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    cfg = small_cfg("glyph", [f"data.corpus={corpus}", "train.max_steps=2", "train.eval_every=0",
                              "train.ckpt_every=2"])
    train(cfg, tmp_path / "run", progress=False, echo=lambda *a, **k: None)
    saved = load_file(resolve(tmp_path / "run") / "model.safetensors")["embed.weight"]

    def no_rendering(*a, **k):
        raise AssertionError("glyphs rendered")

    monkeypatch.setattr(glyph, "build_glyph_matrix", no_rendering)
    model, tok, loaded_cfg = load_model(tmp_path / "run")
    assert torch.equal(model.embed.weight, saved) and saved.abs().sum() > 0
    empty = Transformer(loaded_cfg.model)  # without a matrix: zeros of the right shape, for a checkpoint to fill
    assert torch.equal(empty.embed.weight, torch.zeros(loaded_cfg.model.vocab_size, loaded_cfg.model.d_model))
    given = Transformer(loaded_cfg.model, embedding_matrix=saved)
    assert torch.equal(given.embed.weight, saved)
    with pytest.raises(ValueError, match="expected"):
        Transformer(loaded_cfg.model, embedding_matrix=saved[:-1])
