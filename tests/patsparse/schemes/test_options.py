"""Schemes from command-line style options (name, compression, library, block size)."""

from __future__ import annotations

import pytest

from patsparse.core.errors import InvalidRateError, UnknownNameError
from patsparse.schemes import (
    BlockPatternScheme,
    BlockScheme,
    FilterScheme,
    PatternScheme,
    make_scheme,
    scheme_from_options,
)
from patsparse.schemes.options import has_rate


def test_compression_becomes_density_and_options_go_where_they_fit():
    s = scheme_from_options("filter", 4.0, library="designed-8", block_size=16)
    assert isinstance(s, FilterScheme) and s.density == pytest.approx(0.25)
    bp = scheme_from_options("block-pattern", 8.0, block_size=4)
    assert isinstance(bp, BlockPatternScheme) and bp.block_size == 4
    assert bp.density == pytest.approx(1 / 8)
    block = scheme_from_options("block", 2.0, block_size=8)
    assert isinstance(block, BlockScheme) and block.block_rows == 8


def test_missing_compression_takes_the_default_then_the_schemes_own():
    assert scheme_from_options("filter") == make_scheme("filter")
    s = scheme_from_options("filter", None, default_compression=6.0)
    assert s.density == pytest.approx(1 / 6)  # type: ignore[attr-defined]
    assert scheme_from_options("filter", 2.0, default_compression=6.0).density == 0.5  # type: ignore[attr-defined]


def test_fixed_rate_scheme_takes_no_compression_unless_told_to_ignore_it():
    assert not has_rate("pattern") and has_rate("pattern+connectivity")
    with pytest.raises(InvalidRateError, match="fixed rate"):
        scheme_from_options("pattern", 8.0)
    assert isinstance(scheme_from_options("pattern", 8.0, fixed_rate="ignore"), PatternScheme)
    # a default compression never applies to a fixed-rate scheme
    assert isinstance(scheme_from_options("pattern", default_compression=6.0), PatternScheme)


@pytest.mark.parametrize("bad", [0.0, -2.0, float("nan")])
def test_bad_compression_and_names_are_typed_errors(bad):
    with pytest.raises(InvalidRateError, match="compression must be > 0"):
        scheme_from_options("filter", bad)
    with pytest.raises(UnknownNameError, match="unknown pruning scheme"):
        scheme_from_options("fliter", 2.0)
