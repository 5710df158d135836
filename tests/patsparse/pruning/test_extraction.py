from __future__ import annotations

import pytest

from patsparse.core.patterns import ALL_CANDIDATES, DESIGNED_8, PatternLibrary
from patsparse.pruning.extraction import ExtractionConfig, extract_library


def test_extraction_reduces_126_to_8_valid_patterns(trained_digits, digits_loaders):
    model, _ = trained_digits
    result = extract_library(
        model, digits_loaders[0], config=ExtractionConfig(sizes=(32, 12, 8), epochs_per_step=2)
    )
    lib = result.library
    assert isinstance(lib, PatternLibrary) and len(lib) == 8
    assert set(lib.codes) <= set(ALL_CANDIDATES) and lib.nonzeros == 4
    assert [(s.size_before, s.size_after) for s in result.steps] == [(126, 32), (32, 12), (12, 8)]
    # each step keeps the most selected patterns of the previous library
    for step in result.steps:
        kept = [step.counts.get(c, 0) for c in step.library.codes]
        dropped = [n for c, n in step.counts.items() if c not in step.library.codes]
        assert not dropped or min(kept) >= max(dropped)
    assert result.to_dict()["overlap_with_designed_8"] == lib.overlap(DESIGNED_8)
    assert 0 <= result.overlap_with_designed <= 8


def test_extraction_config_validates():
    with pytest.raises(ValueError, match="decrease"):
        ExtractionConfig(sizes=(12, 32))
    with pytest.raises(ValueError, match=r"1\.\.126"):
        ExtractionConfig(sizes=(200, 8))
