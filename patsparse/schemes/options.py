"""A scheme from command-line style options: a scheme name, a compression rate, a pattern
library and a block size, each applied only where the scheme has that option.

One place for what ``--scheme/--compression/--library/--block-size`` mean, shared by the CLI
(``prune``, ``compile``, ``tune``), the benchmarks and the search space's choices
(``filter@2``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from patsparse.core.errors import InvalidRateError
from patsparse.schemes.base import Scheme, make_scheme, scheme_class

#: pattern library of the pattern schemes unless one is named
DEFAULT_LIBRARY = "designed-8"


def has_rate(name: str) -> bool:
    """Whether scheme ``name`` takes a density (``pattern`` has a fixed rate: 4 of 9)."""
    return "density" in _fields(name)


def scheme_from_options(
    name: str,
    compression: float | None = None,
    *,
    library: str = DEFAULT_LIBRARY,
    block_size: int | None = None,
    default_compression: float | None = None,
    fixed_rate: Literal["error", "ignore"] = "error",
) -> Scheme:
    """Scheme ``name`` at ``compression`` (2 keeps half the weights: density = 1 / compression).

    ``compression`` ``None``: ``default_compression``, else the scheme's own default rate.
    ``library`` goes to the pattern schemes, ``block_size`` to the block ones (their
    ``block_size`` or ``block_rows``); other schemes ignore them. A compression for a
    fixed-rate scheme (``pattern``) is an error unless ``fixed_rate="ignore"`` (a CLI
    default that applies to whichever scheme was chosen).

    Raises :class:`~patsparse.core.errors.UnknownNameError` for an unknown scheme and
    :class:`~patsparse.core.errors.InvalidRateError` for a compression that is not > 0 or
    that the scheme cannot reach.
    """
    fields = _fields(name)
    opts: dict[str, Any] = {}
    rate = compression if compression is not None else default_compression
    if "density" in fields:
        if rate is not None:
            if not rate > 0:  # also NaN
                raise InvalidRateError(f"compression must be > 0 (e.g. 8 for 8x), got {rate}")
            opts["density"] = 1.0 / rate
    elif compression is not None and fixed_rate == "error":
        raise InvalidRateError(
            f"scheme {name!r} has a fixed rate; give it without a compression (write "
            f"{name!r}, not {name}@{compression:g})"
        )
    if "library" in fields:
        opts["library"] = library
    if block_size is not None:
        if "block_size" in fields:
            opts["block_size"] = block_size
        elif "block_rows" in fields:
            opts["block_rows"] = block_size
    return make_scheme(name, **opts)


def _fields(name: str) -> set[str]:
    return {f.name for f in dataclasses.fields(scheme_class(name))}  # type: ignore[arg-type]
