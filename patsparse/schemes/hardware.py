"""Vector widths that decide block sizes (block-pattern and block schemes)."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

#: fp32 lanes of the widest SIMD register per target family
VECTOR_WIDTH: dict[str, int] = {"avx512": 16, "avx2": 8, "sse": 4, "neon": 4, "adreno": 4}


@functools.lru_cache(maxsize=1)
def host_simd() -> str:
    """The host's widest fp32 SIMD family: ``avx512``, ``avx2``, ``sse`` or ``neon``."""
    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64") or machine.startswith("arm"):
        return "neon"
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "avx2"
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags or "avx" in flags:
        return "avx2"
    return "sse"


def default_block_size(target: str = "host") -> int:
    """Filters per block for a target: its fp32 vector width (16 AVX-512, 8 AVX2, 4 NEON)."""
    if target == "host":
        return VECTOR_WIDTH[host_simd()]
    if target in ("arm64", "aarch64"):
        return VECTOR_WIDTH["neon"]
    if target in VECTOR_WIDTH:
        return VECTOR_WIDTH[target]
    raise ValueError(
        f"unknown target {target!r} for a block size; use one of host, arm64, "
        f"{', '.join(VECTOR_WIDTH)} or pass block_size explicitly"
    )
