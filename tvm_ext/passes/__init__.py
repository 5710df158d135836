"""Relax passes, one per file."""

from tvm_ext.passes.fold_conv_bias_batchnorm import FoldConvBiasBatchNorm
from tvm_ext.passes.pattern_sparse_conv2d import LayerRecord, PatternSparseConv2D

__all__ = ["FoldConvBiasBatchNorm", "LayerRecord", "PatternSparseConv2D"]
