"""Readying a loaded model for inference: sampling dtype, packed or int8 weights, fused q/k/v,
the compiled decoder and its inductor settings."""
from __future__ import annotations

import os
import shutil
import warnings

import torch

from ..device import pick_dtype
from ..errors import LmlabError
from ..model.packed import PackedLinear, can_pack, pack_linears
from ..model.swap import untie_head
from ..model.widened import bf16_matmul_is_slow, widen_linears


# generate.dtype: the training dtypes, plus int8 weights for decoding
DTYPE_NAMES = ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16", "int8", "w8a8")
INT8_NAMES = ("int8", "w8a8")


def for_inference(model, name: str, device: torch.device, pack: bool = True, compile: bool = False):
    """Ready a model for sampling; returns it (changed in place, or compiled). Measured in
    docs/performance.md:
    - bf16 ("auto" where native): decoding one token reads every weight once, so half the bytes
      decode faster; logits differ from fp32 by bf16 rounding. On a CPU the bf16 linear layers
      get their weights prepacked for oneDNN (model/packed.py: identical results, faster), unless
      pack=False or compiling (dynamo cannot trace the packed weights; freezing packs them anyway).
      On a CPU whose oneDNN has no bf16 path, the bf16 layers' products of several rows (prompts,
      batches) run in fp32 instead (model/widened.py: bf16's matmul is many times slower there).
    - "int8": every linear layer's weights, the head included, rounded to int8 per output row
      (model/int8.py); activations bf16 on CPU, or the GPU's half type (prompts' products in fp32
      where bf16 matmuls are slow, as for bf16).
    - "w8a8": int8 weights as "int8", and each layer's input rounded to int8 per token at run time
      (W8A8Linear, as llama.cpp's q8_0): on a CPU, one-token steps run lmlab's int8 kernel
      (lmlab/kernels, built on first use and cached), the fastest int8 decoding measured.
    - compile: torch.compile for decoding (compiled_for_decoding).
    With packing, int8 or compiling, each attention's q/k/v become one projection (fuse_projections).
    The CPU KV cache is fp32 for half-precision models (attention.cache_dtype)."""
    if name not in DTYPE_NAMES:
        raise LmlabError(f"dtype {name!r} unknown; valid: {', '.join(DTYPE_NAMES)}")
    if name in INT8_NAMES:  # activations in the device's half type (bf16 on a CPU)
        dtype = torch.bfloat16 if device.type == "cpu" else pick_dtype("auto", device)
    else:
        dtype = pick_dtype(name, device)
    if dtype != next(model.parameters()).dtype:
        model.to(dtype)
    packing = name not in INT8_NAMES and pack and not compile and can_pack(device, dtype)
    widening = name not in INT8_NAMES and dtype == torch.bfloat16 and bf16_matmul_is_slow(device)
    if name in INT8_NAMES or packing or compile:
        fuse_projections(model)
    if name in INT8_NAMES:
        from .. import kernels
        from ..model.int8 import Int8Linear, W8A8Linear, quantize_linears

        layer = W8A8Linear if name == "w8a8" else Int8Linear
        if layer is W8A8Linear and device.type == "cpu" and not kernels.load():  # built once per machine, then cached
            warnings.warn(f"lmlab's w8a8 CPU kernel could not be built ({kernels.error()}); w8a8 runs on "
                          "torch ops: the same numbers, slower", stacklevel=2)
        untie_head(model, lambda w: layer(w, None, dtype))
        quantize_linears(model, dtype, layer)
    elif packing:
        untie_head(model, lambda w: PackedLinear(w, None))
        pack_linears(model)
    elif widening:
        from .. import kernels

        kernels.load()  # its one-row bf16 loop (kernels/bf16.cpp); without it bf16 F.linear
        widen_linears(model)
    return compiled_for_decoding(model, device) if compile else model


def fuse_projections(model) -> None:
    """q, k and v in one linear layer per attention (attention.fuse_qkv: the same numbers, fewer
    calls per token), where for_inference re-lays the weights anyway or compiles (measured by
    benchmarks/decode_levers.py); plain eager models keep the three."""
    from ..model.attention import CausalSelfAttention

    for module in model.modules():
        if isinstance(module, CausalSelfAttention) and module.qkv_proj is None:
            module.fuse_qkv()


def compiled_for_decoding(model, device: torch.device, rowsum: bool | None = None):
    """torch.compile the model for token-by-token decoding: calls with one new token per sequence
    run compiled (dynamic shapes: the cache position and the batch size vary), longer chunks eager.
    Measured on CPU at batch 1 (docs/performance.md): it removes most of the per-token framework
    overhead; compiling costs tens of seconds on the first decoding call of each process. The
    weights are frozen into the compiled code (batch graphs; see rowsum for batch 1) and the
    model's modules are not re-checked per token (compiled_step): a model changed afterwards
    (weights, attributes, hooks) must be compiled again; only a move of its weights to another
    dtype or device (`model.to`) is noticed, and compiles new steps. rowsum (default: on a CPU where rowsum_pays): the linear layers become RowSumLinear
    (model/rowsum_linear.py), whose batch-1 products inductor fuses into one streaming loop per matrix."""
    if device.type == "cpu":
        cxx = os.environ.get("CXX") or "g++"
        if not (shutil.which(cxx) or shutil.which("c++") or shutil.which("clang++")):
            raise LmlabError(f"generate.compile on CPU needs a C++ compiler (none found as {cxx}, c++ or "
                             "clang++); install one or set generate.compile=false")
    rowsum = device.type == "cpu" and rowsum_pays(model) if rowsum is None else rowsum
    if rowsum:
        from ..model.rowsum_linear import wrap_linears

        wrap_linears(model)
    # the returned wrapper (callers reach the model as ._orig_mod); its forward is replaced below,
    # so it compiles nothing itself: the compiled code is compiled_step's (batch 1, and batches)
    compiled = torch.compile(model, dynamic=True)
    settings = inductor_settings(device)
    # Freezing would fold each row-sum's widened W.float() into an fp32 constant (bf16 and int8 then
    # read fp32's bytes), so batch-1 graphs compile without it; batches keep it (oneDNN prepacking).
    # Nor with the w8a8 kernel: freezing re-lays its constant codes, which the kernel then copies back per call.
    one_row_settings = {**settings, "freezing": False} if rowsum or _runs_w8a8_kernel(model) else settings
    steps = {}

    def compile_steps():
        # compiled_step drops dynamo's guards on the model, which would have caught model.to(...)
        # after compiling (the graphs' kernels would read the new tensors as the old): checked here
        steps.update(weights_as=weights_as(model), one_row=_with_inductor_settings(compiled_step(model), one_row_settings),
                     rows=_with_inductor_settings(compiled_step(model), settings))

    compile_steps()

    def forward(idx, targets=None, cache=None):
        # Only one-token steps at cache positions >= 2 run compiled. Prompts and re-encoded windows
        # (several tokens) and the first two steps after a one-token prompt (an empty cache takes
        # other code paths, and dynamo specialises position 1) run eager, once per prompt:
        # compiling them too would add a second compile (docs/performance.md, compiled decoder).
        if idx.shape[-1] > 1 or cache is None or cache.pos < 2 or targets is not None:
            return model(idx, targets, cache)
        if weights_as(model) != steps["weights_as"]:
            compile_steps()
        return steps["one_row" if idx.shape[0] == 1 else "rows"](idx, cache=cache)

    compiled.forward = forward
    return compiled


def compiled_step(model):
    """torch.compile of one decoding call `step(idx, cache)` of `model`, without dynamo's guards on
    the model's own modules (unless decoding_model_guards). Those re-check every submodule's
    attributes and parameters before each token (1.0-1.7 ms per token at the 100M shape, 0.4-0.8
    at shakespeare-char's: benchmarks/decode_guards.py, docs/performance.md) and fail only when the model itself is
    changed, which compiled_for_decoding already asks to be compiled again for (dynamo never
    guards hooks added later either: its skip_nnmodule_hook_guards). The guards on the call's
    inputs (the token, the cache's tensors, its position and every shape relation among them) and
    on the global state stay. Dynamo files compiled graphs under the code object they came from
    and, with the model's guards gone, would hand one model's graphs to another model's calls:
    each step gets a code object of its own."""
    def step(idx, cache):
        return model(idx, cache=cache)

    step.__code__ = step.__code__.replace()  # a new code object: this model's graphs only
    options = {} if decoding_model_guards else {"guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe}
    return torch.compile(step, dynamic=True, options=options)


decoding_model_guards = False  # benchmarks/decode_guards.py sets it for its baseline


def weights_as(model) -> tuple:
    """The first parameter's dtype and device (what `model.to(...)` changes)."""
    first = next(model.parameters(), None)
    return (first.dtype, first.device) if first is not None else ()


def rowsum_pays(model) -> bool:
    """Whether the row-sum layers beat the layers' own kernels at batch 1 on this CPU, as measured
    (docs/performance.md, row-sum products; benchmarks/decode_rowsum.py): fp32 and bf16 won at every
    size measured (1.5-2.7x from the demo shape to 100M); int8 won past the smallest (shakespeare-char
    shape, 10.7 MB of codes, 1.28x; 100M 1.32x) but lost at the demo shape (3.2 MB, 0.84x), where
    `_weight_int8pack_mm` works from the cache. So int8 takes them past a quarter of the last-level
    cache (8 MiB here): a point between the two measured sizes, not a measured crossover. All of
    that on a CPU with AVX-512: on one with AVX2 only, inductor's loop over int8 codes ran scalar,
    slower than `_weight_int8pack_mm` and compiled int8 decoding slower than eager, so int8 keeps
    the layers there (docs/performance.md, Zen 3)."""
    from ..bench import cpu_info, decode_bytes_per_token
    from ..model.int8 import Int8Linear, W8A8Linear

    int8 = [m for m in model.modules() if isinstance(m, Int8Linear)]
    if not int8:
        return True
    if any(isinstance(m, W8A8Linear) for m in int8):  # the row-sum has no int8 activations
        return False
    if "avx512f" not in cpu_info()["isa"]:
        return False
    return decode_bytes_per_token(model, 0)["weights"] > last_level_cache_bytes() // 4  # what one step reads


def _runs_w8a8_kernel(model) -> bool:
    from ..model.int8 import W8A8Linear

    return any(isinstance(m, W8A8Linear) and m.use_kernel for m in model.modules())


def last_level_cache_bytes(default: int = 32 << 20) -> int:
    """The largest CPU cache Linux reports for cpu0 (sysfs), else `default`."""
    from pathlib import Path

    sizes = []
    for f in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        try:
            text = f.read_text().strip()
            sizes.append(int(text[:-1]) << {"K": 10, "M": 20, "G": 30}[text[-1]] if text[-1] in "KMG" else int(text))
        except (OSError, ValueError, KeyError, IndexError):
            continue
    return max(sizes, default=default)


def inductor_settings(device: torch.device) -> dict:
    """Inductor's settings for the compiled decoder, each measured on CPU at batch 1 (docs/performance.md,
    compiled decoder; benchmarks/decode_levers.py):
    - freezing: the weights become constants of the compiled graph, so inductor can prepack them
      for oneDNN;
    - cpp_wrapper: the compiled graph is called from C++ instead of generated Python, which saves
      interpreter time per token at about the same compile time. CPU only: on a GPU it was neither
      measured nor tried."""
    return {"freezing": True, "cpp_wrapper": device.type == "cpu"}


def _with_inductor_settings(forward, settings: dict):
    """Run `forward` with inductor's config set to `settings`. Dynamo and inductor read them while
    they trace and compile, i.e. inside the call, so they must hold around every call (a recompile
    can come at any token); `torch.compile(options={"freezing": True})` did not reach that point in
    torch 2.13 (measured: no frozen constants). Freezing only applies under no_grad. The settings
    are put back after each call, so other compiles in the process (a training model evaluated
    under no_grad) never get frozen weights."""
    from torch._inductor import config

    def forward_with_settings(*args, **kwargs):
        before = {name: getattr(config, name) for name in settings}
        for name, value in settings.items():
            setattr(config, name, value)
        try:
            return forward(*args, **kwargs)
        finally:
            for name, value in before.items():
                setattr(config, name, value)

    return forward_with_settings
