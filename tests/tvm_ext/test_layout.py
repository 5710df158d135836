from __future__ import annotations

import numpy as np
import pytest

from patsparse.core.patterns import get_library
from tvm_ext.layout import Rejection, SparseConvLayout, analyze_conv_weight


@pytest.mark.parametrize("block", [None, 4, 8])
def test_layout_round_trip(h, block):
    w = h.pattern_weight(16, 9, density=0.15, block=block, seed=3)
    lay = analyze_conv_weight(w, block=block)
    assert isinstance(lay, SparseConvLayout)
    assert lay.kind == ("block" if block else "kernel")
    assert lay.block == (block or 1)
    np.testing.assert_array_equal(lay.to_dense(), w)
    assert sorted(lay.inverse.tolist()) == list(range(16))
    assert lay.kept_kernels == int((np.abs(w).reshape(16, 9, 9).sum(-1) > 0).sum())


def test_per_kernel_layer_rows_are_reordered_by_work():
    rng = np.random.default_rng(0)
    w = np.zeros((6, 8, 3, 3), np.float32)
    counts = [1, 5, 2, 8, 0, 3]
    for f, n in enumerate(counts):
        for c in range(n):
            w[f, c, 0:2, 0:2] = rng.standard_normal((2, 2)) + 3
    lay = analyze_conv_weight(w, prefer_blocks=False)
    assert isinstance(lay, SparseConvLayout)
    rows_in_order = np.argsort(lay.inverse)
    assert [counts[f] for f in rows_in_order] == sorted(counts, reverse=True)


@pytest.mark.parametrize(
    ("weight", "reason"),
    [
        (np.ones((4, 4, 1, 1), np.float32), "not 3x3"),
        (np.ones((4, 4, 3, 3), np.float32), "not 4-weight patterns"),
        (np.zeros((4, 4, 3, 3), np.float32), "every kernel is zero"),
    ],
)
def test_rejections_say_why(weight, reason):
    out = analyze_conv_weight(weight)
    assert isinstance(out, Rejection) and reason in out.reason


def test_library_restriction(h):
    w = h.pattern_weight(8, 8, density=0.3, seed=1)
    out = analyze_conv_weight(w, library=get_library("phase3"))
    assert isinstance(out, Rejection) and "outside library" in out.reason
