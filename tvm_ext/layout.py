"""From a constant conv weight to the arrays a pattern-sparse kernel reads.

:func:`analyze_conv_weight` decides whether a ``(K, C, 3, 3)`` weight is pattern-sparse
(every kernel all-zero or exactly one 4-weight pattern), which structure it has and, if it
qualifies, builds a :class:`SparseConvLayout`:

- ``kernel``: per-kernel patterns (the papers' scheme). Filters are reordered (similar
  filters together, see :func:`patsparse.core.formats.reorder_filters`) and each filter is one row.
- ``block``: block-shared patterns (``block-pattern`` scheme): ``G`` filters share kept
  channels and their patterns; a row is a block, and weights carry a lane axis of ``G``.

:func:`analyze_blocked_weight` builds the same ``block`` layout for any other conv (a dense
conv of any kernel size, a 1x1 / 7x7 conv with block-shared connectivity pruning): one
"pattern" holding every tap of the kernel; zero kernels shared by a block are skipped. Filters
that do not fill a last block are padded with zero filters the epilogue never reads; filters
with scattered kept channels are clustered into blocks computing the union of their channels.

Per pattern ``p`` the layout holds ``values[p]`` of shape ``(rows, cmax_p, taps, G)`` and
``channels[p]`` of shape ``(rows, cmax_p)``: the kernels of pattern ``p`` in each row, padded
with zero weights (channel 0) up to the longest row, so the generated code has no branch.
``inverse[k]`` is the stored position (``row * G + lane``) of original filter ``k``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from patsparse.core.formats import kernel_codes_np, reorder_filters
from patsparse.core.patterns import NUM_POSITIONS, PatternLibrary, positions_from_code


@dataclass(frozen=True)
class SparseConvLayout:
    kind: str  # "kernel" or "block"
    shape: tuple[int, int, int, int]
    block: int
    codes: tuple[int, ...]
    values: tuple[np.ndarray, ...]
    channels: tuple[np.ndarray, ...]
    inverse: np.ndarray
    kept_kernels: int
    #: explicit tap sets (``analyze_blocked_weight``); empty: taps come from ``codes``
    tap_sets: tuple[tuple[tuple[int, int], ...], ...] = ()

    @property
    def rows(self) -> int:
        return int(self.values[0].shape[0])

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.shape[2]), int(self.shape[3])

    @property
    def patterns(self) -> int:
        return len(self.values)

    def taps(self, p: int) -> tuple[tuple[int, int], ...]:
        """(dy, dx) offsets of pattern ``p``: compile-time constants of the kernel."""
        if self.tap_sets:
            return self.tap_sets[p]
        return positions_from_code(self.codes[p])

    def padded_slots(self) -> int:
        """Kernel slots the kernel computes (kept kernels plus zero padding), per lane."""
        return sum(int(v.shape[0] * v.shape[1]) for v in self.values) * self.block

    def macs_per_pixel(self) -> int:
        """Multiply-adds the kernel issues per output pixel, padding included."""
        return sum(int(np.prod(v.shape)) for v in self.values)

    def to_dense(self) -> np.ndarray:
        """The weight this layout encodes (inverse of :func:`analyze_conv_weight`)."""
        k, c, kh, kw = self.shape
        out = np.zeros((k, c, kh * kw), dtype=np.float32)
        pos_of = {int(s): f for f, s in enumerate(self.inverse)}
        for p in range(self.patterns):
            taps = [r * kw + cc for r, cc in self.taps(p)]
            vals, chans = self.values[p], self.channels[p]
            for row in range(vals.shape[0]):
                for lane in range(self.block):
                    f = pos_of.get(row * self.block + lane)
                    if f is None:
                        continue  # a padding filter
                    for j in range(vals.shape[1]):
                        v = vals[row, j, :, lane]
                        if np.any(v != 0):
                            out[f, chans[row, j], taps] += v
        return out.reshape(self.shape)


@dataclass(frozen=True)
class Rejection:
    """Why a weight cannot take the pattern-sparse kernel."""

    reason: str


def analyze_conv_weight(
    weight: np.ndarray,
    *,
    library: PatternLibrary | None = None,
    block: int | None = None,
    prefer_blocks: bool = True,
) -> SparseConvLayout | Rejection:
    """Layout for a pattern-sparse weight, or the reason it does not qualify.

    ``block``: the lane count to look for (default: the largest of 16, 8, 4 that fits).
    """
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim != 4 or w.shape[2:] != (3, 3):
        return Rejection(f"kernel is {w.shape[2]}x{w.shape[3]}, not 3x3")
    codes = kernel_codes_np(w)
    used = sorted({int(c) for c in np.unique(codes)} - {0})
    if not used:
        return Rejection("every kernel is zero")
    counts = {bin(c).count("1") for c in used}
    if counts != {4}:
        dense = int((codes == (1 << NUM_POSITIONS) - 1).sum())
        return Rejection(
            f"kernels are not 4-weight patterns (non-zeros per kernel: {sorted(counts)}; "
            f"{dense} fully dense kernels): prune with a pattern scheme"
        )
    if library is not None:
        outside = [c for c in used if c not in library]
        if outside:
            return Rejection(
                f"{len(outside)} pattern(s) outside library {library.name!r}, e.g. "
                f"{positions_from_code(outside[0])}"
            )
    ordered = tuple(c for c in (library.codes if library else used) if c in used)
    k = w.shape[0]
    if prefer_blocks:
        for g in [block] if block else [16, 8, 4]:
            if g and g > 1 and k % g == 0:
                groups = _block_groups(codes, g)
                if groups is not None:
                    return _build(w, codes, ordered, "block", g, groups)
    order = reorder_filters(codes, PatternLibrary(ordered))
    return _build(w, codes, ordered, "kernel", 1, [[int(f)] for f in order])


def analyze_blocked_weight(
    weight: np.ndarray, *, block: int | None = None
) -> SparseConvLayout | Rejection:
    """A ``block`` layout for any conv, every non-zero kernel computed whole (any size).

    Filters with the same kept input channels are grouped into blocks of ``block`` lanes
    (default 16; a dense conv is one group). A group whose size is not a multiple of the
    lanes is padded with zero filters. When that would waste more than half the lanes
    (scattered, per-kernel connectivity), filters are instead clustered by overlapping kept
    channels (:func:`_union_rows`) and each block computes the union of its filters'
    channels: at most the dense conv's work, never a rejection.
    """
    w = np.asarray(weight, dtype=np.float32)
    g = block or 16
    plan = _blocked_rows(w, g)
    if isinstance(plan, Rejection):
        return plan
    kept, rows = plan
    k, c, kh, kw = (int(d) for d in w.shape)
    taps = tuple((dy, dx) for dy in range(kh) for dx in range(kw))
    per_row = _row_channels(kept, rows)
    cmax = max(len(ch) for ch in per_row)
    flat = w.reshape(k, c, kh * kw)
    vals = np.zeros((len(rows), cmax, kh * kw, g), dtype=np.float32)
    chans = np.zeros((len(rows), cmax), dtype=np.int32)
    inverse = np.zeros(k, dtype=np.int32)
    for r, (members, ch) in enumerate(zip(rows, per_row, strict=True)):
        chans[r, : len(ch)] = ch
        for lane, f in enumerate(members):
            vals[r, : len(ch), :, lane] = flat[f][ch]
            inverse[f] = r * g + lane
    return SparseConvLayout(
        kind="block",
        shape=(k, c, kh, kw),
        block=g,
        codes=(),
        values=(vals,),
        channels=(chans,),
        inverse=inverse,
        kept_kernels=int(kept.sum()),
        tap_sets=(taps,),
    )


def _blocked_rows(w: np.ndarray, g: int) -> tuple[np.ndarray, list[list[int]]] | Rejection:
    """Kept kernels ``(K, C)`` and the filters of each block of :func:`analyze_blocked_weight`."""
    if w.ndim != 4:
        return Rejection(f"weight has {w.ndim} dimensions, not 4 (K, C, kh, kw)")
    k, c, kh, kw = (int(d) for d in w.shape)
    # A kernel is kept if any of its weights is non-zero; kept kernels are computed whole
    # (zeros inside a kernel, e.g. exact zeros in a dense model, cost nothing extra here).
    kept = (w.reshape(k, c, kh * kw) != 0).any(-1)  # (K, C)
    if not kept.any():
        return Rejection("every kernel is zero")
    by_sig: dict[bytes, list[int]] = {}
    for f in range(k):
        by_sig.setdefault(kept[f].tobytes(), []).append(f)
    rows: list[list[int]] = []
    sigs = sorted(by_sig, key=lambda s: -int(kept[by_sig[s][0]].sum()))
    for sig in sigs:
        members = by_sig[sig]
        rows += [members[i : i + g] for i in range(0, len(members), g)]
    if len(rows) * g > 2 * max(k, g):
        # Scattered connectivity (every filter keeps its own channels): cluster filters with
        # overlapping kept channels into blocks and compute each block's union of channels.
        # Never more work than the dense conv; the fewer channels a block shares, the less.
        rows = _union_rows(kept, g)
    return kept, rows


def _row_channels(kept: np.ndarray, rows: list[list[int]]) -> list[np.ndarray]:
    """Per block, the union of its filters' kept input channels."""
    return [np.nonzero(kept[members].any(0))[0] for members in rows]


def blocked_macs_per_pixel(weight: np.ndarray, *, block: int | None = None) -> int | None:
    """:meth:`SparseConvLayout.macs_per_pixel` of :func:`analyze_blocked_weight`'s layout,
    without building it (``None`` where that function rejects the weight)."""
    w = np.asarray(weight)
    g = block or 16
    plan = _blocked_rows(w, g)
    if isinstance(plan, Rejection):
        return None
    kept, rows = plan
    cmax = max(len(ch) for ch in _row_channels(kept, rows))
    return len(rows) * cmax * int(w.shape[2]) * int(w.shape[3]) * g


def _union_rows(kept: np.ndarray, g: int) -> list[list[int]]:
    """Greedy clustering of filters into blocks of ``g`` with small unions of kept channels.

    Each block starts from the remaining filter with the most kept channels and adds, one at
    a time, the filter that grows the block's union least (ties: the fuller filter). The
    union of a block is what the blocked kernel computes for it.
    """
    k = kept.shape[0]
    counts = kept.sum(1)
    remaining = np.ones(k, dtype=bool)
    rows: list[list[int]] = []
    while remaining.any():
        idx = np.nonzero(remaining)[0]
        seed = int(idx[np.argmax(counts[idx])])
        members, union = [seed], kept[seed].copy()
        remaining[seed] = False
        while len(members) < g and remaining.any():
            idx = np.nonzero(remaining)[0]
            grow = (kept[idx] & ~union).sum(1)
            best = int(idx[np.lexsort((-counts[idx], grow))[0]])
            members.append(best)
            union |= kept[best]
            remaining[best] = False
        rows.append(members)
    return rows


def _block_groups(codes: np.ndarray, g: int) -> list[list[int]] | None:
    """Filters with identical (channel, pattern) supports, chunked into blocks of ``g``."""
    by_sig: dict[bytes, list[int]] = {}
    for f in range(codes.shape[0]):
        by_sig.setdefault(codes[f].tobytes(), []).append(f)
    if any(len(m) % g for m in by_sig.values()):
        return None
    # Blocks with the most kept kernels first: neighbouring rows carry similar work.
    sigs = sorted(by_sig, key=lambda s: -int((codes[by_sig[s][0]] != 0).sum()))
    return [by_sig[s][i : i + g] for s in sigs for i in range(0, len(by_sig[s]), g)]


def _build(
    w: np.ndarray,
    codes: np.ndarray,
    ordered: tuple[int, ...],
    kind: str,
    g: int,
    rows: list[list[int]],
) -> SparseConvLayout:
    flat = w.reshape(*w.shape[:2], NUM_POSITIONS)
    inverse = np.zeros(w.shape[0], dtype=np.int32)
    values, channels = [], []
    for code in ordered:
        taps = [r * 3 + c for r, c in positions_from_code(code)]
        per_row = [np.nonzero(codes[members[0]] == code)[0] for members in rows]
        cmax = max(1, max(len(ch) for ch in per_row))
        vals = np.zeros((len(rows), cmax, len(taps), g), dtype=np.float32)
        chans = np.zeros((len(rows), cmax), dtype=np.int32)
        for r, (members, ch) in enumerate(zip(rows, per_row, strict=True)):
            chans[r, : len(ch)] = ch
            for lane, f in enumerate(members):
                vals[r, : len(ch), :, lane] = flat[f][ch][:, taps]
        values.append(vals)
        channels.append(chans)
    for r, members in enumerate(rows):
        for lane, f in enumerate(members):
            inverse[f] = r * g + lane
    return SparseConvLayout(
        kind=kind,
        shape=(int(w.shape[0]), int(w.shape[1]), 3, 3),
        block=g,
        codes=ordered,
        values=tuple(values),
        channels=tuple(channels),
        inverse=inverse,
        kept_kernels=int((codes != 0).sum()),
    )
