"""Configuration: one dataclass per section, TOML presets, `section.key=value` overrides.

Every mistake (unknown section or key, wrong type) is an LmlabError that names what is valid.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .errors import LmlabError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class ModelConfig:
    n_layers: int = 4
    d_model: int = 128
    n_heads: int = 4
    n_kv_heads: int = 0           # 0 = same as n_heads; fewer = grouped-query; 1 = multi-query
    context: int = 256
    vocab_size: int = 0           # 0 = taken from the tokenizer
    positions: str = "rope"       # rope | learned
    rope_base: float = 10000.0
    norm: str = "layernorm"       # layernorm | rmsnorm | crmsnorm
    norm_eps: float = 1e-5
    ffn: str = "mlp"              # mlp (GELU) | swiglu | ... (see lmlab.model.ffn)
    activation: str = "gelu_tanh"  # mlp's GELU: gelu_tanh (GPT-2's approximation) | gelu (exact erf, nanoGPT's)
    d_ff: int = 0                 # 0 = 4*d_model for mlp, 8/3*d_model (rounded to 64) for swiglu
    tie_embeddings: bool = True
    bias: bool = False
    dropout: float = 0.0
    embedding: str = "trainable"  # trainable | glyph | binary | gaussian (see lmlab.embeddings)
    glyph_size: int = 32          # glyph embedding: RxR pixels per rendered token
    glyph_font: str = ""          # glyph embedding: font file(s) tried first (os.pathsep-separated)
    glyph_augment: float = 0.0    # glyph embedding: fixed rotation/shift/noise strength (0 = off)
    pattern: str = "AF"           # block pattern per layer: A attention, F feed-forward
    meta_tokens: int = 0          # learned meta-token embeddings (0 = off; see lmlab.model.meta_tokens)
    meta_rate: float = 0.05       # fraction of training positions given to injected meta-tokens
    ssm_state: int = 16           # M mixer: state size N per head
    ssm_expand: int = 2           # M mixer: inner width = ssm_expand * d_model
    ssm_head_dim: int = 32        # M mixer: channels per head (one decay rate per head)
    ssm_conv: int = 4             # M mixer: causal depthwise conv kernel
    lmu_order: int = 16           # L mixer: Legendre memory order q
    lmu_theta: float = 0.0        # L mixer: memory window in steps (0 = model.context)
    lmu_channels: int = 0         # L mixer: memorised input channels (0 = d_model // 4)
    init_std: float = 0.02
    norm_affine: bool = True      # false = norms without gain/bias (what `lmlab convert` folds them into)
    ffn_rank: float = 0.5         # lowrank/blockdense: rank of each FFN matrix as a fraction of d_model
    ffn_blocks: int = 2           # blockdense/blockshuffle: number of diagonal blocks
    self_guided: float = 0.0      # structured FFNs: fraction of training with a decaying dense guide (0 = off)
    moe_experts: int = 4          # moe: number of experts
    moe_top_k: int = 2            # moe: experts per token
    moe_capacity: float = 0.0     # moe: capacity factor in training (0 = dropless)
    moe_aux_weight: float = 0.01  # moe: weight of the load-balancing loss
    moe_expert_ff: int = 0        # moe: expert width (0 = the dense d_ff / moe_top_k)


@dataclass
class TokenizerConfig:
    kind: str = "char"            # byte | char | unicode | bpe | superbpe
    vocab_size: int = 0           # 0 = the kind's natural size
    path: str = ""                # a trained tokenizer directory; overrides kind
    transition: int = 0           # superbpe: vocab size where stage 2 (superwords) starts; 0 = default


@dataclass
class DataConfig:
    corpus: str = "shakespeare"   # a corpus name, a file, a directory, a .jsonl file, or hf:NAME
    text_field: str = "text"      # JSONL / HF field holding the text
    val_fraction: float = 0.1
    cache_dir: str = ""           # "" = $LMLAB_CACHE or ~/.cache/lmlab


@dataclass
class TrainConfig:
    max_steps: int = 1000
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    dtype: str = "auto"           # auto | float32 | bfloat16 (autocast; master weights stay fp32)
    device: str = "auto"          # auto | cpu | cuda
    compile: bool = False
    seed: int = 1337
    eval_every: int = 200
    eval_batches: int = 20
    ckpt_every: int = 500
    keep_last: int = 2
    log_every: int = 1
    threads: int = 0              # 0 = torch default
    tensorboard: bool = False
    progress: bool = True
    max_minutes: float = 0.0      # 0 = no wall-clock budget; else stop (and checkpoint) after it
    parallel: str = "ddp"         # under torchrun: ddp (DistributedDataParallel) | fsdp (FSDP2 fully_shard) | tp | fsdp+tp
    tp_size: int = 0              # ranks per tensor-parallel group (tp: 0 = all; fsdp+tp: must divide the ranks)
    offload: str = ""             # "" | optimizer: FSDP2 CPUOffloadPolicy (sharded weights, grads, AdamW state on the host)


@dataclass
class GenerateConfig:
    max_new_tokens: int = 200
    temperature: float = 0.8
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int = 0
    stop: list = field(default_factory=list)
    prompts: list = field(default_factory=lambda: ["\n"])
    dtype: str = "auto"           # sampling weights/compute: auto (bf16 where native, else fp32) | float32 | bfloat16 | int8
    compile: bool = False         # torch.compile the decoder (pays off for long or many generations; see performance.md)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)


SECTIONS = tuple(f.name for f in dataclasses.fields(Config))


def _fields(obj) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(obj)}


def _coerce(section: str, key: str, value, target_type, from_string: bool):
    """Check (and for --set strings, parse) a value against the field's declared type."""
    name = f"{section}.{key}"
    origin = typing.get_origin(target_type) or target_type
    if isinstance(target_type, str):  # postponed annotations
        origin = {"int": int, "float": float, "str": str, "bool": bool, "list": list}[target_type]
    if from_string:
        if origin is str:
            return value
        try:
            value = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            raise LmlabError(f"{name}: cannot parse {value!r} as {origin.__name__}") from None
    if origin is bool:
        if isinstance(value, bool):
            return value
    elif origin is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif origin is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif origin is str:
        if isinstance(value, str):
            return value
    elif origin is list:
        if isinstance(value, list):
            return value
        if isinstance(value, str):
            return [value]
    raise LmlabError(f"{name} must be {origin.__name__}, got {value!r}")


def _set(cfg: Config, section: str, key: str, value, from_string: bool) -> None:
    if section not in SECTIONS:
        raise LmlabError(f"unknown config section {section!r}; valid sections: {', '.join(SECTIONS)}")
    sub = getattr(cfg, section)
    fields = _fields(sub)
    if key not in fields:
        raise LmlabError(f"unknown config key {section}.{key}; valid keys in [{section}]: {', '.join(fields)}")
    setattr(sub, key, _coerce(section, key, value, fields[key].type, from_string))


def from_dict(data: dict, base: Config | None = None) -> Config:
    cfg = base if base is not None else Config()
    for section, values in data.items():
        if not isinstance(values, dict):
            raise LmlabError(f"config: {section!r} must be a [section]; valid sections: {', '.join(SECTIONS)}")
        for key, value in values.items():
            _set(cfg, section, key, value, from_string=False)
    return cfg


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    for item in overrides or []:
        if "=" not in item:
            raise LmlabError(f"override {item!r} must look like section.key=value")
        path, value = item.split("=", 1)
        if "." not in path:
            raise LmlabError(f"override {item!r} must name a section: section.key=value; sections: {', '.join(SECTIONS)}")
        section, key = path.strip().split(".", 1)
        _set(cfg, section, key, value.strip(), from_string=True)
    return cfg


PRESET_DIR = Path(__file__).resolve().parents[2] / "configs"


def resolve_config_path(name: str) -> Path:
    """A path, or the name of a preset in configs/ ('tiny' -> configs/tiny.toml)."""
    p = Path(name)
    if p.is_file():
        return p
    for candidate in (PRESET_DIR / name, PRESET_DIR / f"{name}.toml"):
        if candidate.is_file():
            return candidate
    presets = sorted(q.stem for q in PRESET_DIR.glob("*.toml")) if PRESET_DIR.is_dir() else []
    raise LmlabError(f"config {name!r} not found; presets: {', '.join(presets) or 'none'}")


def load(path: str | None = None, overrides: list[str] | None = None) -> Config:
    cfg = Config()
    if path:
        p = resolve_config_path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise LmlabError(f"{p}: invalid TOML: {e}") from None
        from_dict(data, cfg)
    return apply_overrides(cfg, overrides or [])


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def to_toml(cfg: Config) -> str:
    lines = []
    for section, values in to_dict(cfg).items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value, ensure_ascii=False)}")
        lines.append("")
    return "\n".join(lines)


def save(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(to_toml(cfg), encoding="utf-8")
