"""End-to-end output checks (:func:`tvm_ext.verify.check_outputs`): bounds scale with the
output, the worst output and element are named, NaN and shape mismatches fail."""

from __future__ import annotations

import numpy as np
import pytest

from tvm_ext.verify import MODEL_TOLERANCE, check_outputs, output_bound


def test_bound_scales_with_the_output_but_not_below_one():
    assert output_bound(np.full(3, 0.01, np.float32)) == pytest.approx(MODEL_TOLERANCE)
    assert output_bound(np.array([-50.0, 2.0], np.float32)) == pytest.approx(50 * MODEL_TOLERANCE)
    assert output_bound(np.zeros((0,), np.float32)) == pytest.approx(MODEL_TOLERANCE)


def test_matching_outputs_pass():
    rng = np.random.default_rng(0)
    refs = [rng.standard_normal((1, 10)).astype(np.float32), rng.standard_normal((1, 3, 4, 4))]
    outs = [r + 1e-6 for r in refs]
    check = check_outputs(outs, refs, seconds=0.5)
    assert check.passed and len(check.outputs) == 2
    assert check.to_dict()["passed"] and check.to_dict()["outputs"][1]["shape"] == [1, 3, 4, 4]


def test_the_worst_output_and_element_are_named():
    refs = [np.zeros((1, 4), np.float32), np.full((1, 2, 3), 100.0, np.float32)]
    outs = [refs[0] + 5e-5, refs[1].copy()]
    outs[1][0, 1, 2] += 0.5  # over 100 * 1e-4
    check = check_outputs(outs, refs)
    assert not check.passed
    assert [o.passed for o in check.outputs] == [True, False]
    worst = check.worst
    assert worst.index == 1 and worst.worst_at == (0, 1, 2)
    assert worst.max_abs_error == pytest.approx(0.5)
    assert worst.describe() == "output 1 (1x2x3): max abs error 0.5 at [0, 1, 2], allowed 0.01"


def test_nan_missing_and_misshaped_outputs_fail():
    ref = np.ones((2, 2), np.float32)
    nan = ref.copy()
    nan[1, 0] = np.nan
    check = check_outputs([nan], [ref])
    assert not check.passed and check.worst.worst_at == (1, 0)
    assert not check_outputs([np.ones((4,), np.float32)], [ref]).passed
    missing = check_outputs([ref], [ref, ref])
    assert [o.passed for o in missing.outputs] == [True, False]
    assert missing.worst.index == 1 and missing.worst.max_abs_error == np.inf
