"""PatternSparseConv2D: structural, numeric, 'the dense conv is gone', untouched non-matches."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tvm_ext._compat import relax, tvm
from tvm_ext.conv_rewriter import CONV_ATTR, OPAQUE, describe_conv
from tvm_ext.layout import analyze_conv_weight
from tvm_ext.passes import PatternSparseConv2D
from tvm_ext.reference import conv2d_nchw
from tvm_ext.te.conv_spec import ConvGeometry, Epilogue
from tvm_ext.te.pattern_conv import layout_arguments, pattern_conv2d_compute


def test_structural_before_expected(h, well_formed):
    w = h.pattern_weight(8, 4, density=0.2, seed=0)
    bias = np.arange(8, dtype="float32")
    before = h.conv_module((1, 4, 6, 6), w, bias=bias, relu=True)
    after = PatternSparseConv2D(schedule=False)(before)

    lay = analyze_conv_weight(w)
    geo = ConvGeometry((1, 4, 6, 6), (1, 1), (1, 1, 1, 1))
    ep = Epilogue(bias=True, relu=True)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 4, 6, 6), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit_te(
                lambda *t: pattern_conv2d_compute(t, geo, lay, ep),
                x,
                *[relax.const(a) for a in layout_arguments(lay, geo)],
                relax.const(bias),
                primfunc_name_hint="pattern_sparse_conv2d_0",
            )
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    expected = bb.get()
    gv = expected.get_global_var("pattern_sparse_conv2d_0")
    expected[gv] = expected[gv].with_attr("op_pattern", OPAQUE)
    tvm.ir.assert_structural_equal(after, expected)


@pytest.mark.parametrize("block", [None, 16])
def test_structural_dilated_before_expected(h, well_formed, block):
    """A dilated conv becomes the same kernel with a dilated geometry (a tap is its offset
    times the dilation); block kernels describe the dilation for ChainConvLayouts."""
    w = h.pattern_weight(16, 4, density=0.25, block=block, seed=3)
    before = h.conv_module((1, 4, 9, 9), w, padding=(2, 2, 2, 2), dilation=(2, 2))
    sparse = PatternSparseConv2D(schedule=False)
    after = sparse(before)

    lay = analyze_conv_weight(w)
    geo = ConvGeometry((1, 4, 9, 9), (1, 1), (2, 2, 2, 2), dilation=(2, 2))
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 4, 9, 9), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit_te(
                lambda *t: pattern_conv2d_compute(t, geo, lay, Epilogue()),
                x,
                *[relax.const(a) for a in layout_arguments(lay, geo)],
                primfunc_name_hint="pattern_sparse_conv2d_0",
            )
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    expected = bb.get()
    gv = expected.get_global_var("pattern_sparse_conv2d_0")
    expected[gv] = expected[gv].with_attr("op_pattern", OPAQUE)
    if block:
        expected[gv] = expected[gv].with_attr(CONV_ATTR, describe_conv(geo, lay, Epilogue()))
        assert json.loads(describe_conv(geo, lay, Epilogue()))["dilation"] == [2, 2]
    tvm.ir.assert_structural_equal(after, expected)
    rec = sparse.records[0]
    assert rec.rewritten and rec.kind == ("block" if block else "kernel")
    assert rec.to_dict()["dilation"] == [2, 2]


@pytest.mark.parametrize("block", [None, 16])
@pytest.mark.parametrize("dilation", [2, 3])
@pytest.mark.parametrize("stride", [1, 2])
def test_dilated_convs_match_the_reference(h, well_formed, block, dilation, stride):
    """Per-kernel (flat) and block-pattern layers with dilation 2 and 3, padding = dilation,
    at stride 1 and 2 (phase planes): rewritten, verified, equal to the numpy reference."""
    rng = np.random.default_rng(dilation)
    w = h.pattern_weight(16, 8, density=0.25, block=block, seed=stride)
    bias = rng.standard_normal(16).astype("float32")
    pad = (dilation,) * 4
    xs = (1, 8, 13, 15)
    before = h.conv_module(
        xs, w, stride=(stride, stride), padding=pad, dilation=(dilation, dilation), bias=bias
    )
    sparse = PatternSparseConv2D(verify=True)
    after = sparse(before)
    rec = sparse.records[0]
    assert rec.rewritten, rec.reason
    assert rec.kind == ("block" if block else "kernel") and rec.max_abs_error < 1e-4
    assert "relax.nn.conv2d" not in h.relax_ops(after)
    x = rng.standard_normal(xs).astype("float32")
    ref = conv2d_nchw(x, w, bias, stride=(stride,) * 2, padding=pad, dilation=(dilation,) * 2)
    np.testing.assert_allclose(h.run_module(after, x), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("block", [None, 4])
def test_numeric_before_vs_after_and_dense_conv_is_gone(h, well_formed, block):
    rng = np.random.default_rng(0)
    w = h.pattern_weight(8, 6, density=0.2, block=block, seed=2)
    bias = rng.standard_normal(8).astype("float32")
    before = h.conv_module((1, 6, 7, 9), w, bias=bias, residual=True, relu=True)
    sparse = PatternSparseConv2D()
    after = sparse(before)
    assert "relax.nn.conv2d" in h.relax_ops(before)
    assert "relax.nn.conv2d" not in h.relax_ops(after)
    assert "relax.nn.relu" not in h.relax_ops(after) and "relax.add" not in h.relax_ops(after)
    rec = sparse.records[0]
    assert rec.rewritten and rec.fused == ("conv2d", "bias_add", "residual_add", "relu")
    assert rec.kind == ("block" if block else "kernel")
    x = rng.standard_normal((1, 6, 7, 9)).astype("float32")
    r = rng.standard_normal((1, 8, 7, 9)).astype("float32")
    np.testing.assert_allclose(
        h.run_module(after, x, r), h.run_module(before, x, r), rtol=1e-5, atol=1e-5
    )


def test_non_matching_convs_are_untouched(h, well_formed):
    rng = np.random.default_rng(0)
    cases = {
        "1x1 kernel": (
            h.conv_module((1, 4, 5, 5), rng.standard_normal((8, 4, 1, 1)), padding=(0, 0, 0, 0)),
            {},
        ),
        "depthwise": (
            h.conv_module((1, 4, 5, 5), h.pattern_weight(4, 1, density=0.4), groups=4),
            {},
        ),
        "not 4-weight patterns": (
            h.conv_module((1, 4, 5, 5), rng.standard_normal((8, 4, 3, 3))),
            {},
        ),
        "bind the parameters": (
            h.conv_module((1, 4, 5, 5), h.pattern_weight(8, 4), weight_as_input=True),
            {},
        ),
    }
    for reason, (mod, _) in cases.items():
        sparse = PatternSparseConv2D()
        after = sparse(mod)
        tvm.ir.assert_structural_equal(after, mod)
        assert len(sparse.records) == 1 and not sparse.records[0].rewritten
        assert reason in sparse.records[0].reason, sparse.records[0].reason


def test_mixed_model_rewrites_only_eligible_convs(h, well_formed):
    rng = np.random.default_rng(1)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 4, 8, 8), "float32"))
    sparse_w = h.pattern_weight(8, 4, density=0.2)
    dense_w = rng.standard_normal((8, 8, 3, 3)).astype("float32")
    with bb.function("main", [x]):
        with bb.dataflow():
            a = bb.emit(relax.op.nn.conv2d(x, relax.const(sparse_w), padding=1))
            b = bb.emit(relax.op.nn.conv2d(a, relax.const(dense_w), padding=1))
            c = bb.emit(relax.op.nn.relu(b))
            out = bb.emit_output(c)
        bb.emit_func_output(out)
    mod = bb.get()
    sparse = PatternSparseConv2D()
    after = sparse(mod)
    assert h.relax_ops(mod).count("relax.nn.conv2d") == 2
    assert h.relax_ops(after).count("relax.nn.conv2d") == 1  # the dense one stays
    assert [r.rewritten for r in sparse.records] == [True, False]
    xv = rng.standard_normal((1, 4, 8, 8)).astype("float32")
    np.testing.assert_allclose(h.run_module(after, xv), h.run_module(mod, xv), rtol=1e-5, atol=1e-4)


def test_records_report_storage_and_histogram(h):
    w = h.pattern_weight(32, 32, density=1 / 8, seed=4)
    sparse = PatternSparseConv2D()
    sparse(h.conv_module((1, 32, 8, 8), w))
    rec = sparse.records[0]
    assert rec.storage_bytes["ours"] < rec.storage_bytes["csr"] < rec.storage_bytes["dense"]
    assert sum(rec.pattern_histogram.values()) == rec.kept_kernels
    d = rec.to_dict()
    assert d["rewritten"] is True and d["weight_shape"] == [32, 32, 3, 3]


def test_verification_passes_and_reports_error(h):
    w = h.pattern_weight(8, 4, density=0.3, seed=5)
    sparse = PatternSparseConv2D(verify=True)
    sparse(h.conv_module((1, 4, 6, 6), w, bias=np.ones(8, "float32"), relu=True))
    rec = sparse.records[0]
    assert rec.rewritten and rec.max_abs_error is not None and rec.max_abs_error < 1e-4


def test_dynamic_shape_is_left_with_reason(h, well_formed):
    from tvm_ext._compat import tirx

    n = tirx.Var("n", "int64")
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((n, 4, 6, 6), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(x, relax.const(h.pattern_weight(8, 4)), padding=1))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    mod = bb.get()
    sparse = PatternSparseConv2D()
    tvm.ir.assert_structural_equal(sparse(mod), mod)
    assert "dynamic input shape" in sparse.records[0].reason


def test_internal_failure_leaves_the_layer_and_says_why(h, well_formed, monkeypatch):
    import tvm_ext.conv_rewriter as P

    def boom(*args, **kwargs):
        raise RuntimeError("codegen exploded")

    monkeypatch.setattr(P, "pattern_conv2d_compute", boom)
    mod = h.conv_module((1, 4, 6, 6), h.pattern_weight(8, 4))
    sparse = PatternSparseConv2D()
    tvm.ir.assert_structural_equal(sparse(mod), mod)
    assert "rewrite failed" in sparse.records[0].reason
    assert "codegen exploded" in sparse.records[0].reason


def test_failed_verification_keeps_the_dense_conv(h, monkeypatch):
    import tvm_ext.conv_rewriter as P

    monkeypatch.setattr(P, "verify_layer", lambda *a, **k: 1.0)
    mod = h.conv_module((1, 4, 6, 6), h.pattern_weight(8, 4), relu=True)
    sparse = PatternSparseConv2D(verify=True)
    after = sparse(mod)
    assert "relax.nn.conv2d" in h.relax_ops(after)
    assert not sparse.records[0].rewritten
    assert "verification failed" in sparse.records[0].reason


def test_per_kernel_layers_estimated_slower_are_left_to_the_blocked_kernel(h, well_formed):
    """With a cost table, a wide per-kernel layer (load-bound per-kernel code) goes to
    BlockedConv2D; a narrow, highly pruned one stays per-kernel; both match PyTorch."""
    import torch
    import torch.nn.functional as F

    from tvm_ext.passes import BlockedConv2D
    from tvm_ext.pipeline import PER_KERNEL_COST

    rng = np.random.default_rng(0)
    for c, density, per_kernel in ((256, 4 / 9, False), (32, 0.125, True)):
        w = h.pattern_weight(c, c, density=density)
        mod = h.conv_module((1, c, 6, 6), w, relu=True)
        sparse, blocked = PatternSparseConv2D(per_kernel_cost=PER_KERNEL_COST), BlockedConv2D()
        after = tvm.transform.Sequential([sparse, blocked])(mod)
        assert sparse.records[0].rewritten is per_kernel, sparse.records[0].reason
        assert bool(blocked.records and blocked.records[0].rewritten) is not per_kernel
        if not per_kernel:
            assert "estimated slower than the blocked kernel" in sparse.records[0].reason
        assert "relax.nn.conv2d" not in h.relax_ops(after)
        x = rng.standard_normal((1, c, 6, 6)).astype("float32")
        ref = torch.relu(F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1)).numpy()
        np.testing.assert_allclose(h.run_module(after, x), ref, rtol=1e-4, atol=1e-4)
    # the stride factor weighs per-kernel code on strided convs: x8 sends the layer blocked
    w = h.pattern_weight(32, 32, density=0.125)
    for factor, per_kernel in ((1.0, True), (8.0, False)):
        p = PatternSparseConv2D(per_kernel_cost=PER_KERNEL_COST, per_kernel_stride_factor=factor)
        p(h.conv_module((1, 32, 8, 8), w, stride=(2, 2)))
        assert p.records[0].rewritten is per_kernel, p.records[0].reason
    # without a table every eligible layer is per-kernel (the pass's default)
    p = PatternSparseConv2D()
    p(h.conv_module((1, 256, 6, 6), h.pattern_weight(256, 256, density=4 / 9)))
    assert p.records[0].rewritten
    for bad in (0.0, -1, ((64, 0.0),), "fast"):
        with pytest.raises(ValueError, match="per_kernel_cost"):
            PatternSparseConv2D(per_kernel_cost=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="per_kernel_stride_factor"):
        PatternSparseConv2D(per_kernel_stride_factor=0.0)
