"""DepthwiseConv2D: structural, numeric, 'the depthwise conv is gone', untouched non-matches,
verification fallback, and the pass inside compile_module."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from patsparse.core.patterns import DESIGNED_8, mask_from_code
from tvm_ext._compat import relax, tvm
from tvm_ext.passes import DepthwiseConv2D
from tvm_ext.passes.depthwise_conv2d import (
    DEPTHWISE_ATTR,
    OPAQUE,
    describe_depthwise,
    eligibility,
)
from tvm_ext.pipeline import compile_module
from tvm_ext.reference import conv2d_nchw
from tvm_ext.schedules.dispatch import schedule_depthwise_primfunc
from tvm_ext.targets import make_target, vector_lanes
from tvm_ext.te.depthwise_conv import (
    DepthwiseEpilogue,
    depthwise_arguments,
    depthwise_compute,
    plan_depthwise,
)


def dense_weight(c, seed=0, *, k=None, per_group=1, size=3):
    shape = (k or c, per_group, size, size)
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def pattern_weight(c, seed=0):
    """Each channel keeps one designed-8 pattern; every fourth channel is all-zero."""
    rng = np.random.default_rng(seed)
    masks = np.array([mask_from_code(code) for code in rng.choice(DESIGNED_8.codes, size=c)])
    masks[::4] = False
    return (dense_weight(c, seed) * masks[:, None]).astype("float32")


def depthwise_module(
    x_shape,
    weight,
    *,
    stride=(1, 1),
    padding=(1, 1, 1, 1),
    groups=None,
    bias=None,
    residual=False,
    act=None,
    extra_use=False,
    weight_as_input=False,
):
    """``main(x[, w][, r])``: grouped conv2d (+ bias) (+ residual) (+ ``relu`` / ``relu6``);
    ``extra_use``: the conv output is also returned (its epilogue cannot absorb it)."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(x_shape, "float32"))
    params = [x]
    w = relax.const(weight)
    if weight_as_input:
        w = relax.Var("w", relax.TensorType(weight.shape, "float32"))
        params.append(w)
    k = weight.shape[0]
    oh = (x_shape[2] + padding[0] + padding[2] - weight.shape[2]) // stride[0] + 1
    ow = (x_shape[3] + padding[1] + padding[3] - weight.shape[3]) // stride[1] + 1
    r = None
    if residual:
        r = relax.Var("r", relax.TensorType((x_shape[0], k, oh, ow), "float32"))
        params.append(r)
    with bb.function("main", params):
        with bb.dataflow():
            conv = bb.emit(
                relax.op.nn.conv2d(
                    x, w, strides=stride, padding=padding, groups=groups or x_shape[1]
                )
            )
            y = conv
            if bias is not None:
                y = bb.emit(relax.op.add(y, relax.const(bias.reshape(1, k, 1, 1))))
            if r is not None:
                y = bb.emit(relax.op.add(y, r))
            if act == "relu":
                y = bb.emit(relax.op.nn.relu(y))
            elif act == "relu6":
                y = bb.emit(relax.op.clip(y, 0.0, 6.0))
            out = bb.emit_output(relax.Tuple([y, conv]) if extra_use else y)
        bb.emit_func_output(out)
    return bb.get()


def reference(x, weight, *, stride, padding, bias=None, residual=None, act=None):
    y = conv2d_nchw(x, weight, bias, stride=stride, padding=padding, groups=x.shape[1])
    if residual is not None:
        y = y + residual
    if act == "relu":
        y = np.maximum(y, 0)
    elif act == "relu6":
        y = np.clip(y, 0, 6)
    return y


def test_structural_before_expected(well_formed):
    """The conv, its bias add and its ReLU6 become one call of the depthwise kernel with the
    weights (and bias) as constants, scheduled, opaque and described for ChainConvLayouts."""
    w = pattern_weight(16)
    bias = np.linspace(-1, 1, 16).astype("float32")
    before = depthwise_module((1, 16, 8, 8), w, bias=bias, act="relu6")
    target = make_target("host")
    after = DepthwiseConv2D(target=target)(before)

    plan = plan_depthwise(w, (1, 16, 8, 8), (1, 1), (1, 1, 1, 1), lanes=vector_lanes(target))
    ep = DepthwiseEpilogue(bias=True, clip=(0.0, 6.0))
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 16, 8, 8), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit_te(
                lambda *t: depthwise_compute(t, plan, ep),
                x,
                *[relax.const(a) for a in depthwise_arguments(plan, w)],
                relax.const(bias),
                primfunc_name_hint="depthwise_conv2d_0",
            )
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    expected = bb.get()
    gv = expected.get_global_var("depthwise_conv2d_0")
    func = expected[gv].with_attr("op_pattern", OPAQUE)
    func = func.with_attr(DEPTHWISE_ATTR, describe_depthwise(plan, ep))
    expected[gv] = schedule_depthwise_primfunc(func, target=target)
    tvm.ir.assert_structural_equal(after, expected)


CASES = [
    # (name, weight, input shape, stride, padding, strategy, bias, residual, act)
    ("dense s1 pad1 relu6", dense_weight(16), (1, 16, 9, 9), (1, 1), (1, 1, 1, 1), "auto",
     True, False, "relu6"),
    ("pruned s1 pad1 rows", pattern_weight(16), (1, 16, 14, 14), (1, 1), (1, 1, 1, 1), "rows",
     True, True, "relu"),
    ("pruned s2 pad1", pattern_weight(24), (1, 24, 11, 11), (2, 2), (1, 1, 1, 1), "auto",
     True, False, "relu6"),
    ("dense s2 pad0 rows", dense_weight(8), (2, 8, 10, 9), (2, 2), (0, 0, 0, 0), "rows",
     False, True, None),
    ("pruned s1 pad0 channels", pattern_weight(32), (1, 32, 6, 7), (1, 1), (0, 0, 0, 0),
     "channels", False, False, "relu"),
    ("dense s1 asymmetric pad", dense_weight(16, 3), (1, 16, 7, 10), (1, 1), (1, 0, 2, 1),
     "auto", True, True, "relu6"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_rewrites_and_matches_reference(h, well_formed, case):
    _, w, xs, stride, pad, strategy, with_bias, with_res, act = case
    c = xs[1]
    bias = np.linspace(-1, 1, c).astype("float32") if with_bias else None
    before = depthwise_module(
        xs, w, stride=stride, padding=pad, bias=bias, residual=with_res, act=act
    )
    p = DepthwiseConv2D(strategy=strategy, verify=True)
    after = p(before)
    (rec,) = p.records
    assert rec.rewritten, rec.reason
    assert rec.function == "depthwise_conv2d_0" and rec.max_abs_error is not None
    assert rec.strategy == (strategy if strategy != "auto" else rec.strategy)
    assert rec.kept_kernels == int(np.any(w.reshape(c, -1) != 0, axis=1).sum())
    act_op = {"relu": ["relu"], "relu6": ["clip"], None: []}[act]
    expect_fused = [
        "conv2d",
        *(["bias_add"] if with_bias else []),
        *(["residual_add"] if with_res else []),
        *act_op,
    ]
    assert list(rec.fused) == expect_fused
    # the conv and everything fused are gone: one call into the new kernel
    ops = h.relax_ops(after)
    assert not {"relax.nn.conv2d", "relax.add", "relax.clip", "relax.nn.relu"} & set(ops)
    assert ops.count("relax.call_tir") == 1
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs).astype("float32")
    args, res = [x], None
    if with_res:
        oh = (xs[2] + pad[0] + pad[2] - 3) // stride[0] + 1
        ow = (xs[3] + pad[1] + pad[3] - 3) // stride[1] + 1
        res = rng.standard_normal((xs[0], c, oh, ow)).astype("float32")
        args.append(res)
    ref = reference(x, w, stride=stride, padding=pad, bias=bias, residual=res, act=act)
    np.testing.assert_allclose(h.run_module(after, *args), ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(h.run_module(before, *args), ref, rtol=1e-4, atol=1e-4)


def test_pruned_layer_computes_its_own_four_taps():
    p = DepthwiseConv2D(strategy="rows")
    p(depthwise_module((1, 16, 14, 14), pattern_weight(16)))
    (rec,) = p.records
    assert rec.rewritten and rec.strategy == "rows" and rec.taps == 4


def test_epilogue_not_absorbed_when_the_conv_output_has_another_use(h, well_formed):
    w = dense_weight(8)
    bias = np.ones(8, "float32")
    before = depthwise_module((1, 8, 6, 6), w, bias=bias, act="relu", extra_use=True)
    p = DepthwiseConv2D()
    after = p(before)
    (rec,) = p.records
    assert rec.rewritten and rec.fused == ("conv2d",)
    ops = h.relax_ops(after)
    assert "relax.nn.conv2d" not in ops and "relax.add" in ops and "relax.nn.relu" in ops
    x = np.random.default_rng(0).standard_normal((1, 8, 6, 6)).astype("float32")
    conv = reference(x, w, stride=(1, 1), padding=(1, 1, 1, 1))
    got = run_tuple(after, x)
    np.testing.assert_allclose(got[1], conv, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got[0], np.maximum(conv + 1, 0), rtol=1e-4, atol=1e-4)


def run_tuple(mod, x):
    from tvm_ext._compat import host_target, tensor

    ex = tvm.compile(mod, target=host_target())
    vm = relax.VirtualMachine(ex, tvm.cpu())
    out = vm["main"](tensor(x, tvm.cpu()))
    return [o.numpy() for o in out]


@pytest.mark.parametrize(
    ("x_shape", "weight", "groups", "kw", "why"),
    [
        ((1, 8, 6, 6), dense_weight(8, k=8, per_group=4), 2, {}, "grouped convolution"),
        ((1, 8, 6, 6), dense_weight(8, k=16), 8, {}, "grouped convolution"),
        ((1, 8, 9, 9), dense_weight(8, size=5), 8, {"padding": (2, 2, 2, 2)}, "5x5"),
        ((1, 8, 6, 6), dense_weight(8), 8, {"weight_as_input": True}, "function input"),
        ((1, 8, 6, 6), np.zeros((8, 1, 3, 3), "float32"), 8, {}, "is zero"),
    ],
    ids=["groups-2", "multiplier-2", "5x5", "weight-input", "all-zero"],
)
def test_leaves_what_it_cannot_take_unchanged(well_formed, x_shape, weight, groups, kw, why):
    mod = depthwise_module(x_shape, weight, groups=groups, **kw)
    p = DepthwiseConv2D()
    tvm.ir.assert_structural_equal(p(mod), mod)
    (rec,) = p.records
    assert not rec.rewritten and why in rec.reason


def test_dense_convs_are_untouched_and_not_recorded(well_formed):
    mod = depthwise_module((1, 8, 6, 6), dense_weight(16, k=16, per_group=8), groups=1)
    p = DepthwiseConv2D()
    tvm.ir.assert_structural_equal(p(mod), mod)
    assert p.records == []
    assert "groups=1" in (eligibility(mod["main"].body.blocks[0].bindings[0].value) or "")


def test_gpu_target_is_refused(well_formed):
    mod = depthwise_module((1, 8, 6, 6), dense_weight(8))
    p = DepthwiseConv2D(target=make_target("adreno"))
    tvm.ir.assert_structural_equal(p(mod), mod)
    assert "GPU" in p.records[0].reason


def test_failed_verification_leaves_the_layer_as_it_was(well_formed):
    mod = depthwise_module((1, 8, 6, 6), dense_weight(8), bias=np.ones(8, "float32"), act="relu")
    p = DepthwiseConv2D(verify=True, tolerance=-1.0)  # no error is small enough
    tvm.ir.assert_structural_equal(p(mod), mod)
    (rec,) = p.records
    assert not rec.rewritten and "verification failed" in rec.reason


def test_bad_strategy_is_a_value_error():
    with pytest.raises(ValueError, match="strategy"):
        DepthwiseConv2D(strategy="width")


def test_compile_module_runs_depthwise_layers_and_keeps_records():
    w = pattern_weight(16)
    mod = depthwise_module((1, 16, 10, 10), w, bias=np.ones(16, "float32"), act="relu6")
    x = np.random.default_rng(1).standard_normal((1, 16, 10, 10)).astype("float32")
    ref = reference(x, w, stride=(1, 1), padding=(1, 1, 1, 1), bias=np.ones(16), act="relu6")
    compiled = compile_module(mod, verify=True)
    (rec,) = compiled.depthwise_records
    assert rec.rewritten and rec.fused == ("conv2d", "bias_add", "clip")
    assert rec.max_abs_error is not None and rec.max_abs_error < 1e-4
    np.testing.assert_allclose(compiled(x), ref, rtol=1e-4, atol=1e-4)
    scheduled = {r.name: r.schedule for r in compiled.schedule_records}
    assert scheduled[rec.function] == "ours"
    off = compile_module(mod, depthwise=False)
    assert off.depthwise_records == []
    np.testing.assert_allclose(off(x), ref, rtol=1e-4, atol=1e-4)


def test_torch_depthwise_block_through_the_pipeline():
    """A MobileNet-V2 style block (depthwise conv + BN + ReLU6, strided and not), pattern
    pruned, imported from PyTorch: BN folds into the bias, both layers rewritten."""
    from patsparse.compiler import compile_torch

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU6(),
        nn.Conv2d(16, 16, 3, 2, 1, groups=16),
        nn.ReLU6(),
    ).eval()
    with torch.no_grad():
        for conv, seed in ((model[0], 0), (model[3], 1)):
            conv.weight.copy_(torch.from_numpy(pattern_weight(16, seed)))
        model[1].running_mean.uniform_(-0.3, 0.3)
        model[1].running_var.uniform_(0.5, 2.0)
    x = torch.randn(1, 16, 12, 12)
    compiled = compile_torch(model, x, verify=True)
    assert [r.rewritten for r in compiled.depthwise_records] == [True, True]
    assert all(r.fused == ("conv2d", "bias_add", "clip") for r in compiled.depthwise_records)
    with torch.no_grad():
        np.testing.assert_allclose(compiled(x.numpy()), model(x).numpy(), rtol=1e-4, atol=1e-4)
