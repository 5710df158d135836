from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from patsparse.core.errors import PatternLibraryError
from patsparse.core.formats import PatternSparseWeight, csr_nbytes, dense_nbytes
from patsparse.core.patterns import DESIGNED_8, get_library
from patsparse.schemes import PatternConnectivityScheme
from patsparse.schemes.pattern import kernel_codes


def _pruned(k, c, density, seed):
    w = torch.randn(k, c, 3, 3, generator=torch.Generator().manual_seed(seed))
    return PatternConnectivityScheme(density=density).project(w).numpy()


@settings(max_examples=40, deadline=None)
@given(
    k=st.integers(1, 20),
    c=st.integers(1, 12),
    density=st.sampled_from([4 / 9, 0.2, 0.1, 0.02]),
    seed=st.integers(0, 1000),
    reorder=st.booleans(),
)
def test_round_trip_is_exact(k, c, density, seed, reorder):
    w = _pruned(k, c, density, seed)
    fmt = PatternSparseWeight.from_dense(w, DESIGNED_8, reorder=reorder)
    np.testing.assert_array_equal(fmt.to_dense(), w)
    assert fmt.kept_kernels == int((np.abs(w).reshape(k, c, 9).sum(-1) > 0).sum())
    assert fmt.values.shape == (fmt.kept_kernels, 4)
    assert not np.any(fmt.values == 0)  # no zero weight stored
    assert sorted(fmt.filter_order.tolist()) == list(range(k))


def test_library_taken_from_weights_and_reorder_groups_filters():
    w = _pruned(32, 16, 0.1, 0)
    fmt = PatternSparseWeight.from_dense(w)
    assert set(fmt.library.codes) <= set(DESIGNED_8.codes)
    counts = np.diff(fmt.offsets[:, [0, -1]], axis=1)[:, 0]
    # stored filters come in non-increasing kept-kernel count (load balance)
    assert np.all(np.diff(counts) <= 0)
    # inside a filter, kernels are grouped by pattern: offsets are monotone
    assert np.all(np.diff(fmt.offsets, axis=1) >= 0)
    codes = kernel_codes(torch.from_numpy(fmt.to_dense()))
    assert int((codes != 0).sum()) == fmt.kept_kernels


def test_smaller_than_csr_and_dense():
    w = _pruned(64, 64, 1 / 8, 0)
    fmt = PatternSparseWeight.from_dense(w, DESIGNED_8)
    assert fmt.nbytes() < csr_nbytes(w) < dense_nbytes(w)
    # values alone are half of CSR's (values + one int32 per weight)
    assert fmt.values.nbytes * 2 == csr_nbytes(w) - (64 + 1) * 4


def test_non_pattern_kernels_are_rejected_with_position():
    w = _pruned(4, 4, 0.2, 1)
    w[2, 3] = 1.0  # dense kernel
    with pytest.raises(PatternLibraryError, match=r"filter 2, channel 3"):
        PatternSparseWeight.from_dense(w, DESIGNED_8)
    with pytest.raises(PatternLibraryError, match="3, 3"):
        PatternSparseWeight.from_dense(np.ones((2, 2, 1, 1)))
    with pytest.raises(PatternLibraryError, match="every kernel is zero"):
        PatternSparseWeight.from_dense(np.zeros((2, 2, 3, 3)))
    # a library without a used pattern is an error, not silent corruption
    with pytest.raises(PatternLibraryError, match="not a pattern of library"):
        PatternSparseWeight.from_dense(_pruned(8, 8, 0.2, 2), get_library("phase3"))
