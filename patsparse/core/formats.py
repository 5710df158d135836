"""Compact storage of pattern-pruned 3x3 convolution weights (FKW-like, paper 001 §3).

:class:`PatternSparseWeight` stores a ``(K, C, 3, 3)`` weight whose every kernel is either
all-zero (connectivity-pruned) or one pattern of a library:

- filters are reordered so filters with similar pattern/connectivity profiles sit together
  (``filter_order[i]`` is the original filter stored at row ``i``);
- inside a filter, kept kernels are grouped by pattern, so a per-filter count per pattern
  (``offsets``) replaces per-kernel pattern ids;
- per kept kernel only its input channel index and its non-zero values are stored.

No zero weight is stored, and there is one small index per kept kernel against CSR's one
index per kept *weight*: see :meth:`PatternSparseWeight.nbytes` and :func:`csr_nbytes`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from patsparse.core.errors import PatternLibraryError
from patsparse.core.patterns import NUM_POSITIONS, PatternLibrary, positions_from_code


def kernel_codes_np(dense: np.ndarray) -> np.ndarray:
    """Pattern code of every 3x3 kernel of a ``(K, C, 3, 3)`` array (0 for pruned kernels).

    The numpy twin of :func:`patsparse.patterns.kernel_codes`.
    """
    bits = (dense != 0).reshape(*dense.shape[:2], NUM_POSITIONS).astype(np.int64)
    return (bits << np.arange(NUM_POSITIONS)).sum(-1)


def reorder_filters(codes: np.ndarray, library: PatternLibrary) -> np.ndarray:
    """Filter order grouping similar filters: by kept-kernel count, then pattern histogram.

    Sorting by (descending) kernel count balances work across threads that take
    consecutive filters; ties sorted by their per-pattern histogram put filters with the
    same code paths next to each other. Stable, so equal filters keep their order.
    """
    hist = np.stack([(codes == c).sum(1) for c in library.codes], axis=1)  # (K, P)
    keys = [*(-hist[:, p] for p in reversed(range(hist.shape[1]))), -hist.sum(1)]
    return np.lexsort(keys).astype(np.int64)


@dataclass(frozen=True, eq=False)
class PatternSparseWeight:
    """A pattern-pruned ``(K, C, 3, 3)`` conv weight in compact form (see module docstring)."""

    shape: tuple[int, int, int, int]
    library: PatternLibrary
    filter_order: np.ndarray  # (K,) original filter of each stored row
    offsets: np.ndarray  # (K, P + 1) kernel ranges per (stored filter, pattern)
    channels: np.ndarray  # (nk,) input channel of each kept kernel
    values: np.ndarray  # (nk, nonzeros) the kept weights, row-major inside the pattern

    @classmethod
    def from_dense(
        cls,
        weight: np.ndarray,
        library: PatternLibrary | None = None,
        *,
        reorder: bool = True,
    ) -> PatternSparseWeight:
        """Compress ``weight``; the library defaults to the distinct patterns it uses."""
        w = np.asarray(weight, dtype=np.float32)
        if w.ndim != 4 or w.shape[2:] != (3, 3):
            raise PatternLibraryError(
                f"compact pattern storage needs a (K, C, 3, 3) weight, got shape {w.shape}"
            )
        codes = kernel_codes_np(w)
        used = sorted({int(c) for c in np.unique(codes)} - {0})
        if library is None:
            if not used:
                raise PatternLibraryError(
                    "every kernel is zero: nothing to store (drop the layer instead)"
                )
            library = PatternLibrary(tuple(used), name="from-weights")
        bad = [c for c in used if c not in library]
        if bad:
            k, ch = np.argwhere(np.isin(codes, bad))[0]
            raise PatternLibraryError(
                f"kernel (filter {k}, channel {ch}) keeps positions "
                f"{positions_from_code(int(codes[k, ch]))}, which is not a pattern of library "
                f"{library.name!r}; prune it with a pattern scheme first"
            )
        order = reorder_filters(codes, library) if reorder else np.arange(w.shape[0])
        p = len(library)
        offsets = np.zeros((w.shape[0], p + 1), dtype=np.int64)
        channels: list[np.ndarray] = []
        values: list[np.ndarray] = []
        pos = 0
        flat = w.reshape(*w.shape[:2], NUM_POSITIONS)
        taps = [np.array([r * 3 + c for r, c in positions_from_code(code)]) for code in library]
        for row, f in enumerate(order):
            for pid, code in enumerate(library.codes):
                offsets[row, pid] = pos
                chans = np.nonzero(codes[f] == code)[0]
                channels.append(chans)
                values.append(flat[f][chans][:, taps[pid]])
                pos += len(chans)
            offsets[row, p] = pos
        nz = library.nonzeros
        return cls(
            shape=(int(w.shape[0]), int(w.shape[1]), 3, 3),
            library=library,
            filter_order=np.asarray(order, dtype=np.int64),
            offsets=offsets,
            channels=np.concatenate(channels).astype(_index_dtype(w.shape[1])),
            values=np.concatenate(values).astype(np.float32).reshape(-1, nz),
        )

    def to_dense(self) -> np.ndarray:
        """The ``(K, C, 3, 3)`` weight this object stores (exact inverse of ``from_dense``)."""
        out = np.zeros((self.shape[0], self.shape[1], NUM_POSITIONS), dtype=np.float32)
        for pid, code in enumerate(self.library.codes):
            taps = np.array([r * 3 + c for r, c in positions_from_code(code)])
            for row, f in enumerate(self.filter_order):
                lo, hi = self.offsets[row, pid], self.offsets[row, pid + 1]
                out[f, self.channels[lo:hi][:, None], taps[None, :]] = self.values[lo:hi]
        return out.reshape(self.shape)

    @property
    def kept_kernels(self) -> int:
        return int(self.channels.shape[0])

    def nbytes(self) -> int:
        """Bytes of this format: values, one channel index per kernel, offsets, order."""
        # offsets need 1 + P entries per filter; stored as int32 in a runtime.
        return int(
            self.values.nbytes
            + self.channels.nbytes
            + self.offsets.size * 4
            + self.filter_order.size * 4
            + len(self.library) * 2
        )


def _index_dtype(n: int) -> type[np.integer]:
    return np.uint16 if n <= np.iinfo(np.uint16).max else np.int32


def dense_nbytes(weight: np.ndarray) -> int:
    return int(np.asarray(weight).size * 4)


def csr_nbytes(weight: np.ndarray) -> int:
    """Bytes of fp32 CSR over the ``(K, C*kh*kw)`` GEMM matrix with int32 indices."""
    w = np.asarray(weight)
    nnz = int((w != 0).sum())
    return nnz * 4 + nnz * 4 + (w.shape[0] + 1) * 4
