"""Property test: for generated convs, the rewritten module computes the dense conv.

Covers channel counts (odd, 1), spatial sizes (1, odd), stride 1/2, padding 0/1/asymmetric,
dilation 1/2/3 (also per axis), bias, BatchNorm, ReLU, residual add, random patterns and
connectivity (a filter with every kernel pruned, and no kernel pruned), per-kernel and
block-shared structures.
300 cases in CI; ``-m slow`` runs 1000.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patsparse.core.patterns import ALL_CANDIDATES, PatternLibrary
from patsparse.schemes import BlockPatternScheme, PatternConnectivityScheme, PatternScheme
from tvm_ext._compat import relax
from tvm_ext.passes import PatternSparseConv2D


@st.composite
def conv_cases(draw):
    c = draw(st.sampled_from([1, 2, 3, 5, 8]))
    k = draw(st.sampled_from([1, 3, 4, 8, 16]))
    stride = draw(st.sampled_from([(1, 1), (2, 2), (1, 2)]))
    padding = draw(st.sampled_from([(0, 0, 0, 0), (1, 1, 1, 1), (0, 1, 1, 0), (2, 0, 1, 2)]))
    dilation = draw(st.sampled_from([(1, 1), (1, 1), (2, 2), (3, 1)]))
    h = draw(st.integers(1, 9))
    w = draw(st.integers(1, 9))
    # at least one output row/column
    h = max(h, 2 * dilation[0] + 1 - padding[0] - padding[2])
    w = max(w, 2 * dilation[1] + 1 - padding[1] - padding[3])
    structure = draw(st.sampled_from(["pattern", "connectivity", "block", "library"]))
    density = draw(st.sampled_from([0.05, 0.15, 0.3]))
    return {
        "c": c,
        "k": k,
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "h": h,
        "w": w,
        "structure": structure if not (structure == "block" and k % 4) else "connectivity",
        "density": density,
        "bias": draw(st.booleans()),
        "bn": draw(st.booleans()),
        "relu": draw(st.booleans()),
        "residual": draw(st.booleans()),
        "kill_filter": draw(st.booleans()),
        "seed": draw(st.integers(0, 10_000)),
    }


def _weight(case):
    gen = torch.Generator().manual_seed(case["seed"])
    w = torch.randn(case["k"], case["c"], 3, 3, generator=gen)
    s = case["structure"]
    if s == "pattern":
        scheme = PatternScheme()  # no kernel pruned
    elif s == "block":
        scheme = BlockPatternScheme(density=case["density"], block_size=4)
    elif s == "library":  # random patterns from all 126 candidates
        idx = torch.randperm(126, generator=gen)[:5].tolist()
        lib = PatternLibrary(tuple(ALL_CANDIDATES[i] for i in idx))
        scheme = PatternConnectivityScheme(density=case["density"], library=lib)
    else:
        scheme = PatternConnectivityScheme(density=case["density"])
    out = scheme.project(w)
    if case["kill_filter"] and s != "block":
        out[0] = 0.0  # every kernel of a filter pruned
    return out.numpy()


def _module(case, weight):
    rng = np.random.default_rng(case["seed"])
    k = case["k"]
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, case["c"], case["h"], case["w"]), "float32"))
    pt, pl, pb, pr = case["padding"]
    dh, dw = case["dilation"]
    oh = (case["h"] + pt + pb - 2 * dh - 1) // case["stride"][0] + 1
    ow = (case["w"] + pl + pr - 2 * dw - 1) // case["stride"][1] + 1
    params = [x]
    r = None
    if case["residual"]:
        r = relax.Var("r", relax.TensorType((1, k, oh, ow), "float32"))
        params.append(r)
    with bb.function("main", params):
        with bb.dataflow():
            y = bb.emit(
                relax.op.nn.conv2d(
                    x,
                    relax.const(weight),
                    strides=case["stride"],
                    padding=case["padding"],
                    dilation=case["dilation"],
                )
            )
            if case["bias"]:
                b = rng.standard_normal((1, k, 1, 1)).astype("float32")
                y = bb.emit(relax.op.add(y, relax.const(b)))
            if case["bn"]:
                consts = [
                    rng.uniform(0.5, 1.5, k),
                    rng.uniform(-0.2, 0.2, k),
                    rng.uniform(-0.5, 0.5, k),
                    rng.uniform(0.5, 2.0, k),
                ]
                bn = relax.op.nn.batch_norm(
                    y,
                    *[relax.const(a.astype("float32")) for a in consts],
                    axis=1,
                    training=False,
                )
                y = bb.emit(relax.TupleGetItem(bb.emit(bn), 0))
            if r is not None:
                y = bb.emit(relax.op.add(y, r))
            if case["relu"]:
                y = bb.emit(relax.op.nn.relu(y))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get(), (1, k, oh, ow)


def _check(case, h):
    weight = _weight(case)
    mod, out_shape = _module(case, weight)
    folded = relax.transform.FoldBatchnormToConv2D()(mod)
    folded = relax.transform.FoldConstant()(folded)
    sparse = PatternSparseConv2D()
    after = sparse(folded)
    rng = np.random.default_rng(case["seed"] + 1)
    args = [rng.standard_normal((1, case["c"], case["h"], case["w"])).astype("float32")]
    if case["residual"]:
        args.append(rng.standard_normal(out_shape).astype("float32"))
    expected = h.run_module(mod, *args)
    got = h.run_module(after, *args)
    if np.abs(weight).sum() > 0:
        assert sparse.records[0].rewritten, sparse.records[0].reason
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


# 150 single convs in CI (the whole-model property test adds 200 models of convs in context);
# 1000 with -m slow
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=conv_cases())
def test_rewritten_equals_dense(case, h):
    _check(case, h)


@pytest.mark.slow
@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=conv_cases())
def test_rewritten_equals_dense_many(case, h):
    _check(case, h)
