"""Kept for old imports: device choices live in lmlab.device, inference preparation in
lmlab.infer.prepare."""
from ..device import autocast, cpu_supports_bf16, pick_device, pick_dtype  # noqa: F401
from ..infer.prepare import DTYPE_NAMES, compiled_for_decoding, for_inference, fuse_projections  # noqa: F401
