from __future__ import annotations

import itertools

import numpy as np
import pytest

from patsparse.core.errors import PatternLibraryError, UnknownNameError
from patsparse.core.patterns import (
    ALL_CANDIDATES,
    DESIGNED_8,
    ELOG_4,
    GAUSSIAN_4,
    PatternLibrary,
    code_from_mask,
    code_from_positions,
    get_library,
    mask_from_code,
    positions_from_code,
)


def test_all_candidates_are_every_4_of_9():
    assert len(ALL_CANDIDATES) == 126 == len(set(ALL_CANDIDATES))
    assert all(bin(c).count("1") == 4 for c in ALL_CANDIDATES)
    brute = {sum(1 << i for i in combo) for combo in itertools.combinations(range(9), 4)}
    assert set(ALL_CANDIDATES) == brute


def test_gaussian_patterns_interpolate_to_binomial_gaussian():
    # Paper 002 eq. (2): the 4 Gaussian patterns interpolate to [1 2 1]^T [1 2 1] / 16.
    interp = PatternLibrary(GAUSSIAN_4).interpolate().astype(float)
    binomial = np.outer([1, 2, 1], [1, 2, 1]).astype(float)
    np.testing.assert_allclose(interp / interp.sum(), binomial / binomial.sum())


def test_elog_patterns_interpolate_to_laplacian_support():
    # Paper 002 eq. (8): the ELoG patterns cover exactly the cross-shaped support of the
    # discrete Laplacian, with the centre weighted most.
    interp = PatternLibrary(ELOG_4).interpolate()
    laplacian = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]])
    np.testing.assert_array_equal(interp != 0, laplacian != 0)
    assert interp[1, 1] == interp.max() == 4


def test_designed_8_structure():
    assert len(DESIGNED_8) == 8 and DESIGNED_8.nonzeros == 4
    # every designed pattern keeps the centre weight
    assert all(mask_from_code(c)[1, 1] for c in DESIGNED_8)
    assert set(DESIGNED_8.codes) == set(GAUSSIAN_4) | set(ELOG_4)
    assert get_library("phase2").codes == DESIGNED_8.codes
    assert len(get_library("phase1")) == 12 and len(get_library("phase3")) == 4
    assert set(get_library("phase3").codes) <= set(DESIGNED_8.codes) <= set(get_library("phase1"))


def test_code_round_trips():
    for code in ALL_CANDIDATES:
        assert code_from_positions(positions_from_code(code)) == code
        assert code_from_mask(mask_from_code(code)) == code
    lib = PatternLibrary.from_masks(DESIGNED_8.masks())
    assert lib.codes == DESIGNED_8.codes
    assert PatternLibrary.from_dict(DESIGNED_8.to_dict()) == DESIGNED_8


@pytest.mark.parametrize(
    ("masks", "message"),
    [
        (np.zeros((0, 3, 3)), "at least one"),
        (np.ones((2, 5, 5)), "3x3"),
        (np.stack([mask_from_code(ALL_CANDIDATES[0])] * 2), "duplicate"),
        (np.stack([mask_from_code(ALL_CANDIDATES[0]), np.eye(3, dtype=bool)]), "same number"),
    ],
)
def test_bad_user_libraries_are_rejected(masks, message):
    with pytest.raises(PatternLibraryError, match=message):
        PatternLibrary.from_masks(masks)


def test_bad_positions_and_codes():
    with pytest.raises(PatternLibraryError, match="outside a 3x3"):
        code_from_positions([(0, 3)])
    with pytest.raises(PatternLibraryError, match="9-bit"):
        PatternLibrary((1024,))
    with pytest.raises(PatternLibraryError, match="not in library"):
        DESIGNED_8.index(ALL_CANDIDATES[0] if ALL_CANDIDATES[0] not in DESIGNED_8 else 0b111)


def test_unknown_library_name_suggests():
    with pytest.raises(UnknownNameError, match=r"[Dd]id you mean 'designed-8'"):
        get_library("designed8")
