"""HF interchange: exported files give lmlab's logits in transformers; imported HF models give HF's
logits in lmlab; configs with no HF equivalent fail naming the option; tokenizer.json keeps the ids."""
import json

import pytest
import torch

from lmlab import hf
from lmlab.cli import main
from lmlab.config import Config, ModelConfig
from lmlab.errors import LmlabError
from lmlab.model import Transformer
from lmlab.tokenizers.byte import ByteTokenizer
from lmlab.tokenizers.char import CharTokenizer

LLAMA_GQA = dict(positions="rope", norm="rmsnorm", ffn="swiglu", n_kv_heads=2, tie_embeddings=False, rope_base=500.0)
LLAMA_TIED_BIAS = dict(positions="rope", norm="rmsnorm", ffn="swiglu", tie_embeddings=True, bias=True)
GPT2_NOBIAS = dict(positions="learned", norm="layernorm", ffn="mlp", bias=False)
GPT2_UNTIED_NOAFFINE = dict(positions="learned", norm="layernorm", ffn="mlp", bias=True, tie_embeddings=False,
                            norm_affine=False)
GPT2_EXACT_GELU = dict(positions="learned", norm="layernorm", ffn="mlp", bias=True, activation="gelu")


def random_model(**kw) -> Transformer:
    torch.manual_seed(0)
    cfg = ModelConfig(n_layers=2, d_model=64, n_heads=4, context=32, vocab_size=300, **kw)
    model = Transformer(cfg).eval()
    with torch.no_grad():  # move every parameter off its init (norm gains 1, biases 0) so a swap shows
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def ids(vocab=300, T=32):
    return torch.randint(0, vocab, (2, T), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("kw, fam", [(LLAMA_GQA, "llama"), (LLAMA_TIED_BIAS, "llama"), (GPT2_NOBIAS, "gpt2"),
                                     (GPT2_UNTIED_NOAFFINE, "gpt2"), (GPT2_EXACT_GELU, "gpt2")])
def test_export_matches_transformers_logits(tmp_path, kw, fam):
    transformers = pytest.importorskip("transformers")
    model = random_model(**kw)
    report = hf.export(model, ByteTokenizer(), tmp_path)
    assert report["family"] == fam
    theirs = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), dtype=torch.float32).eval()
    assert theirs.config.model_type == fam
    x = ids()
    with torch.no_grad():
        diff = (model(x)[0] - theirs(x).logits).abs().max().item()
    assert diff < 1e-4
    # and back: import gives the same function again
    mcfg, sd = hf.load_hf_dir(tmp_path)
    back = Transformer(mcfg).eval()
    assert not back.load_state_dict(sd, strict=False).missing_keys
    with torch.no_grad():
        assert torch.allclose(back(x)[0], model(x)[0], atol=1e-5)


def test_rope_swap_would_be_caught(tmp_path):
    """The test above can fail: permuting q's halves (the interleaved-pairs convention) changes logits."""
    transformers = pytest.importorskip("transformers")
    model = random_model(**LLAMA_GQA)
    hf.export(model, None, tmp_path)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), dtype=torch.float32).eval()
    q = theirs.model.layers[0].self_attn.q_proj.weight
    perm = torch.arange(64).view(4, 2, 8).transpose(1, 2).reshape(-1)  # interleave each head's halves
    with torch.no_grad():
        q.copy_(q[perm])
        diff = (model(ids())[0] - theirs(ids()).logits).abs().max().item()
    assert diff > 1e-3


@pytest.mark.parametrize("make", ["llama", "gpt2", "gpt2-exact-gelu"])
def test_import_random_hf_model(tmp_path, capsys, make):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if make == "llama":
        cfg = transformers.LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=64,
                                       tie_word_embeddings=False, rms_norm_eps=1e-6)
        theirs = transformers.LlamaForCausalLM(cfg)
    else:
        act = "gelu" if make == "gpt2-exact-gelu" else "gelu_new"
        cfg = transformers.GPT2Config(vocab_size=300, n_embd=64, n_layer=2, n_head=4, n_positions=64,
                                      activation_function=act)
        theirs = transformers.GPT2LMHeadModel(cfg)
    with torch.no_grad():  # HF initialises norms to 1 / biases to 0: perturb them so mapping errors show
        for p in theirs.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    theirs.eval().save_pretrained(str(tmp_path / "hf"))
    assert main(["import-hf", str(tmp_path / "hf"), "-o", str(tmp_path / "run"), "--tokenizer", "byte"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["family"] == make.split("-")[0]
    from lmlab.checkpoint import load_model

    ours, tok, lcfg = load_model(tmp_path / "run")
    assert lcfg.model.activation == ("gelu" if make == "gpt2-exact-gelu" else "gelu_tanh")
    assert tok.kind == "byte" and lcfg.model.n_kv_heads == (1 if make == "llama" else lcfg.model.n_kv_heads)
    x = ids(T=48)
    with torch.no_grad():
        diff = (ours(x)[0] - theirs(x).logits).abs().max().item()
    assert diff < 1e-4


@pytest.mark.parametrize("change, option", [
    (dict(norm="crmsnorm"), "model.norm"),
    (dict(ffn="moe"), "model.ffn"),
    (dict(ffn="mlp"), "model.ffn"),            # RoPE + GELU MLP: neither family
    (dict(pattern="AMF"), "model.pattern"),
    (dict(embedding="glyph"), "model.embedding"),
    (dict(meta_tokens=4), "model.meta_tokens"),
])
def test_configs_without_hf_equivalent_name_the_option(change, option):
    cfg = ModelConfig(**{**LLAMA_GQA, **change})
    with pytest.raises(LmlabError, match=option.replace(".", r"\.")):
        hf.family(cfg)


def test_gpt2_has_no_gqa():
    with pytest.raises(LmlabError, match=r"model\.n_kv_heads"):
        hf.family(ModelConfig(**GPT2_NOBIAS, n_heads=4, n_kv_heads=2))


def test_unsupported_hf_configs_are_clear_errors():
    with pytest.raises(LmlabError, match="model_type 'mistral'"):
        hf.model_config_from_hf({"model_type": "mistral"})
    with pytest.raises(LmlabError, match="activation_function='relu'"):
        hf.model_config_from_hf({"model_type": "gpt2", "activation_function": "relu"})
    with pytest.raises(LmlabError, match="rope type 'linear'"):
        hf.model_config_from_hf({"model_type": "llama", "rope_parameters": {"rope_type": "linear"},
                                 "hidden_size": 64, "num_attention_heads": 4})


@pytest.mark.parametrize("tok", [CharTokenizer.train("To be, or not to be: that is the question.\n"), ByteTokenizer()])
def test_tokenizer_json_gives_lmlab_ids(tok):
    text = "To be — or NOT to be? ünïcode 🙂\n<|endoftext|> end"
    theirs = hf.byte_fallback_tokenizer(tok)
    assert theirs.encode(text).ids == tok.encode(text)
    assert theirs.decode(tok.encode(text)) == tok.decode(tok.encode(text))


def test_cli_export_then_import_round_trip(tmp_path, capsys):
    from lmlab import checkpoint

    tok = CharTokenizer.train("hello world, hello lmlab\n")
    model = random_model(**{**LLAMA_GQA, "n_kv_heads": 4})
    cfg = Config(model=model.cfg)
    checkpoint.save(tmp_path / "run", 7, model, None, tok, cfg, {})
    assert main(["export", str(tmp_path / "run"), "--to", "hf", str(tmp_path / "hf")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["family"] == "llama"
    assert (tmp_path / "hf" / "tokenizer.json").is_file() and (tmp_path / "hf" / "config.json").is_file()
    if isinstance(report["max_abs_logit_diff"], float):  # transformers installed
        assert report["max_abs_logit_diff"] < 1e-4
    assert main(["import-hf", str(tmp_path / "hf"), "-o", str(tmp_path / "back")]) == 0
    capsys.readouterr()
    back, tok2, _ = checkpoint.load_model(tmp_path / "back")
    assert tok2.encode("hello ☃") == tok.encode("hello ☃")
    with torch.no_grad():
        assert torch.equal(back(ids())[0], model(ids())[0])
    # exporting into a used directory, or a model with no equivalent: one-line errors
    assert main(["export", str(tmp_path / "run"), "--to", "hf", str(tmp_path / "hf")]) == 2
    assert "already holds" in capsys.readouterr().err
    bad = Transformer(ModelConfig(n_layers=1, d_model=32, n_heads=2, context=16, vocab_size=tok.vocab_size, norm="crmsnorm"))
    checkpoint.save(tmp_path / "bad", 1, bad, None, tok, Config(model=bad.cfg), {})
    assert main(["export", str(tmp_path / "bad"), "--to", "hf", str(tmp_path / "hf2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.norm='crmsnorm'" in err[0]
    assert not (tmp_path / "hf2").exists()


def test_bpe_export_writes_a_tokenizer_transformers_loads(tmp_path):
    transformers = pytest.importorskip("transformers")
    from lmlab.tokenizers import bpe

    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 50
    tok = bpe.train(text, vocab_size=300)
    model = random_model(**GPT2_NOBIAS)
    report = hf.export(model, tok, tmp_path)
    assert report["tokenizer"].startswith("bpe: tokenizer.json")
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    sample = "Before we proceed, hear me: 42 citizens!\n"
    assert theirs(sample)["input_ids"] == tok.encode(sample)
    assert theirs.eos_token_id == tok.eot_id
