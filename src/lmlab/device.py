"""Device and compute-dtype choices ("auto" = the fastest that is numerically safe here)."""
from __future__ import annotations

import contextlib

import torch

from .errors import LmlabError


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise LmlabError("train.device=cuda but no CUDA device is available")
    return torch.device(name)


def cpu_supports_bf16() -> bool:
    # AVX512-BF16 or AMX: oneDNN runs bf16 matmuls natively (several times fp32 speed).
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        return False


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_supports_bf16() else torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if name not in table:
        raise LmlabError(f"dtype {name!r} unknown; valid: auto, float32, bfloat16, float16")
    return table[name]


def autocast(device: torch.device, dtype: torch.dtype):
    """Mixed precision: matmuls in `dtype`, master weights and optimizer state stay fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
