"""lmlab's own CPU kernels (C++ sources beside this file), built on first use with PyTorch's
extension builder (g++ and ninja) and cached by it (TORCH_EXTENSIONS_DIR, else
~/.cache/torch_extensions); a machine without a compiler keeps PyTorch's kernels.

- `lmlab::w8a8_rows(x, codes, scales, code_sums)`: int8 weights times activations quantised to int8
  per row, for decoding (w8a8.cpp: AVX512-VNNI, AVX2 or scalar loops, whichever the CPU has;
  `isa()` says which); model/int8.py's W8A8Linear uses it on a CPU for one row, and for prompts
  too where it is not the VNNI build. Why and how fast: docs/performance.md, Generation: w8a8.
- `lmlab::bf16_rows(x, w, bias)`: fp32 or bf16 activations times bf16 weights, summed in fp32
  (bf16.cpp: an AVX2 loop, else scalar), for decoding one row on a CPU without native bf16;
  model/widened.py's WidenedLinear uses it there. Why: docs/performance.md, Zen 3.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

import torch

_SOURCES = [Path(__file__).with_name(name) for name in ("w8a8.cpp", "bf16.cpp")]
_state: dict = {}  # "loaded": bool, "error": str


def load() -> bool:
    """Build (once per machine) and load the kernels into torch.ops.lmlab; whether they are there.
    Never raises: a failed build is kept as error() and the callers use PyTorch's kernels."""
    if "loaded" not in _state:
        try:
            _build()
            _state["loaded"] = True
        except Exception as err:  # no compiler, no ninja, an old CPU or compiler: PyTorch's kernels stay
            _state.update(loaded=False, error=f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}")
    return _state["loaded"]


def loaded() -> bool:
    """Whether load() has succeeded in this process (does not build)."""
    return _state.get("loaded", False)


def isa() -> str | None:
    """The instruction set the loaded w8a8 kernel was built for: "avx512_vnni", "avx2" or "scalar"
    (None when not loaded)."""
    return torch.ops.lmlab.w8a8_isa() if loaded() else None


def error() -> str | None:
    """Why load() failed, if it did."""
    return _state.get("error")


def _build() -> None:
    from torch.utils import cpp_extension

    if not (shutil.which(os.environ.get("CXX") or "c++") or shutil.which("g++")):
        raise RuntimeError("no C++ compiler (c++, g++ or $CXX)")
    # ninja from the environment's own bin (pip's ninja wheel) counts too, without activating it
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.environ.get("PATH", "") + os.pathsep + bin_dir
    # -march=native: the build is for this CPU, so its name carries the CPU's feature flags (a home
    # directory shared with another machine gets a build of its own)
    cpp_extension.load(name=f"lmlab_kernels_{_cpu_tag()}", sources=[str(p) for p in _SOURCES],
                       extra_cflags=["-O3", "-march=native", "-fopenmp"], extra_ldflags=["-fopenmp"], is_python_module=False, verbose=False)
    torch.library.register_fake("lmlab::w8a8_rows")(_w8a8_rows_shape)
    torch.library.register_fake("lmlab::bf16_rows")(_bf16_rows_shape)


def _w8a8_rows_shape(x, codes, scales, code_sums):  # for torch.compile: the output's shape and dtype
    return x.new_empty((x.shape[0], codes.shape[0]))


def _bf16_rows_shape(x, w, bias):
    return x.new_empty((x.shape[0], w.shape[0]))


def _cpu_tag() -> str:
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return hashlib.sha256(flags.encode()).hexdigest()[:10]
