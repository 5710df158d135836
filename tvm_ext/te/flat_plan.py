"""Plan of a per-kernel layer's flat stages (``ps_conv_flat<g>``): how the padded input is
stored (:class:`FlatInput`) and how the filters are split into buckets of similar kept-kernel
counts (:func:`flat_buckets`), so short filters are not padded to the longest."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from tvm_ext.layout import SparseConvLayout
from tvm_ext.te.conv_spec import ConvGeometry

#: output pixels a flat per-kernel stage computes per filter are a multiple of this (the
#: schedules' register tiles of 1-4 vectors of 16, 8 or 4 lanes divide it)
FLAT_TILE = 64
#: most stages a flat per-kernel layer's filters are split into by kept-kernel count
FLAT_BUCKETS = 4


@dataclass(frozen=True)
class FlatInput:
    """How a flat per-kernel stage (``ps_conv_flat<g>``) stores its padded input.

    Stride ``(sh, sw)`` splits the padded image into ``sh * sw`` phase planes (plane
    ``(py, px)`` holds padded pixels ``(sh * i + py, sw * k + px)``), so a strided conv reads
    every plane at stride 1; stride 1 is one plane, the padded image itself. Every input
    channel is ``phases`` planes of ``rows`` rows of ``pitch`` values (the plane's width),
    zero rows at the end so the last tile of output pixels reads inside its plane. Output
    pixel ``(y, x)`` is computed at flat position ``j = y * pitch + x`` (``length`` positions
    per filter: ``oh * pitch`` rounded up to :data:`FLAT_TILE`; positions with ``x >= ow``
    are computed and never read) and reads kernel tap ``(dy, dx)`` of channel ``c`` at
    ``j + offset(c, dy, dx)``: with the tap dilated, ``(ry, rx) = (dy * dh, dx * dw)``, plane
    ``(ry % sh, rx % sw)``, ``ry // sh`` rows and ``rx // sw`` columns on (at stride 1
    ``ry * pitch + rx`` within the channel's padded rows).
    """

    pitch: int
    rows: int
    length: int
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)

    @classmethod
    def of(cls, geometry: ConvGeometry) -> FlatInput:
        _, _, h, w = geometry.in_shape
        pt, pl, pb, pr = geometry.padding
        rh, rw = geometry.span
        sh, sw = geometry.stride
        oh, _ = geometry.out_hw
        pitch = -(-(w + pl + pr) // sw)
        length = -(-oh * pitch // FLAT_TILE) * FLAT_TILE
        reach = length + (rh - 1) // sh * pitch + (rw - 1) // sw  # one past the last read
        rows = max(-(-(h + pt + pb) // sh), -(-reach // pitch))
        return cls(pitch, rows, length, (sh, sw), geometry.dilation)

    @property
    def phases(self) -> int:
        return self.stride[0] * self.stride[1]

    def offset(self, channel: int, dy: int, dx: int) -> int:
        """Flat offset of kernel tap ``(dy, dx)`` of ``channel`` from the output pixel."""
        sh, sw = self.stride
        ry, rx = dy * self.dilation[0], dx * self.dilation[1]
        plane = channel * self.phases + (ry % sh) * sw + rx % sw
        return (plane * self.rows + ry // sh) * self.pitch + rx // sw


def uses_flat(layout: SparseConvLayout, geometry: ConvGeometry) -> bool:
    """Per-kernel layers with an NCHW input take the flat stages; a chained input (read in
    place, never flattened) keeps the per-pattern stages."""
    return (
        layout.kind == "kernel" and geometry.in_layout is None and geometry.kernel == layout.kernel
    )


@dataclass(frozen=True)
class FlatBuckets:
    """The arrays of a flat per-kernel layer (:func:`flat_buckets`).

    Filters sorted by kept kernels, longest first; bucket ``g`` holds rows ``starts[g]`` to
    ``starts[g + 1]`` of that order, each with ``slots[g]`` slots (its longest filter's kept
    kernels; shorter filters padded with zero weights at offset 0). ``values[g]`` and
    ``offsets[g]`` are ``(filters, slots, taps)``: the weight of each tap and the flat input
    offset it reads (:meth:`FlatInput.offset`). ``inverse[k]`` is filter ``k``'s position in
    the sorted order.
    """

    starts: tuple[int, ...]
    values: tuple[np.ndarray, ...]
    offsets: tuple[np.ndarray, ...]
    inverse: np.ndarray

    @property
    def slots(self) -> tuple[int, ...]:
        return tuple(int(v.shape[1]) for v in self.values)

    def macs_per_pixel(self) -> int:
        """Multiply-adds per output pixel, padding slots included."""
        return sum(int(np.prod(v.shape)) for v in self.values)


def flat_buckets(
    layout: SparseConvLayout, flat: FlatInput | None = None, *, buckets: int | None = None
) -> FlatBuckets:
    """Split a per-kernel layout's filters into at most ``buckets`` (default
    :data:`FLAT_BUCKETS`) runs of similar kept-kernel counts, padding least.

    ``flat`` (the input geometry) sets the offsets; without it they are left zero (shapes
    and padding only, e.g. to estimate the work).
    """
    if layout.kind != "kernel":
        raise ValueError(f"flat stages are for per-kernel layouts, not {layout.kind!r} ones")
    nb = FLAT_BUCKETS if buckets is None else int(buckets)
    if nb < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets!r}")
    ntaps = int(layout.values[0].shape[2])
    kernels: list[list[tuple[int, int, np.ndarray]]] = [[] for _ in range(layout.rows)]
    for p in range(layout.patterns):
        vals, chans = layout.values[p][..., 0], layout.channels[p]
        for r, j in zip(*np.nonzero(np.any(vals != 0, axis=2)), strict=True):
            kernels[r].append((int(chans[r, j]), p, vals[r, j]))
    counts = np.array([len(k) for k in kernels])
    order = np.argsort(-counts, kind="stable")  # longest first; ties keep the reorder
    starts = _bucket_starts([int(counts[r]) for r in order], nb)
    # offsets are linear in the channel: each pattern's taps at channel 0, plus a stride
    base = [
        np.array([flat.offset(0, dy, dx) for dy, dx in layout.taps(p)], dtype=np.int32)
        if flat is not None
        else np.zeros(ntaps, dtype=np.int32)
        for p in range(layout.patterns)
    ]
    step = flat.offset(1, 0, 0) if flat is not None else 0
    values, offsets = [], []
    for b0, b1 in itertools.pairwise(starts):
        width = max(1, int(counts[order[b0]]))
        vals = np.zeros((b1 - b0, width, ntaps), dtype=np.float32)
        offs = np.zeros((b1 - b0, width, ntaps), dtype=np.int32)
        for i, r in enumerate(order[b0:b1]):
            for s, (ch, p, v) in enumerate(kernels[r]):
                vals[i, s] = v
                offs[i, s] = base[p] + ch * step
        values.append(vals)
        offsets.append(offs)
    position = np.empty(layout.rows, dtype=np.int32)
    position[order] = np.arange(layout.rows, dtype=np.int32)
    inverse = position[layout.inverse].astype(np.int32)
    return FlatBuckets(tuple(starts), tuple(values), tuple(offsets), inverse)


def _bucket_starts(counts: list[int], buckets: int) -> list[int]:
    """Boundaries ``[0, ..., len(counts)]`` of at most ``buckets`` contiguous runs of the
    descending ``counts`` minimising the padded total ``sum(run length * first count)``
    (dynamic programming over the split points)."""
    n = len(counts)
    inf = float("inf")
    # a run starts where the count changes (starting inside a run of equal counts never
    # pads less); best[b][i]: least padded total of counts[:i] in b runs, cut[b][i]: where
    # the last of them starts
    points = [j for j in range(n) if j == 0 or counts[j] != counts[j - 1]]
    ends = [*points[1:], n]
    best = [[inf] * (n + 1) for _ in range(buckets + 1)]
    cut = [[0] * (n + 1) for _ in range(buckets + 1)]
    best[0][0] = 0
    for b in range(1, buckets + 1):
        for i in ends:
            for j in points:
                if j >= i:
                    break
                cost = best[b - 1][j] + (i - j) * counts[j]
                if cost < best[b][i]:
                    best[b][i], cut[b][i] = cost, j
    b = min(range(1, buckets + 1), key=lambda k: (best[k][n], k))
    bounds, i = [n], n
    while b > 0:
        i = cut[b][i]
        bounds.append(i)
        b -= 1
    return bounds[::-1]
