"""Keep a benchmark process's large allocations mapped, so no engine page-faults per call.

glibc's malloc serves a block above its *mmap threshold* with a fresh ``mmap`` and unmaps it
on ``free``, so a call that allocates such a block again faults every page of it in
(zero-filled by the kernel). The threshold adapts to the process's history (freeing an
mmapped block raises it to that block's size, up to 32 MiB; the heap is trimmed back to the
OS above its trim threshold), so whether a model's activations fault on every call depends on
what the process allocated and freed before. PyTorch allocates every activation per call:
the super-resolution model at 256² took 35,000 minor page faults per call and 108-133 ms in
some processes, 61-68 ms with none in others (2 threads, Zen 4; BENCHMARKS.md, "Slow
processes"). TVM's VM keeps its tensors in a pool: no faults either way.

:func:`steady_allocator` raises both thresholds to 1 GiB (``mallopt``): freed blocks stay in
the heap for the next call, as in a long-running server or under jemalloc / tcmalloc, and
PyTorch is timed at its steady speed in every process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

#: glibc ``mallopt`` parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: both thresholds: far above any one activation of the models benchmarked here
STEADY_THRESHOLD = 1 << 30


@functools.cache
def steady_allocator() -> str:
    """Set this process's malloc thresholds (module docstring) where the C library is glibc;
    what was done, for the benchmark's record. Done once per process (later calls return the
    first call's record)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        # gnu_get_libc_version exists in glibc only (musl and macOS have no mallopt thresholds)
        libc_version = libc.gnu_get_libc_version
    except (OSError, AttributeError, TypeError):
        return "allocator unchanged (not glibc)"
    libc_version.restype = ctypes.c_char_p
    version = libc_version()
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    ok = all(mallopt(p, STEADY_THRESHOLD) == 1 for p in (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD))
    release = version.decode() if version else "?"
    if not ok:
        return f"allocator unchanged (glibc {release} refused mallopt)"
    return f"glibc {release} malloc: mmap and trim thresholds {STEADY_THRESHOLD >> 20} MiB"
