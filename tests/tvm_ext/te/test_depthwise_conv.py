"""The depthwise 3x3 kernel: plans, constant arrays, and the scheduled kernel against the
reference conv (both strategies, stride 1 and 2, any padding, dense and pattern-pruned)."""

from __future__ import annotations

import numpy as np
import pytest

from patsparse.core.patterns import DESIGNED_8, mask_from_code
from tvm_ext._compat import host_target, te, tensor, tvm
from tvm_ext.reference import conv2d_nchw
from tvm_ext.schedules.depthwise import width_pieces
from tvm_ext.schedules.dispatch import SCHEDULED_ATTR, schedule_depthwise_primfunc
from tvm_ext.targets import make_target
from tvm_ext.te.depthwise_conv import (
    DepthwiseEpilogue,
    DepthwisePlan,
    depthwise_arguments,
    depthwise_te,
    kept_taps,
    plan_depthwise,
)


def dense_weight(c, seed=0):
    return np.random.default_rng(seed).standard_normal((c, 1, 3, 3)).astype("float32")


def pattern_weight(c, seed=0, *, zero_every=5):
    """Each channel keeps one designed-8 pattern; every ``zero_every``-th channel is zero."""
    rng = np.random.default_rng(seed)
    codes = rng.choice(DESIGNED_8.codes, size=c)
    masks = np.array([mask_from_code(code) for code in codes])
    masks[::zero_every] = False
    return (dense_weight(c, seed) * masks[:, None]).astype("float32")


def shared_weight(c, seed=0):
    """Every channel keeps the same pattern (``block-pattern`` pruning of a depthwise conv)."""
    return (dense_weight(c, seed) * mask_from_code(DESIGNED_8.codes[0])[None, None]).astype(
        "float32"
    )


def dense_from_arguments(plan: DepthwisePlan, arrays: list[np.ndarray], c: int) -> np.ndarray:
    """The ``(C, 1, 3, 3)`` weight the kernel computes with (inverse of the arguments)."""
    out = np.zeros((c, 3, 3), np.float32)
    if plan.table:
        values, dy, dx = arrays
        for ch in range(c):
            for j in range(plan.slots):
                out[ch, dy[ch, j], dx[ch, j]] += values[ch, j]
        return out[:, None]
    values = arrays[0]
    if plan.strategy == "channels":  # (blocks, slots, lanes) -> (channels, slots)
        values = values.transpose(0, 2, 1).reshape(-1, plan.slots)[:c]
    assert plan.taps is not None
    for j, (r, s) in enumerate(plan.taps):
        out[:, r, s] = values[:, j]
    return out[:, None]


@pytest.mark.parametrize(
    ("weight", "shape", "stride", "strategy", "table", "slots"),
    [
        (dense_weight(32), (1, 32, 28, 28), (1, 1), "rows", False, 9),
        (dense_weight(32), (1, 32, 56, 56), (1, 1), "rows", False, 9),
        (dense_weight(32), (1, 32, 7, 7), (1, 1), "channels", False, 9),
        (dense_weight(32), (1, 32, 28, 28), (2, 2), "channels", False, 9),
        (pattern_weight(32), (1, 32, 56, 56), (1, 1), "rows", True, 4),
        (pattern_weight(32), (1, 32, 7, 7), (1, 1), "channels", False, 9),
        (pattern_weight(32), (1, 32, 28, 28), (2, 2), "channels", False, 9),
        (shared_weight(32), (1, 32, 56, 56), (1, 1), "rows", False, 4),
        (shared_weight(32), (1, 32, 28, 28), (2, 2), "channels", False, 4),
    ],
    ids=[
        "dense-28",
        "dense-56",
        "dense-7",
        "dense-stride2",
        "pruned-56",
        "pruned-7",
        "pruned-stride2",
        "shared-56",
        "shared-stride2",
    ],
)
def test_auto_plan(weight, shape, stride, strategy, table, slots):
    plan = plan_depthwise(weight, shape, stride, (1, 1, 1, 1))
    assert (plan.strategy, plan.table, plan.slots) == (strategy, table, slots)
    c = shape[1]
    arrays = depthwise_arguments(plan, weight)
    np.testing.assert_array_equal(dense_from_arguments(plan, arrays, c), weight)


def test_shared_pattern_is_constant_taps_and_zero_taps_are_skipped():
    """Channels that all keep one pattern need no tables: its 4 taps are constants."""
    w = shared_weight(16)
    plan = plan_depthwise(w, (1, 16, 14, 14), (1, 1), (1, 1, 1, 1), strategy="rows")
    assert not plan.table and plan.slots == 4 and list(plan.taps or ()) == kept_taps(w)
    np.testing.assert_array_equal(dense_from_arguments(plan, depthwise_arguments(plan, w), 16), w)


def test_bad_strategy_names_the_choices():
    with pytest.raises(ValueError, match="auto, rows, channels"):
        plan_depthwise(dense_weight(4), (1, 4, 8, 8), (1, 1), (1, 1, 1, 1), strategy="cols")


def test_width_pieces():
    assert width_pieces(112, 16) == [112]
    assert width_pieces(56, 16) == [48, 8]
    assert width_pieces(14, 16) == [8, 4, 2]
    assert width_pieces(7, 4) == [4, 2, 1]
    assert sum(width_pieces(23, 8)) == 23


def _run(plan: DepthwisePlan, weight, epilogue, *, target=None, seed=1):
    func = te.create_prim_func(depthwise_te(plan, epilogue)).with_attr("global_symbol", "main")
    scheduled = schedule_depthwise_primfunc(func, target=target or host_target())
    assert scheduled is not None and int(scheduled.attrs[SCHEDULED_ATTR]) == 1
    script = scheduled.script()
    assert "T.parallel" in script and "T.vectorized" in script
    ex = tvm.compile(tvm.IRModule({"main": scheduled}), target=host_target())
    rng = np.random.default_rng(seed)
    n, c = plan.in_shape[:2]
    x = rng.standard_normal(plan.in_shape).astype("float32")
    bias = rng.standard_normal(c).astype("float32")
    residual = rng.standard_normal((n, c, *plan.out_hw)).astype("float32")
    ref = conv2d_nchw(
        x,
        weight,
        bias if epilogue.bias else None,
        stride=plan.stride,
        padding=plan.padding,
        groups=c,
    )
    if epilogue.residual:
        ref = ref + residual
    if epilogue.clip is not None:
        ref = np.clip(ref, *epilogue.clip)
    args = [x, *depthwise_arguments(plan, weight)]
    args += [bias] if epilogue.bias else []
    args += [residual] if epilogue.residual else []
    out = tensor(np.zeros(ref.shape, "float32"))
    ex.mod["main"](*[tensor(np.ascontiguousarray(a)) for a in args], out)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-5)


RELU6 = DepthwiseEpilogue(bias=True, clip=(0.0, 6.0))
ALL = DepthwiseEpilogue(bias=True, residual=True, clip=(0.0, 6.0))


@pytest.mark.parametrize("strategy", ["rows", "channels"])
@pytest.mark.parametrize("stride", [(1, 1), (2, 2)])
@pytest.mark.parametrize(
    "padding", [(1, 1, 1, 1), (0, 0, 0, 0), (1, 0, 2, 1)], ids=["pad1", "pad0", "asym"]
)
@pytest.mark.parametrize("pruned", [False, True], ids=["dense", "pruned"])
def test_kernel_matches_reference(strategy, stride, padding, pruned):
    c = 24  # 1.5 blocks of 16 lanes: the last block has padding lanes
    w = pattern_weight(c, seed=2) if pruned else dense_weight(c, seed=2)
    plan = plan_depthwise(w, (1, c, 11, 13), stride, padding, strategy=strategy)
    _run(plan, w, ALL)


@pytest.mark.parametrize(
    ("epilogue", "batch", "lanes"),
    [
        (DepthwiseEpilogue(), 1, 16),
        (DepthwiseEpilogue(clip=(0.0, float("inf"))), 2, 16),
        (RELU6, 2, 8),
        (DepthwiseEpilogue(residual=True, clip=(-1.0, 1.0)), 1, 4),
    ],
    ids=["plain", "relu-batch2", "relu6-avx2", "residual-clip-neon-lanes"],
)
@pytest.mark.parametrize("strategy", ["rows", "channels"])
def test_epilogues_batches_and_lanes(epilogue, batch, lanes, strategy):
    w = pattern_weight(16, seed=3)
    plan = plan_depthwise(
        w, (batch, 16, 9, 9), (1, 1), (1, 1, 1, 1), lanes=lanes, strategy=strategy
    )
    _run(plan, w, epilogue)


def test_gpu_targets_get_no_schedule():
    w = dense_weight(8)
    plan = plan_depthwise(w, (1, 8, 8, 8), (1, 1), (1, 1, 1, 1))
    func = te.create_prim_func(depthwise_te(plan, RELU6))
    assert schedule_depthwise_primfunc(func, target=make_target("adreno")) is None
