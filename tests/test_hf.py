"""HF interchange: exported files give lmlab's logits in transformers; imported HF models give HF's
logits in lmlab; every preset exports; configs with no HF equivalent fail naming the option;
tokenizer.json keeps the ids."""
import json
from pathlib import Path

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
NEOX_DEFAULTS = dict()  # ModelConfig's defaults: RoPE + LayerNorm + tanh-GELU MLP, tied, no biases
NEOX_BIAS_UNTIED = dict(bias=True, tie_embeddings=False, activation="gelu", rope_base=500.0, norm_eps=1e-6)
NEOX_TWO_LAYERS_PER_BLOCK = dict(pattern="AFAF")
FROZEN_NEOX = dict(embedding="gaussian")      # frozen table, head untied by the model
FROZEN_LLAMA = dict(LLAMA_GQA, embedding="binary", tie_embeddings=True)
CRMS_NEOX = dict(norm="crmsnorm", bias=True)  # the full-width stream under LayerNorm
CRMS_GPT2 = dict(norm="crmsnorm", positions="learned")
CRMS_LLAMA_TIED = dict(norm="crmsnorm", ffn="swiglu", n_kv_heads=2)  # RMSNorm: centred embedding, untied head


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


EXPORTS = [(LLAMA_GQA, "llama"), (LLAMA_TIED_BIAS, "llama"), (GPT2_NOBIAS, "gpt2"), (GPT2_UNTIED_NOAFFINE, "gpt2"),
           (GPT2_EXACT_GELU, "gpt2"), (NEOX_DEFAULTS, "gpt_neox"), (NEOX_BIAS_UNTIED, "gpt_neox"),
           (NEOX_TWO_LAYERS_PER_BLOCK, "gpt_neox"), (FROZEN_NEOX, "gpt_neox"), (FROZEN_LLAMA, "llama"),
           (CRMS_NEOX, "gpt_neox"), (CRMS_GPT2, "gpt2"), (CRMS_LLAMA_TIED, "llama")]


@pytest.mark.parametrize("kw, fam", EXPORTS)
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


@pytest.mark.parametrize("kw", [LLAMA_GQA, NEOX_DEFAULTS])
def test_rope_swap_would_be_caught(tmp_path, kw):
    """The test above can fail: permuting q's halves (the interleaved-pairs convention) changes logits."""
    transformers = pytest.importorskip("transformers")
    model = random_model(**kw)
    hf.export(model, None, tmp_path)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), dtype=torch.float32).eval()
    perm = torch.arange(64).view(4, 2, 8).transpose(1, 2).reshape(-1)  # interleave each head's halves
    if kw is LLAMA_GQA:
        q = theirs.model.layers[0].self_attn.q_proj.weight
    else:  # NeoX fuses [q_h; k_h; v_h] per head: q's row j is row j // 16 * 48 + j % 16 there
        q = theirs.gpt_neox.layers[0].attention.query_key_value.weight
        def row(j):
            return j // 16 * 48 + j % 16
        rows = torch.arange(192)
        rows[row(torch.arange(64))] = row(perm)
        perm = rows
    with torch.no_grad():
        q.copy_(q[perm])
        diff = (model(ids())[0] - theirs(ids()).logits).abs().max().item()
    assert diff > 1e-3


@pytest.mark.parametrize("make", ["llama", "gpt2", "gpt2-exact-gelu", "gpt_neox", "gpt_neox-no-attention-bias"])
def test_import_random_hf_model(tmp_path, capsys, make):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if make == "llama":
        cfg = transformers.LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=64,
                                       tie_word_embeddings=False, rms_norm_eps=1e-6)
        theirs = transformers.LlamaForCausalLM(cfg)
    elif make.startswith("gpt_neox"):  # the sequential, whole-head-rotary NeoX that lmlab exports
        cfg = transformers.GPTNeoXConfig(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                         num_attention_heads=4, max_position_embeddings=64, hidden_act="gelu_new",
                                         use_parallel_residual=False, rotary_pct=1.0, rotary_emb_base=500.0,
                                         attention_bias=make == "gpt_neox", layer_norm_eps=1e-6)
        theirs = transformers.GPTNeoXForCausalLM(cfg)
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
    assert lcfg.model.bias == (make != "llama")  # NeoX without attention biases still has (perturbed) MLP ones
    assert tok.kind == "byte" and lcfg.model.n_kv_heads == (1 if make == "llama" else lcfg.model.n_kv_heads)
    x = ids(T=48)
    with torch.no_grad():
        diff = (ours(x)[0] - theirs(x).logits).abs().max().item()
    assert diff < 1e-4


@pytest.mark.parametrize("change, option", [
    (dict(norm="nonorm"), "model.norm"),
    (dict(ffn="moe"), "model.ffn"),
    (dict(ffn="lowrank"), "model.ffn"),           # structured FFNs
    (dict(pattern="AMF"), "model.pattern"),       # SSM
    (dict(pattern="ALF"), "model.pattern"),       # LMU
    (dict(pattern="AAF"), "model.pattern"),
    (dict(meta_tokens=4), "model.meta_tokens"),
    (dict(norm="crmsnorm", bias=True), "model.bias"),  # Llama's RMSNorm has no bias for CRMSNorm's
])
def test_configs_without_hf_equivalent_name_the_option(change, option):
    cfg = ModelConfig(**{**LLAMA_GQA, **change})
    with pytest.raises(LmlabError, match=option.replace(".", r"\.")) as e:
        hf.family(cfg)
    assert "\n" not in str(e.value) and "exportable" in str(e.value)


@pytest.mark.parametrize("change", [dict(ffn="mlp"), dict(norm="layernorm"), dict(positions="learned"),
                                    dict(positions="learned", norm="crmsnorm")])
def test_combinations_without_hf_equivalent_list_the_exportable_ones(change):
    """RoPE + rmsnorm + GELU MLP, RoPE + layernorm + swiglu, ...: each part exists somewhere, the mix nowhere."""
    cfg = ModelConfig(**{**LLAMA_GQA, **change})
    with pytest.raises(LmlabError) as e:
        hf.family(cfg)
    msg = str(e.value)
    assert f"model.norm={cfg.norm!r} with model.ffn={cfg.ffn!r} and model.positions={cfg.positions!r}" in msg
    assert "rope + layernorm + mlp (GPT-NeoX)" in msg and "rope + rmsnorm + swiglu (Llama)" in msg


def test_gpt2_and_neox_have_no_gqa():
    with pytest.raises(LmlabError, match=r"model\.n_kv_heads=2 .*GPT-2"):
        hf.family(ModelConfig(**GPT2_NOBIAS, n_heads=4, n_kv_heads=2))
    with pytest.raises(LmlabError, match=r"model\.n_kv_heads=2 .*GPT-NeoX"):
        hf.family(ModelConfig(n_heads=4, n_kv_heads=2))


def test_unsupported_hf_configs_are_clear_errors():
    with pytest.raises(LmlabError, match="model_type 'mistral'"):
        hf.model_config_from_hf({"model_type": "mistral"})
    with pytest.raises(LmlabError, match="activation_function='relu'"):
        hf.model_config_from_hf({"model_type": "gpt2", "activation_function": "relu"})
    with pytest.raises(LmlabError, match="rope type 'linear'"):
        hf.model_config_from_hf({"model_type": "llama", "rope_parameters": {"rope_type": "linear"},
                                 "hidden_size": 64, "num_attention_heads": 4})
    neox = {"model_type": "gpt_neox", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
            "vocab_size": 300}  # HF's defaults: Pythia's parallel residuals and quarter-head rotary
    with pytest.raises(LmlabError, match="use_parallel_residual=true"):
        hf.model_config_from_hf(neox)
    with pytest.raises(LmlabError, match="rotary_pct=0.25"):
        hf.model_config_from_hf({**neox, "use_parallel_residual": False})
    with pytest.raises(LmlabError, match="hidden_act='relu'"):
        hf.model_config_from_hf({**neox, "use_parallel_residual": False, "rotary_pct": 1.0, "hidden_act": "relu"})


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
    bad = Transformer(ModelConfig(n_layers=1, d_model=32, n_heads=2, context=16, vocab_size=tok.vocab_size, pattern="AMF"))
    checkpoint.save(tmp_path / "bad", 1, bad, None, tok, Config(model=bad.cfg), {})
    assert main(["export", str(tmp_path / "bad"), "--to", "hf", str(tmp_path / "hf2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.pattern='AMF'" in err[0]
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


PRESETS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.toml"))
SMALL = ["model.n_layers=2", "model.d_model=64", "model.n_heads=4", "model.context=32", "model.glyph_size=8",
         "train.max_steps=2", "train.batch_size=2", "train.warmup_steps=1", "train.eval_every=2",
         "train.eval_batches=1", "train.ckpt_every=2", "train.dtype=float32", "train.progress=false",
         "train.max_minutes=0"]


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_exports_with_matching_logits_and_imports_back(tmp_path, capsys, preset):
    """Each preset's architecture (positions, norm, ffn, activation, bias, ties, embedding kept; sizes
    shrunk) trains 2 steps, exports with export's own logit check, and imports to the same logits."""
    pytest.importorskip("transformers")
    from lmlab import checkpoint, config

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("First Citizen: Before we proceed any further, hear me speak. Ελληνικά, русский.\n" * 40)
    small = [*SMALL, f"data.corpus={corpus}"]
    if config.load(preset).tokenizer.vocab_size > 400:  # the glyph preset's 4096 ids: fewer glyphs to render
        small.append("tokenizer.vocab_size=400")
    assert main(["train", "-c", preset, "-o", str(tmp_path / "run"), *[a for s in small for a in ("--set", s)]]) == 0
    capsys.readouterr()
    assert main(["export", str(tmp_path / "run"), "--to", "hf", str(tmp_path / "hf")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["max_abs_logit_diff"] < 1e-4
    model, _, cfg = checkpoint.load_model(tmp_path / "run")
    assert report["family"] == hf.family(cfg.model)
    shape = ("positions", "norm", "ffn", "activation", "bias", "tie_embeddings", "embedding", "pattern")
    assert all(getattr(cfg.model, k) == getattr(config.load(preset).model, k) for k in shape)
    assert main(["import-hf", str(tmp_path / "hf"), "-o", str(tmp_path / "back")]) == 0
    capsys.readouterr()
    back, _, _ = checkpoint.load_model(tmp_path / "back")
    x = ids(cfg.model.vocab_size)
    with torch.no_grad():
        assert torch.equal(back(x)[0], model(x)[0])
