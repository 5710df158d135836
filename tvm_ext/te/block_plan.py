"""Plan of a block layer's single conv stage (``ps_conv_all``): its patterns' slots laid out
as equal-length columns (:func:`block_columns`) and merged into one weight and one channel
array (:func:`merged_block_arrays`)."""

from __future__ import annotations

import math

import numpy as np

from tvm_ext.layout import SparseConvLayout

#: most columns :func:`block_columns` splits a block layer's patterns into; the kernel
#: unrolls them (columns x taps x register-tile FMAs per slot), so beyond this every pattern
#: is one column padded to the longest (where kept counts are large the padding is small)
MAX_COLUMNS = 48


def block_columns(layout: SparseConvLayout) -> tuple[tuple[tuple[int, int], ...], int]:
    """How a block layer's slots are laid out for the kernel: ``(columns, slots)``, each
    column ``(pattern, first slot)`` holding ``slots`` slots of that pattern.

    Patterns with unequal slot counts ``c_p`` would each be padded to the longest, wasting
    ``P * max(c_p) / sum(c_p)`` of the work (1.33x for 12 kept channels over 8 patterns,
    e.g. 2+2+2+2+1+1+1+1). Instead each pattern is split into ``c_p / gcd(c)`` columns of
    ``gcd(c)`` slots: every column has the same length and nothing is padded, as long as
    there are at most :data:`MAX_COLUMNS` columns (else one padded column per pattern).
    """
    counts = [int(v.shape[1]) for v in layout.values]
    step = math.gcd(*counts)
    cols = tuple((p, s) for p, c in enumerate(counts) for s in range(0, c, step))
    if len(cols) <= MAX_COLUMNS:
        return cols, step
    return tuple((p, 0) for p in range(len(counts))), max(counts)


def column_taps(layout: SparseConvLayout) -> list[tuple[tuple[int, int], ...]]:
    """The (dy, dx) taps of each column of :func:`block_columns`."""
    cols, _ = block_columns(layout)
    return [layout.taps(p) for p, _ in cols]


def merged_block_arrays(layout: SparseConvLayout) -> tuple[np.ndarray, np.ndarray]:
    """Block layers: every column (:func:`block_columns`) in one ``(rows, columns, slots,
    taps, G)`` weight array and one ``(rows, columns, slots)`` channel array; slots a row
    does not fill hold zero weights (channel 0)."""
    cols, step = block_columns(layout)
    ntaps, g = int(layout.values[0].shape[2]), layout.block
    vals = np.zeros((layout.rows, len(cols), step, ntaps, g), dtype=np.float32)
    chans = np.zeros((layout.rows, len(cols), step), dtype=np.int32)
    for j, (p, first) in enumerate(cols):
        v = layout.values[p][:, first : first + step]
        vals[:, j, : v.shape[1]] = v
        chans[:, j, : v.shape[1]] = layout.channels[p][:, first : first + step]
    return vals, chans
