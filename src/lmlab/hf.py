"""Hugging Face `transformers` interchange: lmlab checkpoints <-> Llama, GPT-2 and GPT-NeoX directories.

Only plain tensors and JSON are written or read (safetensors + config.json); `transformers` itself is
needed only by `hf_logit_diff`, which loads the written files to compare logits.

Which lmlab models have an exact HF equivalent (`family`, `SHAPES`):
- RoPE + rmsnorm + swiglu: Llama (grouped-query heads too);
- RoPE + layernorm + GELU mlp: GPT-NeoX with sequential residuals (use_parallel_residual=false)
  and rotary on whole heads (rotary_pct=1);
- learned positions + layernorm + GELU mlp: GPT-2.
Conventions that make the mapping exact:
- lmlab's RoPE rotates (first half, second half) pairs of each head, as HF's `rotate_half` does in
  Llama and NeoX, with the same inverse frequencies, so q/k rows copy over unpermuted.
- GPT-2 stores Linear weights transposed (Conv1D: [in, out]) and fuses q, k, v into `c_attn`; NeoX
  fuses them per head ([q_h; k_h; v_h] for each head h) into `query_key_value`. GPT-2's and NeoX's
  LayerNorms and MLPs always carry a bias, so a bias-free lmlab model exports zero biases there.
- GELU: model.activation gelu_tanh is HF's `gelu_pytorch_tanh` (the same F.gelu call; `gelu_new` is
  the same function written out), gelu is HF's exact `gelu`.
- A frozen embedding (glyph, binary, gaussian) is an ordinary lookup table at inference: it is
  exported as the input embedding, next to the model's own untied head.
- crmsnorm keeps a zero-mean stream in d-1 coordinates: each writer gets its implicit last row back
  (minus the sum of the others). On that full-width stream CRMSNorm is LayerNorm (which ignores the
  stream's mean, so the embedding stays as it is), or RMSNorm once the embedding is centred (a tied
  head then keeps the original rows, untied).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from .errors import LmlabError

LLAMA, GPT2, NEOX = "llama", "gpt2", "gpt_neox"
NAMES = {LLAMA: "Llama", GPT2: "GPT-2", NEOX: "GPT-NeoX"}
# (model.positions, model.norm, model.ffn) -> family; crmsnorm counts as either norm (see above)
SHAPES = {("rope", "rmsnorm", "swiglu"): LLAMA, ("rope", "layernorm", "mlp"): NEOX,
          ("learned", "layernorm", "mlp"): GPT2}
EXPORTABLE = "; ".join(f"{p} + {n} + {f} ({NAMES[fam]})" for (p, n, f), fam in SHAPES.items())
LOOKUP_EMBEDDINGS = ("trainable", "glyph", "binary", "gaussian")  # a plain table at inference
GELU_TO_HF = {"gelu_tanh": "gelu_pytorch_tanh", "gelu": "gelu"}
GELU_FROM_HF = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}


# --- which family a config maps to ----------------------------------------------------------------

def family(cfg) -> str:
    """'llama', 'gpt2' or 'gpt_neox' for a ModelConfig; LmlabError naming the option with no HF equivalent."""
    def block(option: str, value, why: str):
        raise LmlabError(f"export --to hf: model.{option}={value!r} has no Hugging Face equivalent ({why})")

    if not all(re.fullmatch(r"(AF)+", g) for g in cfg.pattern.split() or [""]):
        block("pattern", cfg.pattern, "exportable: attention and FFN sublayers in turn, 'AF'")
    if not getattr(cfg, "causal", True):
        block("causal", False, "these decoder families attend causally; a BERT-shaped export does not fit "
                               "either, its blocks are post-norm where lmlab's are pre-norm")
    if cfg.embedding not in LOOKUP_EMBEDDINGS:
        block("embedding", cfg.embedding, f"exportable: {', '.join(LOOKUP_EMBEDDINGS)}")
    if cfg.meta_tokens:
        block("meta_tokens", cfg.meta_tokens, "meta-tokens are an lmlab extension; exportable: 0")
    if cfg.norm not in ("layernorm", "rmsnorm", "crmsnorm"):
        block("norm", cfg.norm, "exportable: layernorm, rmsnorm, crmsnorm")
    if cfg.ffn not in ("mlp", "swiglu"):
        block("ffn", cfg.ffn, "exportable: mlp, swiglu")
    if cfg.positions not in ("rope", "learned"):
        block("positions", cfg.positions, "exportable: rope, learned")
    norms = ("layernorm", "rmsnorm") if cfg.norm == "crmsnorm" else (cfg.norm,)
    found = [SHAPES[(cfg.positions, n, cfg.ffn)] for n in norms if (cfg.positions, n, cfg.ffn) in SHAPES]
    if not found:
        raise LmlabError(f"export --to hf: model.norm={cfg.norm!r} with model.ffn={cfg.ffn!r} and "
                         f"model.positions={cfg.positions!r} has no Hugging Face equivalent (exportable: {EXPORTABLE})")
    fam = found[0]
    if fam == LLAMA and cfg.norm == "crmsnorm" and cfg.bias and cfg.norm_affine:
        block("bias", cfg.bias, "crmsnorm + swiglu exports as Llama, whose RMSNorm has no bias; "
                             "exportable: bias=false, or norm_affine=false")
    if fam != LLAMA and cfg.n_kv_heads not in (0, cfg.n_heads):
        block("n_kv_heads", cfg.n_kv_heads, f"{NAMES[fam]} has no grouped-query attention")
    if cfg.ffn == "mlp" and cfg.activation not in GELU_TO_HF:
        block("activation", cfg.activation, f"exportable: {', '.join(GELU_TO_HF)}")
    return fam


# --- tensor names on both sides --------------------------------------------------------------------

EMBED = {LLAMA: "model.embed_tokens", GPT2: "transformer.wte", NEOX: "gpt_neox.embed_in"}
FINAL_NORM = {LLAMA: "model.norm", GPT2: "transformer.ln_f", NEOX: "gpt_neox.final_layer_norm"}
HEAD = {LLAMA: "lm_head", GPT2: "lm_head", NEOX: "embed_out"}  # transformers 5 renames embed_out itself
LAYER = {LLAMA: "model.layers.{}", GPT2: "transformer.h.{}", NEOX: "gpt_neox.layers.{}"}
FUSED_QKV = {GPT2: "attn.c_attn", NEOX: "attention.query_key_value"}
# which HF tensors have a bias: always, never, or as the model's bias switch says
ALWAYS, NEVER, MODEL = "always", "never", "model"


def _sublayer_pairs(blocks: list[list[str]]) -> list[tuple[str, str]]:
    """(attention prefix, FFN prefix) of each HF layer, from each block's sublayer names in order:
    an 'AFAF' block (attn, ffn, attn2, ffn2) is two layers."""
    return [(f"blocks.{i}.sublayers.{names[j]}", f"blocks.{i}.sublayers.{names[j + 1]}")
            for i, names in enumerate(blocks) for j in range(0, len(names), 2)]


def _layer_tensors(fam: str, a: str, f: str, h: str) -> list[tuple[str, str, bool, str]]:
    """(lmlab prefix, HF prefix, stored transposed, HF bias) of one layer's tensors, q/k/v aside where fused."""
    if fam == LLAMA:
        return [(f"{a}.norm", f"{h}.input_layernorm", False, NEVER),
                (f"{f}.norm", f"{h}.post_attention_layernorm", False, NEVER),
                *[(f"{a}.mixer.{p}", f"{h}.self_attn.{p}", False, MODEL) for p in ("q_proj", "k_proj", "v_proj", "o_proj")],
                *[(f"{f}.mixer.{p}", f"{h}.mlp.{p}_proj", False, MODEL) for p in ("gate", "up", "down")]]
    if fam == NEOX:
        return [(f"{a}.norm", f"{h}.input_layernorm", False, ALWAYS),
                (f"{f}.norm", f"{h}.post_attention_layernorm", False, ALWAYS),
                (f"{a}.mixer.o_proj", f"{h}.attention.dense", False, MODEL),
                (f"{f}.mixer.up", f"{h}.mlp.dense_h_to_4h", False, ALWAYS),
                (f"{f}.mixer.down", f"{h}.mlp.dense_4h_to_h", False, ALWAYS)]
    return [(f"{a}.norm", f"{h}.ln_1", False, ALWAYS), (f"{f}.norm", f"{h}.ln_2", False, ALWAYS),
            (f"{a}.mixer.o_proj", f"{h}.attn.c_proj", True, ALWAYS),
            (f"{f}.mixer.up", f"{h}.mlp.c_fc", True, ALWAYS), (f"{f}.mixer.down", f"{h}.mlp.c_proj", True, ALWAYS)]


def _fuse_qkv(fam: str, q, k, v, n_heads: int) -> torch.Tensor:
    """GPT-2: [q; k; v]. NeoX: [q_h; k_h; v_h] head after head. Weights [rows, in] or biases [rows]."""
    if fam == GPT2:
        return torch.cat((q, k, v))
    return torch.stack([t.reshape(n_heads, -1, *t.shape[1:]) for t in (q, k, v)], 1).reshape(-1, *q.shape[1:])


def _split_qkv(fam: str, t: torch.Tensor, n_heads: int) -> list[torch.Tensor]:
    if fam == GPT2:
        return list(t.chunk(3))
    return [p.reshape(-1, *t.shape[1:]) for p in t.reshape(n_heads, 3, -1, *t.shape[1:]).unbind(1)]


# --- lmlab -> HF -----------------------------------------------------------------------------------

def _full_width(sd: dict, pairs, tied: bool, centre: bool) -> tuple[dict, bool]:
    """A crmsnorm model's tensors on a full-width stream (see the module docstring)."""
    sd = dict(sd)
    for a, f in pairs:
        for writer in (f"{a}.mixer.o_proj", f"{f}.mixer.down"):
            for kind in ("weight", "bias"):
                if f"{writer}.{kind}" in sd:
                    t = sd[f"{writer}.{kind}"]
                    sd[f"{writer}.{kind}"] = torch.cat((t, -t.sum(0, keepdim=True)))
    if centre:  # an RMSNorm family needs the zero-mean stream lmlab's to_stream makes
        if tied:
            sd["lm_head.weight"], tied = sd["embed.weight"], False
        sd["embed.weight"] = sd["embed.weight"] - sd["embed.weight"].mean(1, keepdim=True)
    return sd, tied


def _hf_config(fam: str, cfg, n_layers: int, d_ff: int, tied: bool) -> dict:
    d, rope_theta = cfg.d_model, cfg.rope_base
    common = {"vocab_size": cfg.vocab_size, "tie_word_embeddings": tied, "bos_token_id": None,
              "eos_token_id": None, "torch_dtype": "float32"}
    if fam == LLAMA:
        return {"architectures": ["LlamaForCausalLM"], "model_type": LLAMA, **common,
                "hidden_size": d, "intermediate_size": d_ff, "num_hidden_layers": n_layers,
                "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.n_kv_heads or cfg.n_heads,
                "head_dim": d // cfg.n_heads, "hidden_act": "silu", "max_position_embeddings": cfg.context,
                "rms_norm_eps": cfg.norm_eps,
                # both spellings: transformers 5 reads rope_parameters, 4.x reads rope_theta
                "rope_theta": rope_theta, "rope_parameters": {"rope_type": "default", "rope_theta": rope_theta},
                "attention_bias": cfg.bias, "mlp_bias": cfg.bias, "attention_dropout": 0.0}
    if fam == NEOX:
        return {"architectures": ["GPTNeoXForCausalLM"], "model_type": NEOX, **common,
                "hidden_size": d, "intermediate_size": d_ff, "num_hidden_layers": n_layers,
                "num_attention_heads": cfg.n_heads, "hidden_act": GELU_TO_HF[cfg.activation],
                "max_position_embeddings": cfg.context, "layer_norm_eps": cfg.norm_eps,
                "use_parallel_residual": False, "attention_bias": cfg.bias,
                # both spellings: transformers 5 reads rope_parameters, 4.x rotary_pct / rotary_emb_base
                "rotary_pct": 1.0, "rotary_emb_base": rope_theta,
                "rope_parameters": {"rope_type": "default", "rope_theta": rope_theta, "partial_rotary_factor": 1.0},
                "hidden_dropout": cfg.dropout, "attention_dropout": cfg.dropout}
    return {"architectures": ["GPT2LMHeadModel"], "model_type": GPT2, **common,
            "n_embd": d, "n_layer": n_layers, "n_head": cfg.n_heads, "n_positions": cfg.context, "n_inner": d_ff,
            "activation_function": GELU_TO_HF[cfg.activation], "layer_norm_epsilon": cfg.norm_eps,
            "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout, "scale_attn_weights": True,
            "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False}


def to_hf(model) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config.json dict, HF state dict) for an lmlab Transformer."""
    cfg = model.cfg
    fam = family(cfg)
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    pairs = _sublayer_pairs([list(b.sublayers) for b in model.blocks])
    tied = model.tied
    if cfg.norm == "crmsnorm":
        sd, tied = _full_width(sd, pairs, tied, centre=fam == LLAMA)
    d = cfg.d_model
    out: dict[str, torch.Tensor] = {f"{EMBED[fam]}.weight": sd["embed.weight"]}

    def put(ours: str, theirs: str, transposed: bool, hf_bias: str, norm: bool = False):
        w = sd.get(f"{ours}.weight", torch.ones(d) if norm else None)  # norm_affine=false: gain 1
        out[f"{theirs}.weight"] = w.t() if transposed else w
        if hf_bias == ALWAYS or (hf_bias == MODEL and cfg.bias):
            out[f"{theirs}.bias"] = sd.get(f"{ours}.bias", torch.zeros(w.shape[0]))

    if fam == GPT2:
        out["transformer.wpe.weight"] = sd["pos_embed.weight"]
    for i, (a, f) in enumerate(pairs):
        h = LAYER[fam].format(i)
        for ours, theirs, transposed, hf_bias in _layer_tensors(fam, a, f, h):
            put(ours, theirs, transposed, hf_bias, norm=ours.endswith(".norm"))
        if fam in FUSED_QKV:
            qkv = [f"{a}.mixer.{p}" for p in ("q_proj", "k_proj", "v_proj")]
            w = _fuse_qkv(fam, *[sd[f"{p}.weight"] for p in qkv], cfg.n_heads)
            out[f"{h}.{FUSED_QKV[fam]}.weight"] = w.t() if fam == GPT2 else w
            if fam == GPT2 or cfg.bias:
                out[f"{h}.{FUSED_QKV[fam]}.bias"] = _fuse_qkv(
                    fam, *[sd.get(f"{p}.bias", torch.zeros(d)) for p in qkv], cfg.n_heads)
    put("final_norm", FINAL_NORM[fam], False, NEVER if fam == LLAMA else ALWAYS, norm=True)
    if not tied:
        out[f"{HEAD[fam]}.weight"] = sd["lm_head.weight"]
    d_ff = sd[f"{pairs[0][1]}.mixer.up.weight"].shape[0]
    return _hf_config(fam, cfg, len(pairs), d_ff, tied), {k: v.contiguous() for k, v in out.items()}


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


def hf_logit_diff(model, hf_dir, n_tokens: int = 32) -> float | None:
    """Max |logit difference| between the lmlab model and transformers on the exported files, or None
    when transformers is not installed."""
    try:
        import transformers
    except ImportError:
        return None

    hf = transformers.AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, model.cfg.vocab_size, (2, min(n_tokens, model.cfg.context)), generator=gen)
    with torch.no_grad():
        ours = model.float()(idx)[0]
        theirs = hf(idx).logits
    return float((ours - theirs).abs().max())


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


def _gelu_from_hf(field: str, name: str) -> str:
    if name not in GELU_FROM_HF:
        raise LmlabError(f"import-hf: {field}={name!r} is unsupported (lmlab's mlp has tanh-approximate "
                         "GELU: gelu_new, gelu_pytorch_tanh; or exact GELU: gelu)")
    return GELU_FROM_HF[name]


def _default_rope(hf: dict) -> dict:
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind != "default":
        raise LmlabError(f"import-hf: rope type {kind!r} is unsupported (only default RoPE)")
    return rope


def model_config_from_hf(hf: dict):
    """An lmlab ModelConfig for a Llama, GPT-2 or GPT-NeoX config.json; LmlabError for anything else."""
    from .config import ModelConfig

    kind = hf.get("model_type")
    if kind == LLAMA:
        if hf.get("hidden_act", "silu") != "silu":
            raise LmlabError(f"import-hf: hidden_act={hf['hidden_act']!r} is unsupported (lmlab swiglu uses silu)")
        rope = _default_rope(hf)
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
    if kind == NEOX:
        # HF's defaults are GPT-NeoX-20B's / Pythia's: parallel residuals, rotary on a quarter of each head
        if hf.get("use_parallel_residual", True):
            raise LmlabError("import-hf: use_parallel_residual=true is unsupported (lmlab blocks are sequential)")
        rope = _default_rope(hf)
        rotary = rope.get("partial_rotary_factor", hf.get("rotary_pct", 0.25))
        if rotary != 1.0:
            raise LmlabError(f"import-hf: rotary_pct={rotary} is unsupported (lmlab rotates whole heads: 1.0)")
        d = hf["hidden_size"]
        return ModelConfig(
            n_layers=hf["num_hidden_layers"], d_model=d, n_heads=hf["num_attention_heads"],
            context=hf.get("max_position_embeddings", 2048), vocab_size=hf["vocab_size"], positions="rope",
            rope_base=float(rope.get("rope_theta", hf.get("rotary_emb_base", 10000.0))),
            norm="layernorm", norm_eps=hf.get("layer_norm_eps", 1e-5), ffn="mlp",
            d_ff=hf.get("intermediate_size") or 4 * d, activation=_gelu_from_hf("hidden_act", hf.get("hidden_act", "gelu")),
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)), bias=bool(hf.get("attention_bias", True)),
            dropout=0.0)
    if kind == GPT2:
        activation = _gelu_from_hf("activation_function", hf.get("activation_function", "gelu_new"))
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
            activation=activation, tie_embeddings=bool(hf.get("tie_word_embeddings", True)), bias=True, dropout=0.0)
    raise LmlabError(f"import-hf: model_type {kind!r} is unsupported; supported: {', '.join(NAMES)}")


def _strip_prefix(sd: dict, kind: str) -> dict:
    """HF checkpoints sometimes omit the base-model prefix ('model.', 'transformer.', 'gpt_neox.')."""
    prefix = EMBED[kind].split(".")[0] + "."
    if any(k.startswith(prefix) for k in sd):
        return sd
    return {(k if k.startswith(("lm_head.", "embed_out.")) else prefix + k): v for k, v in sd.items()}


def _neox_needs_bias(mcfg, sd: dict) -> bool:
    """A NeoX model without attention biases still has MLP and LayerNorm ones: lmlab keeps them (and
    zero attention biases) with model.bias=true unless they are all zero."""
    return mcfg.bias or any(t.any() for k, t in sd.items() if k.endswith(("norm.bias", "dense_h_to_4h.bias", "dense_4h_to_h.bias")))


def from_hf_state(mcfg, hf_sd: dict, kind: str, hf_model_bias: bool | None = None) -> dict[str, torch.Tensor]:
    """lmlab state dict from an HF one (inverse of `to_hf`); hf_model_bias: the HF config's own bias
    switch (NeoX: attention_bias) when it differs from mcfg.bias."""
    sd = _strip_prefix({k: v.float() for k, v in hf_sd.items()}, kind)
    if kind == NEOX and "lm_head.weight" in sd:  # as transformers 5 may save it
        sd.setdefault("embed_out.weight", sd["lm_head.weight"])
    hf_model_bias = mcfg.bias if hf_model_bias is None else hf_model_bias
    out: dict[str, torch.Tensor] = {}

    def take(name: str, zeros: int | None = None) -> torch.Tensor:
        """The HF tensor; or, for a bias the HF config switched off, `zeros` zeros."""
        if name not in sd:
            if zeros is not None:
                return torch.zeros(zeros)
            raise LmlabError(f"import-hf: tensor {name} is missing from the checkpoint")
        return sd[name]

    def get(ours: str, theirs: str, transposed: bool, hf_bias: str, norm: bool) -> None:
        w = take(f"{theirs}.weight")
        out[f"{ours}.weight"] = w.t() if transposed else w
        if mcfg.bias and not (norm and mcfg.norm != "layernorm"):
            absent = hf_bias == MODEL and not hf_model_bias
            out[f"{ours}.bias"] = take(f"{theirs}.bias", w.shape[1 if transposed else 0] if absent else None)

    out["embed.weight"] = take(f"{EMBED[kind]}.weight")
    if kind == GPT2:
        out["pos_embed.weight"] = take("transformer.wpe.weight")
    for i, (a, f) in enumerate(_sublayer_pairs([["attn", "ffn"]] * mcfg.n_layers)):
        h = LAYER[kind].format(i)
        for ours, theirs, transposed, hf_bias in _layer_tensors(kind, a, f, h):
            get(ours, theirs, transposed, hf_bias, norm=ours.endswith(".norm"))
        if kind in FUSED_QKV:
            w = take(f"{h}.{FUSED_QKV[kind]}.weight")
            parts = _split_qkv(kind, w.t() if kind == GPT2 else w, mcfg.n_heads)
            biases = (_split_qkv(kind, take(f"{h}.{FUSED_QKV[kind]}.bias", None if hf_model_bias else 3 * mcfg.d_model),
                                 mcfg.n_heads) if mcfg.bias else [None] * 3)
            for p, wp, bp in zip(("q_proj", "k_proj", "v_proj"), parts, biases):
                out[f"{a}.mixer.{p}.weight"] = wp
                if bp is not None:
                    out[f"{a}.mixer.{p}.bias"] = bp
    get("final_norm", FINAL_NORM[kind], False, NEVER if kind == LLAMA else ALWAYS, norm=True)
    if not mcfg.tie_embeddings:
        out["lm_head.weight"] = take(f"{HEAD[kind]}.weight")
    return {k: v.contiguous() for k, v in out.items()}


def load_hf_dir(directory):
    """(lmlab ModelConfig, lmlab state dict) from an HF Llama, GPT-2 or GPT-NeoX directory of safetensors files."""
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
    hf_model_bias = mcfg.bias
    if hf["model_type"] == NEOX:
        mcfg.bias = _neox_needs_bias(mcfg, sd)
    return mcfg, from_hf_state(mcfg, sd, hf["model_type"], hf_model_bias)
