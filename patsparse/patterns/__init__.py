"""Pattern libraries for 3x3 kernels (see :mod:`patsparse.patterns.library`)."""

from patsparse.patterns.library import (
    ALL_CANDIDATES,
    DESIGNED_8,
    ELOG_4,
    GAUSSIAN_4,
    LIBRARY_NAMES,
    PatternLibrary,
    code_from_mask,
    code_from_positions,
    get_library,
    kernel_codes,
    mask_from_code,
    positions_from_code,
    render,
)

__all__ = [
    "ALL_CANDIDATES",
    "DESIGNED_8",
    "ELOG_4",
    "GAUSSIAN_4",
    "LIBRARY_NAMES",
    "PatternLibrary",
    "code_from_mask",
    "code_from_positions",
    "get_library",
    "kernel_codes",
    "mask_from_code",
    "positions_from_code",
    "render",
]
