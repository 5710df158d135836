"""Relax passes, one per file."""

from tvm_ext.conv_rewriter import LayerRecord
from tvm_ext.passes.blocked_conv2d import BlockedConv2D
from tvm_ext.passes.chain_conv_layouts import ChainConvLayouts
from tvm_ext.passes.compact_structured_conv2d import CompactStructuredConv2D
from tvm_ext.passes.depthwise_conv2d import DepthwiseConv2D
from tvm_ext.passes.drop_unread_filters import DropUnreadFilters
from tvm_ext.passes.fold_conv_bias_batchnorm import FoldConvBiasBatchNorm
from tvm_ext.passes.linear_as_conv2d import LinearAsConv2D
from tvm_ext.passes.pattern_sparse_conv2d import PatternSparseConv2D
from tvm_ext.passes.thin_sparse_conv2d import ThinSparseConv2D
from tvm_ext.passes.top_one_as_reduce import TopOneAsReduce
from tvm_ext.passes.vector_math import VectorMath

__all__ = [
    "BlockedConv2D",
    "ChainConvLayouts",
    "CompactStructuredConv2D",
    "DepthwiseConv2D",
    "DropUnreadFilters",
    "FoldConvBiasBatchNorm",
    "LayerRecord",
    "LinearAsConv2D",
    "PatternSparseConv2D",
    "ThinSparseConv2D",
    "TopOneAsReduce",
    "VectorMath",
]
