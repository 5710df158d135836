"""Pruning schemes as Euclidean projections, and per-layer plans (see :mod:`.base`)."""

from patsparse.schemes.base import (
    Scheme,
    make_scheme,
    scheme_class,
    scheme_from_dict,
    scheme_names,
)
from patsparse.schemes.hardware import default_block_size, host_simd
from patsparse.schemes.options import scheme_from_options
from patsparse.schemes.pattern import (
    BlockPatternScheme,
    ConnectivityScheme,
    PatternConnectivityScheme,
    PatternScheme,
    best_patterns,
    cluster_filters,
    pattern_energies,
)
from patsparse.schemes.plan import LayerDecision, PruningPlan, prunable_layers
from patsparse.schemes.structured import (
    BlockScheme,
    ChannelScheme,
    ColumnScheme,
    FilterScheme,
    UnstructuredScheme,
)

__all__ = [
    "BlockPatternScheme",
    "BlockScheme",
    "ChannelScheme",
    "ColumnScheme",
    "ConnectivityScheme",
    "FilterScheme",
    "LayerDecision",
    "PatternConnectivityScheme",
    "PatternScheme",
    "PruningPlan",
    "Scheme",
    "UnstructuredScheme",
    "best_patterns",
    "cluster_filters",
    "default_block_size",
    "host_simd",
    "make_scheme",
    "pattern_energies",
    "prunable_layers",
    "scheme_class",
    "scheme_from_dict",
    "scheme_from_options",
    "scheme_names",
]
