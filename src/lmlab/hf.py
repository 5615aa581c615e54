"""Hugging Face `transformers` interchange: lmlab checkpoints <-> Llama and GPT-2 directories.

Only plain tensors and JSON are written or read (safetensors + config.json); `transformers` itself
is not needed here (tests and benchmarks use it to check the files load and give the same logits).

Conventions that make the mapping exact:
- lmlab's RoPE rotates (first half, second half) pairs of each head, as HF Llama's `rotate_half`
  does, with the same inverse frequencies, so q/k weights copy over unpermuted.
- GPT-2 stores Linear weights transposed (Conv1D: [in, out]) and fuses q, k, v into `c_attn`;
  its Conv1D and LayerNorm always carry a bias, so a bias-free lmlab model exports zero biases.
- lmlab's GELU MLP: model.activation gelu_tanh is HF's `gelu_new`, gelu is HF's exact `gelu`.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .errors import LmlabError

LLAMA, GPT2 = "llama", "gpt2"


# --- which family a config maps to ----------------------------------------------------------------

def family(cfg) -> str:
    """'llama' or 'gpt2' for a ModelConfig; LmlabError naming the first option with no HF equivalent."""
    def block(option: str, value, why: str):
        raise LmlabError(f"export --to hf: model.{option}={value!r} has no Hugging Face equivalent ({why})")

    groups = cfg.pattern.split() or [""]
    if any(g != "AF" for g in groups):
        block("pattern", cfg.pattern, "only attention + FFN blocks ('AF') exist in Llama/GPT-2")
    if cfg.embedding != "trainable":
        block("embedding", cfg.embedding, "only a trainable token embedding")
    if cfg.meta_tokens:
        block("meta_tokens", cfg.meta_tokens, "meta-tokens are an lmlab extension")
    if cfg.norm not in ("rmsnorm", "layernorm"):
        block("norm", cfg.norm, "Llama uses rmsnorm, GPT-2 layernorm")
    if cfg.ffn not in ("swiglu", "mlp"):
        block("ffn", cfg.ffn, "Llama uses swiglu, GPT-2 mlp")
    if cfg.positions == "rope":
        if cfg.norm != "rmsnorm":
            block("norm", cfg.norm, "a RoPE model exports as Llama, which needs norm=rmsnorm")
        if cfg.ffn != "swiglu":
            block("ffn", cfg.ffn, "a RoPE model exports as Llama, which needs ffn=swiglu")
        return LLAMA
    if cfg.positions == "learned":
        if cfg.norm != "layernorm":
            block("norm", cfg.norm, "a learned-position model exports as GPT-2, which needs norm=layernorm")
        if cfg.ffn != "mlp":
            block("ffn", cfg.ffn, "a learned-position model exports as GPT-2, which needs ffn=mlp")
        if cfg.n_kv_heads and cfg.n_kv_heads != cfg.n_heads:
            block("n_kv_heads", cfg.n_kv_heads, "GPT-2 has no grouped-query attention")
        return GPT2
    block("positions", cfg.positions, "Llama uses rope, GPT-2 learned")


# --- lmlab -> HF -----------------------------------------------------------------------------------

def _lm(i: int, sub: str) -> str:
    return f"blocks.{i}.sublayers.{sub}"


def _norm_params(sd: dict, prefix: str, d: int, with_bias: bool) -> dict:
    """weight (and bias) of a norm; a norm without affine parameters (norm_affine=false) is 1 and 0."""
    w = sd.get(f"{prefix}.weight", torch.ones(d))
    out = {"weight": w}
    if with_bias:
        out["bias"] = sd.get(f"{prefix}.bias", torch.zeros_like(w))
    return out


def to_hf(model) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config.json dict, HF state dict) for an lmlab Transformer."""
    cfg = model.cfg
    fam = family(cfg)
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    d, L = cfg.d_model, cfg.n_layers
    n_kv = cfg.n_kv_heads or cfg.n_heads
    tied = model.tied
    out: dict[str, torch.Tensor] = {}
    if fam == LLAMA:
        d_ff = sd[f"{_lm(0, 'ffn')}.mixer.up.weight"].shape[0]
        hf_cfg = {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": cfg.vocab_size, "hidden_size": d, "intermediate_size": d_ff,
            "num_hidden_layers": L, "num_attention_heads": cfg.n_heads, "num_key_value_heads": n_kv,
            "head_dim": d // cfg.n_heads, "hidden_act": "silu", "max_position_embeddings": cfg.context,
            "rms_norm_eps": cfg.norm_eps, "tie_word_embeddings": tied,
            # both spellings: transformers 5 reads rope_parameters, 4.x reads rope_theta
            "rope_theta": cfg.rope_base, "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_base},
            "attention_bias": cfg.bias, "mlp_bias": cfg.bias, "attention_dropout": 0.0,
            "bos_token_id": None, "eos_token_id": None, "torch_dtype": "float32",
        }
        out["model.embed_tokens.weight"] = sd["embed.weight"]
        for i in range(L):
            a, f, h = _lm(i, "attn"), _lm(i, "ffn"), f"model.layers.{i}"
            out[f"{h}.input_layernorm.weight"] = _norm_params(sd, f"{a}.norm", d, False)["weight"]
            out[f"{h}.post_attention_layernorm.weight"] = _norm_params(sd, f"{f}.norm", d, False)["weight"]
            for p in ("q_proj", "k_proj", "v_proj", "o_proj"):
                for kind in ("weight", "bias"):
                    if f"{a}.mixer.{p}.{kind}" in sd:
                        out[f"{h}.self_attn.{p}.{kind}"] = sd[f"{a}.mixer.{p}.{kind}"]
            for ours, theirs in (("gate", "gate_proj"), ("up", "up_proj"), ("down", "down_proj")):
                for kind in ("weight", "bias"):
                    if f"{f}.mixer.{ours}.{kind}" in sd:
                        out[f"{h}.mlp.{theirs}.{kind}"] = sd[f"{f}.mixer.{ours}.{kind}"]
        out["model.norm.weight"] = _norm_params(sd, "final_norm", d, False)["weight"]
        if not tied:
            out["lm_head.weight"] = sd["lm_head.weight"]
    else:
        d_ff = sd[f"{_lm(0, 'ffn')}.mixer.up.weight"].shape[0]
        hf_cfg = {
            "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
            "vocab_size": cfg.vocab_size, "n_embd": d, "n_layer": L, "n_head": cfg.n_heads,
            "n_positions": cfg.context, "n_inner": d_ff,
            "activation_function": "gelu" if cfg.activation == "gelu" else "gelu_new",
            "layer_norm_epsilon": cfg.norm_eps, "tie_word_embeddings": tied,
            "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
            "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
            "reorder_and_upcast_attn": False, "bos_token_id": None, "eos_token_id": None,
            "torch_dtype": "float32",
        }

        def linear(prefix: str, rows: int):
            w = sd[f"{prefix}.weight"]
            return w, sd.get(f"{prefix}.bias", torch.zeros(rows))

        out["transformer.wte.weight"] = sd["embed.weight"]
        out["transformer.wpe.weight"] = sd["pos_embed.weight"]
        for i in range(L):
            a, f, h = _lm(i, "attn"), _lm(i, "ffn"), f"transformer.h.{i}"
            for ours, theirs in ((f"{a}.norm", "ln_1"), (f"{f}.norm", "ln_2")):
                for kind, t in _norm_params(sd, ours, d, True).items():
                    out[f"{h}.{theirs}.{kind}"] = t
            qkv = [linear(f"{a}.mixer.{p}", d) for p in ("q_proj", "k_proj", "v_proj")]
            out[f"{h}.attn.c_attn.weight"] = torch.cat([w for w, _ in qkv], 0).t().contiguous()
            out[f"{h}.attn.c_attn.bias"] = torch.cat([b for _, b in qkv], 0)
            for ours, theirs, rows in ((f"{a}.mixer.o_proj", "attn.c_proj", d), (f"{f}.mixer.up", "mlp.c_fc", d_ff),
                                       (f"{f}.mixer.down", "mlp.c_proj", d)):
                w, b = linear(ours, rows)
                out[f"{h}.{theirs}.weight"] = w.t().contiguous()
                out[f"{h}.{theirs}.bias"] = b
        for kind, t in _norm_params(sd, "final_norm", d, True).items():
            out[f"transformer.ln_f.{kind}"] = t
        if not tied:
            out["lm_head.weight"] = sd["lm_head.weight"]
    return hf_cfg, {k: v.contiguous() for k, v in out.items()}


def export(model, tokenizer, out_dir) -> dict:
    """Write config.json, model.safetensors, generation_config.json and tokenizer files to out_dir."""
    from safetensors.torch import save_file

    hf_cfg, tensors = to_hf(model)
    if tokenizer is not None:
        hf_cfg["bos_token_id"] = hf_cfg["eos_token_id"] = tokenizer.eot_id
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(hf_cfg, indent=1))
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    (out / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": hf_cfg["bos_token_id"], "eos_token_id": hf_cfg["eos_token_id"]}, indent=1))
    tok_note = export_tokenizer(tokenizer, out) if tokenizer is not None else "none"
    return {"family": hf_cfg["model_type"], "dir": str(out), "tensors": len(tensors),
            "params": sum(t.numel() for t in tensors.values()), "tokenizer": tok_note}


# --- tokenizer files ---------------------------------------------------------------------------------

def byte_fallback_tokenizer(tokenizer):
    """An HF `tokenizers.Tokenizer` equal to lmlab's byte or char tokenizer.

    Both put UTF-8 bytes at ids 0-255 (named <0xXX>, as byte fallback wants), <|endoftext|> at 256 and,
    for char, one id per known character: a BPE model with no merges and byte_fallback encodes a
    known character to its id and any other character to its bytes, exactly like lmlab.
    """
    from tokenizers import Tokenizer, decoders
    from tokenizers.models import BPE

    vocab = {f"<0x{i:02X}>": i for i in range(256)}
    for i in range(256, tokenizer.vocab_size):
        vocab[tokenizer.token_text(i)] = i
    hf = Tokenizer(BPE(vocab=vocab, merges=[], byte_fallback=True, ignore_merges=True))
    hf.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    # <|endoftext|> stays a plain vocab entry, not an added token: lmlab never maps the literal
    # text "<|endoftext|>" to id 256, and with no merges this tokenizer cannot either.
    return hf


def export_tokenizer(tokenizer, out: Path) -> str:
    """tokenizer.json + tokenizer_config.json where an HF equivalent exists; always lmlab_tokenizer/."""
    tokenizer.save(out / "lmlab_tokenizer")  # exact round trip for `lmlab import-hf`
    kind = tokenizer.kind
    if kind in ("bpe", "superbpe"):
        tokenizer.hf.save(str(out / "tokenizer.json"))
    elif kind in ("char", "byte"):
        byte_fallback_tokenizer(tokenizer).save(str(out / "tokenizer.json"))
    else:
        return f"{kind}: no HF tokenizer.json written (lmlab_tokenizer/ holds it for import-hf)"
    eot = tokenizer.token_text(tokenizer.eot_id) if kind in ("char", "byte") else "<|endoftext|>"
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": eot, "eos_token": eot,
        "add_bos_token": False, "add_eos_token": False, "clean_up_tokenization_spaces": False,
        "model_max_length": 1 << 30}, indent=1))
    return f"{kind}: tokenizer.json (same ids as lmlab)"


# --- HF -> lmlab -------------------------------------------------------------------------------------

def read_hf_config(directory) -> dict:
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise LmlabError(f"{directory}: no config.json (not a Hugging Face model directory)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise LmlabError(f"{path}: invalid JSON ({e})") from None


def model_config_from_hf(hf: dict):
    """An lmlab ModelConfig for a Llama or GPT-2 config.json; LmlabError for anything else."""
    from .config import ModelConfig

    kind = hf.get("model_type")
    if kind == LLAMA:
        if hf.get("hidden_act", "silu") != "silu":
            raise LmlabError(f"import-hf: hidden_act={hf['hidden_act']!r} is unsupported (lmlab swiglu uses silu)")
        rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
        if rope.get("rope_type", rope.get("type", "default")) != "default":
            raise LmlabError(f"import-hf: rope type {rope.get('rope_type', rope.get('type'))!r} is unsupported (only default RoPE)")
        d, h = hf["hidden_size"], hf["num_attention_heads"]
        if hf.get("head_dim") not in (None, d // h):
            raise LmlabError(f"import-hf: head_dim={hf['head_dim']} != hidden_size/num_attention_heads ({d // h})")
        if bool(hf.get("attention_bias", False)) != bool(hf.get("mlp_bias", False)):
            raise LmlabError("import-hf: attention_bias and mlp_bias differ; lmlab has one model.bias switch")
        return ModelConfig(
            n_layers=hf["num_hidden_layers"], d_model=d, n_heads=h,
            n_kv_heads=hf.get("num_key_value_heads") or h, context=hf.get("max_position_embeddings", 2048),
            vocab_size=hf["vocab_size"], positions="rope",
            rope_base=float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
            norm="rmsnorm", norm_eps=hf.get("rms_norm_eps", 1e-6), ffn="swiglu", d_ff=hf["intermediate_size"],
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)), bias=bool(hf.get("attention_bias", False)),
            dropout=0.0)
    if kind == GPT2:
        act = hf.get("activation_function", "gelu_new")
        if act not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
            raise LmlabError(f"import-hf: activation_function={act!r} is unsupported (lmlab's mlp has tanh-approximate "
                             "GELU: gelu_new, gelu_pytorch_tanh; or exact GELU: gelu)")
        for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
            if hf.get(flag):
                raise LmlabError(f"import-hf: {flag}=true is unsupported")
        if hf.get("scale_attn_weights", True) is False:
            raise LmlabError("import-hf: scale_attn_weights=false is unsupported")
        d = hf.get("n_embd", 768)
        return ModelConfig(
            n_layers=hf.get("n_layer", 12), d_model=d, n_heads=hf.get("n_head", 12), context=hf.get("n_positions", 1024),
            vocab_size=hf.get("vocab_size", 50257), positions="learned", norm="layernorm",
            norm_eps=hf.get("layer_norm_epsilon", 1e-5), ffn="mlp", d_ff=hf.get("n_inner") or 4 * d,
            activation="gelu" if act == "gelu" else "gelu_tanh",
            tie_embeddings=bool(hf.get("tie_word_embeddings", True)), bias=True, dropout=0.0)
    raise LmlabError(f"import-hf: model_type {kind!r} is unsupported; supported: llama, gpt2")


def _strip_prefix(sd: dict, kind: str) -> dict:
    """HF checkpoints sometimes omit the base-model prefix ('model.' / 'transformer.')."""
    prefix = "model." if kind == LLAMA else "transformer."
    if any(k.startswith(prefix) for k in sd):
        return sd
    return {(k if k.startswith("lm_head.") else prefix + k): v for k, v in sd.items()}


def from_hf_state(mcfg, hf_sd: dict, kind: str) -> dict[str, torch.Tensor]:
    """lmlab state dict from an HF one (inverse of `to_hf`)."""
    sd = _strip_prefix({k: v.float() for k, v in hf_sd.items()}, kind)
    out: dict[str, torch.Tensor] = {}

    def take(name: str) -> torch.Tensor:
        if name not in sd:
            raise LmlabError(f"import-hf: tensor {name} is missing from the checkpoint")
        return sd[name]

    d = mcfg.d_model
    if kind == LLAMA:
        out["embed.weight"] = take("model.embed_tokens.weight")
        for i in range(mcfg.n_layers):
            a, f, h = _lm(i, "attn"), _lm(i, "ffn"), f"model.layers.{i}"
            out[f"{a}.norm.weight"] = take(f"{h}.input_layernorm.weight")
            out[f"{f}.norm.weight"] = take(f"{h}.post_attention_layernorm.weight")
            for p in ("q_proj", "k_proj", "v_proj", "o_proj"):
                out[f"{a}.mixer.{p}.weight"] = take(f"{h}.self_attn.{p}.weight")
                if mcfg.bias:
                    out[f"{a}.mixer.{p}.bias"] = take(f"{h}.self_attn.{p}.bias")
            for ours, theirs in (("gate", "gate_proj"), ("up", "up_proj"), ("down", "down_proj")):
                out[f"{f}.mixer.{ours}.weight"] = take(f"{h}.mlp.{theirs}.weight")
                if mcfg.bias:
                    out[f"{f}.mixer.{ours}.bias"] = take(f"{h}.mlp.{theirs}.bias")
        out["final_norm.weight"] = take("model.norm.weight")
    else:
        out["embed.weight"] = take("transformer.wte.weight")
        out["pos_embed.weight"] = take("transformer.wpe.weight")
        for i in range(mcfg.n_layers):
            a, f, h = _lm(i, "attn"), _lm(i, "ffn"), f"transformer.h.{i}"
            for ours, theirs in ((f"{a}.norm", "ln_1"), (f"{f}.norm", "ln_2")):
                out[f"{ours}.weight"] = take(f"{h}.{theirs}.weight")
                out[f"{ours}.bias"] = take(f"{h}.{theirs}.bias")
            w, b = take(f"{h}.attn.c_attn.weight").t(), take(f"{h}.attn.c_attn.bias")
            for j, p in enumerate(("q_proj", "k_proj", "v_proj")):
                out[f"{a}.mixer.{p}.weight"] = w[j * d:(j + 1) * d]
                out[f"{a}.mixer.{p}.bias"] = b[j * d:(j + 1) * d]
            for ours, theirs in ((f"{a}.mixer.o_proj", "attn.c_proj"), (f"{f}.mixer.up", "mlp.c_fc"),
                                 (f"{f}.mixer.down", "mlp.c_proj")):
                out[f"{ours}.weight"] = take(f"{h}.{theirs}.weight").t()
                out[f"{ours}.bias"] = take(f"{h}.{theirs}.bias")
        out["final_norm.weight"] = take("transformer.ln_f.weight")
        out["final_norm.bias"] = take("transformer.ln_f.bias")
    if not mcfg.tie_embeddings:
        out["lm_head.weight"] = take("lm_head.weight")
    return {k: v.contiguous() for k, v in out.items()}


def load_hf_dir(directory):
    """(lmlab ModelConfig, lmlab state dict) from an HF Llama/GPT-2 directory of safetensors files."""
    from safetensors.torch import load_file

    directory = Path(directory)
    hf = read_hf_config(directory)
    mcfg = model_config_from_hf(hf)
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise LmlabError(f"{directory}: no *.safetensors weights (pytorch_model.bin is not read: it would unpickle code)")
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        sd.update(load_file(f))
    return mcfg, from_hf_state(mcfg, sd, hf["model_type"])
