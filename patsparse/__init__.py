"""patsparse: pattern-based sparsity for CNNs, from PyTorch pruning to fast TVM kernels."""

from patsparse._version import __version__

__all__ = ["__version__"]
