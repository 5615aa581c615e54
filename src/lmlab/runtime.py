"""Process-wide CPU settings that the `lmlab` command applies once at start-up.

The problem: glibc returns every freed block over 32 MiB to the kernel and maps it afresh on the
next allocation, so each training step page-faults its activations in again. Keeping freed memory
in the heap removes the faults; the price is that the process holds on to its peak memory, plus
some fragmentation, until it exits (both measured in docs/performance.md, "Memory and the heap").
It is skipped where it cannot apply (non-glibc) and LMLAB_MALLOC=system turns it off. It is not
complete: torch allocates with 64-byte alignment, glibc's memalign leaves a small tail chunk that
its per-thread cache keeps, and that chunk can pin a freed block away from the heap top, so some
re-allocations still fault (none with GLIBC_TUNABLES=glibc.malloc.tcache_count=0, which has to be
set before the process starts).

OMP_WAIT_POLICY is left to the user and only recorded: PASSIVE rescues training on a CPU shared
with other jobs, but on an idle machine it slows the decoder's two-thread bf16 matrix-vector
products (threads wake too late for tiny matmuls); see docs/performance.md, "A shared CPU".
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's malloc.h
_M_MMAP_MAX = -4
_applied: dict[str, object] = {}


def keep_freed_memory() -> bool:
    """Serve large allocations from the heap and never trim it (glibc only). True if applied."""
    if os.environ.get("LMLAB_MALLOC", "").lower() == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1


def configure() -> dict:
    """Apply the settings once; returns what was applied (also recorded by `lmlab bench`)."""
    if not _applied:
        _applied["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY", "default")
        _applied["keep_freed_memory"] = keep_freed_memory()
    return dict(_applied)
