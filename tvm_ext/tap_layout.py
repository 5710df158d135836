"""Zero-tap skipping for pruned large kernels: a ``block`` layout whose "patterns" are single
taps (:func:`analyze_tap_sparse_weight`).

:func:`tvm_ext.layout.analyze_blocked_weight` computes every kept kernel whole: a 9x9 kernel
of which block / column / unstructured pruning keeps 20 taps still costs 81 multiply-adds per
pixel. Here each block of ``G`` filters lists, per tap ``(dy, dx)``, only the input channels
whose weight at that tap is non-zero in some filter of the block, so a tap that is zero across
the block costs nothing. It is the same layout and kernel (``ps_conv_all``: one column per
tap, each with its own channel list), only the tap sets differ, so schedules, tuning rules
and chained layouts take it unchanged. :mod:`tvm_ext.conv_rewriter` takes it when it needs
clearly fewer multiply-adds than whole kernels (:data:`TAP_SKIP_RATIO`).
"""

from __future__ import annotations

import numpy as np

from tvm_ext.layout import Rejection, SparseConvLayout
from tvm_ext.te.block_plan import merged_block_arrays

#: the tap layout is used when its multiply-adds (padding included) are at most this
#: fraction of the whole-kernel layout's: every column reads its own channel list
#: (measured in ``benchmarks/fusion.py --cases taps``, BENCHMARKS.md)
TAP_SKIP_RATIO = 0.75


def analyze_tap_sparse_weight(
    weight: np.ndarray, *, block: int | None = None
) -> SparseConvLayout | Rejection:
    """A ``block`` layout of ``block`` lanes (default 16) with one single-tap pattern per
    kernel position that any filter uses: ``values[p]`` is ``(rows, cmax_p, 1, G)``, the
    channels of tap ``p`` each block keeps. Filters are grouped by identical (channel, tap)
    support where that fills the blocks (block / column pruning), else in their order
    (consecutive filters, as block pruning groups them), whichever needs fewer
    multiply-adds."""
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim != 4:
        return Rejection(f"weight has {w.ndim} dimensions, not 4 (K, C, kh, kw)")
    k, c, kh, kw = (int(d) for d in w.shape)
    g = block or 16
    support = (w != 0).transpose(0, 2, 3, 1).reshape(k, kh * kw, c)  # (K, taps, C)
    if not support.any():
        return Rejection("every kernel is zero")
    candidates = [
        _rows_by_support(support, g),
        [list(range(f, min(f + g, k))) for f in range(0, k, g)],
    ]
    layouts = [_build(w, support, rows, g) for rows in candidates]
    return min(layouts, key=tap_layout_macs)


def tap_layout_macs(layout: SparseConvLayout) -> int:
    """Multiply-adds per output pixel of the kernel's merged arrays (every column padded to
    the longest, :func:`~tvm_ext.te.block_plan.merged_block_arrays`)."""
    vals, _ = merged_block_arrays(layout)
    return int(np.prod(vals.shape))


def _rows_by_support(support: np.ndarray, g: int) -> list[list[int]]:
    """Filters with identical (tap, channel) support together, chunked into blocks of ``g``,
    fullest first."""
    by_sig: dict[bytes, list[int]] = {}
    for f in range(support.shape[0]):
        by_sig.setdefault(support[f].tobytes(), []).append(f)
    sigs = sorted(by_sig, key=lambda s: -int(support[by_sig[s][0]].sum()))
    return [by_sig[s][i : i + g] for s in sigs for i in range(0, len(by_sig[s]), g)]


def _build(w: np.ndarray, support: np.ndarray, rows: list[list[int]], g: int) -> SparseConvLayout:
    k, c, kh, kw = (int(d) for d in w.shape)
    taps = [t for t in range(kh * kw) if support[:, t].any()]
    flat = w.reshape(k, c, kh * kw)
    values, channels = [], []
    for t in taps:
        per_row = [np.nonzero(support[members, t].any(0))[0] for members in rows]
        cmax = max(1, max(len(ch) for ch in per_row))
        vals = np.zeros((len(rows), cmax, 1, g), dtype=np.float32)
        chans = np.zeros((len(rows), cmax), dtype=np.int32)
        for r, (members, ch) in enumerate(zip(rows, per_row, strict=True)):
            chans[r, : len(ch)] = ch
            for lane, f in enumerate(members):
                vals[r, : len(ch), 0, lane] = flat[f, ch, t]
        values.append(vals)
        channels.append(chans)
    inverse = np.zeros(k, dtype=np.int32)
    for r, members in enumerate(rows):
        for lane, f in enumerate(members):
            inverse[f] = r * g + lane
    return SparseConvLayout(
        kind="block",
        shape=(k, c, kh, kw),
        block=g,
        codes=(),
        values=tuple(values),
        channels=tuple(channels),
        inverse=inverse,
        kept_kernels=int(support.any(1).sum()),
        tap_sets=tuple(((t // kw, t % kw),) for t in taps),
    )
