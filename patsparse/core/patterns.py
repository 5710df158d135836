"""Kernel patterns and pattern libraries for 3x3 convolutions.

A *pattern* is the set of positions a pruned 3x3 kernel keeps. We encode it as a 9-bit
integer (bit ``r * 3 + c`` set when row ``r``, column ``c`` is kept), which makes patterns
hashable, sortable and cheap to compare across PyTorch and TVM. A :class:`PatternLibrary`
is an ordered, validated tuple of such codes; the pattern *id* of a kernel is its index in
the library.

Named libraries (paper 002, §4 and §7.1):

- ``"all"``: the 126 = C(9, 4) candidates, the start of library extraction.
- ``"designed-8"`` (alias ``"phase2"``): 4 Gaussian patterns (the four 2x2 quadrants that
  contain the centre; their interpolation is the binomial Gaussian ``[1 2 1; 2 4 2; 1 2 1]``)
  plus 4 enhanced-LoG patterns (centre + three of its four 4-neighbours; their
  interpolation is the cross-shaped support of the discrete Laplacian).
- ``"phase1"`` (12): designed-8 plus the 4 "edge" patterns (centre + one full border row or
  column), our stand-in for the paper's extracted Phase-1 library.
- ``"phase3"`` (4): the 4 Gaussian patterns.

Only 3x3 kernels take patterns. 1x1 kernels are pruned with connectivity/block/channel
schemes (the paper's alternative of grouping nine 1x1 kernels into a 3x3 is not
implemented); 5x5 and 7x7 kernels use connectivity, block or unstructured schemes.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from patsparse.core.errors import PatternLibraryError, UnknownNameError

KERNEL_SIZE = 3
NUM_POSITIONS = KERNEL_SIZE * KERNEL_SIZE
PATTERN_NONZEROS = 4
CENTER = (1, 1)


def code_from_positions(positions: Iterable[tuple[int, int]]) -> int:
    """Encode kept ``(row, col)`` positions of a 3x3 kernel as a 9-bit pattern code."""
    code = 0
    for r, c in positions:
        if not (0 <= r < KERNEL_SIZE and 0 <= c < KERNEL_SIZE):
            raise PatternLibraryError(
                f"pattern position {(r, c)} is outside a 3x3 kernel; rows and columns are 0..2"
            )
        code |= 1 << (r * KERNEL_SIZE + c)
    return code


def positions_from_code(code: int) -> tuple[tuple[int, int], ...]:
    """The kept ``(row, col)`` positions of a pattern code, in row-major order."""
    return tuple((i // KERNEL_SIZE, i % KERNEL_SIZE) for i in range(NUM_POSITIONS) if code >> i & 1)


def mask_from_code(code: int) -> np.ndarray:
    """The 3x3 boolean mask of a pattern code."""
    flat = np.array([(code >> i) & 1 for i in range(NUM_POSITIONS)], dtype=bool)
    return flat.reshape(KERNEL_SIZE, KERNEL_SIZE)


def _as_array(values: object) -> np.ndarray:
    """A numpy array from numpy data or anything array-like (a torch tensor included,
    detached, without importing torch here)."""
    detach = getattr(values, "detach", None)
    if detach is not None:
        return np.asarray(detach().cpu().numpy())
    return np.asarray(values)


def code_from_mask(mask: object) -> int:
    """Encode a 3x3 boolean/0-1 mask (numpy or torch) as a pattern code."""
    arr = _as_array(mask)
    if arr.shape != (KERNEL_SIZE, KERNEL_SIZE):
        raise PatternLibraryError(f"a pattern mask must be 3x3, got shape {arr.shape}")
    flat = arr.reshape(-1) != 0
    return int(sum(1 << i for i in range(NUM_POSITIONS) if flat[i]))


def render(code: int) -> str:
    """A 3-line ASCII picture of a pattern (``#`` kept, ``.`` pruned)."""
    m = mask_from_code(code)
    return "\n".join("".join("#" if v else "." for v in row) for row in m)


@dataclass(frozen=True)
class PatternLibrary:
    """An ordered set of distinct 3x3 patterns, each keeping the same number of weights.

    Build one with :meth:`from_codes`, :meth:`from_masks`, :meth:`from_positions` or
    :func:`get_library`; the constructor validates.
    """

    codes: tuple[int, ...]
    name: str = "custom"

    def __post_init__(self) -> None:
        codes = tuple(int(c) for c in self.codes)
        object.__setattr__(self, "codes", codes)
        if not codes:
            raise PatternLibraryError("a pattern library needs at least one pattern")
        bad = [c for c in codes if not (0 < c < 1 << NUM_POSITIONS)]
        if bad:
            raise PatternLibraryError(
                f"pattern codes must be 9-bit masks in 1..511, got {bad}; "
                "build patterns with code_from_positions/code_from_mask"
            )
        if len(set(codes)) != len(codes):
            dups = sorted({c for c in codes if codes.count(c) > 1})
            raise PatternLibraryError(f"duplicate patterns in library: codes {dups}")
        counts = {bin(c).count("1") for c in codes}
        if len(counts) != 1:
            raise PatternLibraryError(
                f"every pattern must keep the same number of weights, got counts {sorted(counts)}"
            )

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_codes(cls, codes: Iterable[int], *, name: str = "custom") -> PatternLibrary:
        return cls(tuple(codes), name=name)

    @classmethod
    def from_masks(
        cls, masks: np.ndarray | Sequence[np.ndarray] | object, *, name: str = "custom"
    ) -> PatternLibrary:
        """From a ``(P, 3, 3)`` array (numpy or torch, or a list of 3x3 arrays) of 0/1 masks."""
        if isinstance(masks, np.ndarray) or hasattr(masks, "detach"):
            arr = _as_array(masks)
        else:
            items = list(masks)  # type: ignore[call-overload]
            arr = np.stack(items) if items else np.zeros((0, KERNEL_SIZE, KERNEL_SIZE))
        if arr.ndim != 3 or arr.shape[1:] != (KERNEL_SIZE, KERNEL_SIZE):
            raise PatternLibraryError(
                f"pattern masks must have shape (P, 3, 3), got {arr.shape}; "
                "patterns are defined for 3x3 kernels only"
            )
        return cls(tuple(code_from_mask(m) for m in arr), name=name)

    @classmethod
    def from_positions(
        cls, patterns: Iterable[Iterable[tuple[int, int]]], *, name: str = "custom"
    ) -> PatternLibrary:
        return cls(tuple(code_from_positions(p) for p in patterns), name=name)

    # -- views ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.codes)

    def __contains__(self, code: object) -> bool:
        return code in self.codes

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.codes)

    @property
    def nonzeros(self) -> int:
        """Weights each pattern keeps (4 for the papers' libraries)."""
        return bin(self.codes[0]).count("1")

    def masks(self, *, dtype: type | np.dtype = np.float32) -> np.ndarray:
        """``(P, 3, 3)`` array of the masks, in library order (``torch.from_numpy`` for a
        tensor)."""
        return np.stack([mask_from_code(c) for c in self.codes]).astype(dtype)

    def index(self, code: int) -> int:
        """Pattern id of ``code`` in this library."""
        try:
            return self.codes.index(int(code))
        except ValueError:
            raise PatternLibraryError(
                f"pattern {code} ({positions_from_code(int(code))}) is not in library {self.name!r}"
            ) from None

    def overlap(self, other: PatternLibrary) -> int:
        """Number of patterns the two libraries share."""
        return len(set(self.codes) & set(other.codes))

    def interpolate(self) -> np.ndarray:
        """Sum of the library's masks: the filter their interpolation produces (paper 002 §4)."""
        return np.sum([mask_from_code(c).astype(np.int64) for c in self.codes], axis=0)

    def render(self) -> str:
        """All patterns side by side as ASCII art."""
        pics = [render(c).splitlines() for c in self.codes]
        return "\n".join("  ".join(p[row] for p in pics) for row in range(KERNEL_SIZE))

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "codes": list(self.codes)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> PatternLibrary:
        codes = data.get("codes")
        if not isinstance(codes, list):
            raise PatternLibraryError(f"a library dict needs a 'codes' list, got {data!r}")
        return cls(tuple(int(c) for c in codes), name=str(data.get("name", "custom")))


# ---------------------------------------------------------------------------------------
# The papers' libraries
ALL_CANDIDATES: tuple[int, ...] = tuple(
    code_from_positions(pos)
    for pos in itertools.combinations(
        [(r, c) for r in range(KERNEL_SIZE) for c in range(KERNEL_SIZE)], PATTERN_NONZEROS
    )
)

# Gaussian: the four 2x2 quadrants that contain the centre. Their interpolation is the
# outer product of the 2-tap box filters [1 1] * [1 1] = [1 2 1]^T [1 2 1].
GAUSSIAN_4: tuple[int, ...] = tuple(
    code_from_positions([(r, c) for r in rows for c in cols])
    for rows, cols in [((0, 1), (0, 1)), ((0, 1), (1, 2)), ((1, 2), (0, 1)), ((1, 2), (1, 2))]
)

_NEIGHBOURS_4 = ((0, 1), (1, 0), (1, 2), (2, 1))
# Enhanced LoG: the centre plus three of its four 4-neighbours ("T" shapes). Their
# interpolation has the cross-shaped support of the discrete Laplacian [0 1 0; 1 -4 1; 0 1 0].
ELOG_4: tuple[int, ...] = tuple(
    code_from_positions([CENTER, *trio]) for trio in itertools.combinations(_NEIGHBOURS_4, 3)
)

# Centre + one full border row/column: our fill to a 12-pattern Phase-1 library.
_EDGE_4: tuple[int, ...] = tuple(
    code_from_positions([CENTER, *line])
    for line in (
        [(0, 0), (0, 1), (0, 2)],
        [(2, 0), (2, 1), (2, 2)],
        [(0, 0), (1, 0), (2, 0)],
        [(0, 2), (1, 2), (2, 2)],
    )
)

_NAMED: dict[str, tuple[int, ...]] = {
    "all": ALL_CANDIDATES,
    "designed-8": GAUSSIAN_4 + ELOG_4,
    "phase1": GAUSSIAN_4 + ELOG_4 + _EDGE_4,
    "phase2": GAUSSIAN_4 + ELOG_4,
    "phase3": GAUSSIAN_4,
    "gaussian-4": GAUSSIAN_4,
    "elog-4": ELOG_4,
}
LIBRARY_NAMES: tuple[str, ...] = tuple(_NAMED)


def get_library(name: str | PatternLibrary) -> PatternLibrary:
    """A named library (see module docstring), or the library itself if one is given."""
    if isinstance(name, PatternLibrary):
        return name
    try:
        return PatternLibrary(_NAMED[name], name=name)
    except KeyError:
        close = difflib.get_close_matches(str(name), LIBRARY_NAMES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(
            f"unknown pattern library {name!r}; choose one of {', '.join(LIBRARY_NAMES)}, "
            f"or build one with PatternLibrary.from_masks.{hint}"
        ) from None


DESIGNED_8 = get_library("designed-8")
