"""Relax passes, one per file."""

from tvm_ext.passes.pattern_sparse_conv2d import LayerRecord, PatternSparseConv2D

__all__ = ["LayerRecord", "PatternSparseConv2D"]
