"""Sparse weight formats shared by the PyTorch and TVM sides."""

from patsparse.formats.fkw import (
    PatternSparseWeight,
    csr_nbytes,
    dense_nbytes,
    kernel_codes_np,
    reorder_filters,
)

__all__ = [
    "PatternSparseWeight",
    "csr_nbytes",
    "dense_nbytes",
    "kernel_codes_np",
    "reorder_filters",
]
