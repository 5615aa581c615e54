"""Configuration: one dataclass per section, TOML presets, `section.key=value` overrides.

Every mistake (unknown section or key, wrong type, a value out of its range in RANGES/CHOICES) is
an LmlabError that names what is valid.
"""
from __future__ import annotations

import dataclasses
import json
import math
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
    causal: bool = True           # false = bidirectional mixers (attention, M, L) for masked-LM training


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
    task: str = ""                # a task directory (lmlab task make): train on it, the loss on answers only


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
    objective: str = "clm"        # clm (next token) | mlm (masked tokens) | denoise (see lmlab.train.objectives)
    mask_rate: float = 0.15       # mlm: fraction of positions predicted (80% [MASK], 10% random, 10% kept)
    mask_span: float = 1.0        # mlm: mean length of masked spans (1 = single tokens; >1 = geometric spans)
    noise: str = "sub=0.1,del=0.05,ins=0.05,char=0.05"  # denoise: noise kinds and rates (lmlab.data.noise)


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
    dtype: str = "auto"           # sampling weights/compute: auto (bf16 where native, else fp32) | float32 | bfloat16 | int8 | w8a8
    compile: bool = False         # torch.compile the decoder (pays off for long or many generations; see performance.md)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)


SECTIONS = tuple(f.name for f in dataclasses.fields(Config))


@dataclass(frozen=True)
class Range:
    """Allowed values of a number: low and/or high bound, each inclusive unless marked open."""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high}"
        return f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"

    def check(self, name: str, value) -> None:
        if value not in self:
            raise LmlabError(f"{name} must be {self}, got {value!r}")


COUNT = Range(1)                  # sizes, steps, counts: at least one
NONNEG = Range(0)                 # 0 usually means "off" or "the default"
POSITIVE = Range(0, low_open=True)
FRACTION = Range(0, 1, high_open=True)
UNIT = Range(0, 1, low_open=True)  # (0, 1]

# Every int and float field's allowed values (tests/test_config.py checks that none is missing).
RANGES: dict[str, Range] = {
    **{f"model.{k}": COUNT for k in ("n_layers", "d_model", "n_heads", "context", "glyph_size", "ssm_state",
                                     "ssm_expand", "ssm_head_dim", "ssm_conv", "lmu_order", "ffn_blocks",
                                     "moe_experts", "moe_top_k")},
    **{f"model.{k}": NONNEG for k in ("n_kv_heads", "vocab_size", "d_ff", "glyph_augment", "meta_tokens",
                                      "lmu_theta", "lmu_channels", "moe_capacity", "moe_aux_weight",
                                      "moe_expert_ff")},
    **{f"model.{k}": POSITIVE for k in ("rope_base", "norm_eps", "init_std")},
    **{f"model.{k}": FRACTION for k in ("dropout", "meta_rate", "self_guided")},
    "model.ffn_rank": UNIT,
    "tokenizer.vocab_size": NONNEG, "tokenizer.transition": NONNEG,
    "data.val_fraction": FRACTION,
    **{f"train.{k}": COUNT for k in ("max_steps", "batch_size", "grad_accum", "eval_batches", "log_every")},
    **{f"train.{k}": NONNEG for k in ("min_lr", "warmup_steps", "weight_decay", "grad_clip", "seed", "eval_every",
                                      "ckpt_every", "keep_last", "threads", "max_minutes", "tp_size")},
    "train.lr": POSITIVE, "train.beta1": FRACTION, "train.beta2": FRACTION,
    "train.mask_rate": UNIT, "train.mask_span": Range(1),
    "generate.max_new_tokens": COUNT, "generate.temperature": NONNEG, "generate.top_k": NONNEG,
    "generate.top_p": UNIT, "generate.repetition_penalty": POSITIVE, "generate.seed": NONNEG,
}

# String fields with a closed set of values known here (model kinds are checked by the model).
CHOICES: dict[str, tuple[str, ...]] = {
    "train.dtype": ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16"),
    "train.parallel": ("ddp", "fsdp", "tp", "fsdp+tp"),
    "train.offload": ("", "optimizer"),
    "train.objective": ("clm", "mlm", "denoise"),
    "generate.dtype": ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16", "int8", "w8a8"),
}


def check_field(name: str, value) -> None:
    """Refuse a value outside the field's range or choices (also used for CLI options that set it)."""
    if name in RANGES:
        RANGES[name].check(name, value)
    elif name in CHOICES and value not in CHOICES[name]:
        raise LmlabError(f"{name} must be one of {', '.join(CHOICES[name])}, got {value!r}")


def validate(cfg: Config) -> Config:
    for name in (*RANGES, *CHOICES):
        section, key = name.split(".")
        check_field(name, getattr(getattr(cfg, section), key))
    return cfg


# What a resumed run may change: how long and how it runs, what it logs and keeps, the lr schedule
# (max_steps already reshapes it; the optimizer state stays valid), where caches go, and the
# generation defaults. Everything else defines the model, its tokens or the optimisation problem
# (batch, data order, optimizer moments) that the checkpoint belongs to.
RESUMABLE = ("train.max_steps", "train.max_minutes", "train.eval_every", "train.eval_batches", "train.ckpt_every",
             "train.keep_last", "train.log_every", "train.progress", "train.tensorboard", "train.threads",
             "train.device", "train.dtype", "train.compile", "train.parallel", "train.tp_size", "train.lr", "train.min_lr",
             "train.warmup_steps", "data.cache_dir", "generate.*")


def check_resume(run: Config, new: Config, data_ranks: tuple[int, int] | None = None) -> None:
    """Refuse a resume whose config changes a field outside RESUMABLE, naming the first one.

    data_ranks = (the run's, this resume's) data-parallel ranks: train.grad_accum may change when
    grad_accum x data ranks stays the same, i.e. the same batches are drawn on fewer or more ranks."""
    rebatched = data_ranks is not None and run.train.grad_accum * data_ranks[0] == new.train.grad_accum * data_ranks[1]
    for section in SECTIONS:
        if f"{section}.*" in RESUMABLE:
            continue
        for key in _fields(getattr(run, section)):
            name, was, now = f"{section}.{key}", getattr(getattr(run, section), key), getattr(getattr(new, section), key)
            if was == now or name in RESUMABLE or (name == "model.vocab_size" and now == 0):  # 0 = the tokenizer's
                continue
            if name == "train.grad_accum" and rebatched:
                continue
            raise LmlabError(f"{name} cannot change on resume (the run has {was!r}, asked {now!r}); a resume may "
                             f"change only {_grouped(RESUMABLE)}; train into another -o for a new run")


def _grouped(names) -> str:
    """'train.a', 'train.b', 'data.c' -> 'train.{a, b}, data.c'."""
    by_section: dict[str, list[str]] = {}
    for name in names:
        section, key = name.split(".")
        by_section.setdefault(section, []).append(key)
    return ", ".join(f"{s}.{{{', '.join(k)}}}" if len(k) > 1 else f"{s}.{k[0]}" for s, k in by_section.items())


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
    return validate(cfg)


PRESET_DIR = Path(__file__).resolve().parent / "configs"  # package data; ./configs in a checkout links here


def resolve_config_path(name: str) -> Path:
    """A path, or the name of a preset in configs/ ('tiny' -> configs/tiny.toml)."""
    p = Path(name)
    if p.is_file():
        return p
    for candidate in (PRESET_DIR / name, PRESET_DIR / f"{name}.toml"):
        if candidate.is_file():
            return candidate
    if p.is_dir():
        raise LmlabError(f"config {name} is a directory; give a TOML file or a preset name")
    presets = sorted(q.stem for q in PRESET_DIR.glob("*.toml")) if PRESET_DIR.is_dir() else []
    raise LmlabError(f"config {name!r} not found; presets: {', '.join(presets) or 'none'}")


def load(path: str | None = None, overrides: list[str] | None = None) -> Config:
    cfg = Config()
    if path:
        p = resolve_config_path(path)
        raw = p.read_bytes()
        if not raw.strip():
            raise LmlabError(f"config file {p} is empty")
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise LmlabError(f"config file {p} is not valid UTF-8: byte 0x{raw[e.start]:02x} at offset {e.start}") from None
        except tomllib.TOMLDecodeError as e:
            raise LmlabError(f"config file {p}: invalid TOML: {e}") from None
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
