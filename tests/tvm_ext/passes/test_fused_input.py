"""Pads and nearest upsamplings before a conv, absorbed into the kernel's ``ps_pad`` stage by
PatternSparseConv2D and BlockedConv2D (``fuse_input``): the separate functions are gone and
the kernel reads the unpadded, low-resolution input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tvm_ext._compat import relax, tvm
from tvm_ext.conv_rewriter import CONV_ATTR
from tvm_ext.passes import BlockedConv2D, PatternSparseConv2D

_TORCH_MODE = {"reflect": "reflect", "replicate": "replicate", "zeros": "constant"}
_RELAX_MODE = {"reflect": "reflect", "replicate": "replicate", "zeros": "constant"}


def _module(
    x_shape, weights, *, pad=None, upsample=1, conv_pad=(0, 0, 0, 0), bias=False, relu=False
):
    """``main(x)``: [nearest upsample] -> [pad (mode, (t, l, b, r))] -> conv per weight (each
    reading the same padded tensor, outputs added) [-> bias] [-> relu]."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(x_shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = x
            if upsample > 1:
                hh, ww = x_shape[2:]
                y = bb.emit(
                    relax.op.image.resize2d(
                        y, (hh * upsample, ww * upsample), method="nearest_neighbor"
                    )
                )
            if pad is not None:
                mode, (top, left, bottom, right) = pad
                y = bb.emit(
                    relax.op.nn.pad(
                        y, (0, 0, 0, 0, top, bottom, left, right), pad_mode=_RELAX_MODE[mode]
                    )
                )
            outs = []
            for w in weights:
                z = bb.emit(relax.op.nn.conv2d(y, relax.const(w), padding=conv_pad))
                if bias:
                    k = w.shape[0]
                    b_ = np.linspace(-1, 1, k, dtype="float32").reshape(1, k, 1, 1)
                    z = bb.emit(relax.op.add(z, relax.const(b_)))
                if relu:
                    z = bb.emit(relax.op.nn.relu(z))
                outs.append(z)
            out = outs[0]
            for z in outs[1:]:
                out = bb.emit(relax.op.add(out, z))
            out = bb.emit_output(out)
        bb.emit_func_output(out)
    return bb.get()


def _reference(x, weights, *, pad=None, upsample=1, conv_pad=(0, 0, 0, 0), bias=False, relu=False):
    xt = torch.from_numpy(x)
    if upsample > 1:
        xt = torch.nn.functional.interpolate(xt, scale_factor=upsample, mode="nearest")
    if pad is not None:
        mode, (top, left, bottom, right) = pad
        xt = torch.nn.functional.pad(xt, (left, right, top, bottom), mode=_TORCH_MODE[mode])
    out = None
    pt, pl, pb, pr = conv_pad
    xt = torch.nn.functional.pad(xt, (pl, pr, pt, pb))
    for w in weights:
        k = w.shape[0]
        b_ = torch.linspace(-1, 1, k) if bias else None
        z = torch.nn.functional.conv2d(xt, torch.from_numpy(w), b_)
        if relu:
            z = torch.relu(z)
        out = z if out is None else out + z
    return out.numpy()


def _dense(shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).numpy()


def _check(h, before, p, x, ref, *, ops_gone, fused_first):
    after = p(before)
    rewritten = [r for r in p.records if r.rewritten]
    assert rewritten, [r.reason for r in p.records]
    for rec in rewritten:
        assert list(rec.fused[: len(fused_first)]) == fused_first, rec.fused
        assert rec.max_abs_error is not None and rec.max_abs_error < 1e-3
        assert "ps_pad" in after[rec.function].script()
    ops = h.relax_ops(after)
    for op in ops_gone:
        assert op not in ops, ops
    assert "relax.nn.conv2d" not in ops
    np.testing.assert_allclose(h.run_module(after, x), ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(h.run_module(before, x), ref, rtol=1e-4, atol=1e-4)
    return after, rewritten


def _kernel_input(mod, name):
    """The first argument of main's ``call_tir`` into PrimFunc ``name``."""
    found = []

    def visit(expr):
        call_tir = isinstance(expr, relax.Call) and expr.op == tvm.ir.Op.get("relax.call_tir")
        if call_tir and expr.args[0].name_hint == name:
            found.append(expr.args[1].fields[0])

    relax.analysis.post_order_visit(mod["main"], visit)
    assert len(found) == 1
    return found[0]


def _pattern(h, k, c, *, block=None, seed=0):
    return h.pattern_weight(k, c, density=0.25, block=block, seed=seed)


CASES = [
    # (name, pass, weight kind, x shape, pad, upsample, conv padding, bias/relu, fused first)
    (
        "blocked 9x9 reflect 4",
        "blocked",
        "dense9",
        (1, 3, 12, 12),
        ("reflect", (4, 4, 4, 4)),
        1,
        (0, 0, 0, 0),
        False,
        ["reflect_pad"],
    ),
    (
        "block-pattern reflect 1",
        "pattern",
        "block",
        (1, 16, 8, 8),
        ("reflect", (1, 1, 1, 1)),
        1,
        (0, 0, 0, 0),
        True,
        ["reflect_pad"],
    ),
    (
        "per-kernel replicate, asymmetric",
        "pattern",
        "kernel",
        (1, 8, 7, 9),
        ("replicate", (2, 1, 0, 1)),
        1,
        (0, 0, 0, 0),
        True,
        ["replicate_pad"],
    ),
    (
        "blocked upsample x2, conv pad 1",
        "blocked",
        "dense3",
        (1, 8, 5, 6),
        None,
        2,
        (1, 1, 1, 1),
        True,
        ["upsample_nearest2"],
    ),
    (
        "per-kernel upsample x2 + reflect",
        "pattern",
        "kernel",
        (1, 8, 4, 4),
        ("reflect", (1, 1, 1, 1)),
        2,
        (0, 0, 0, 0),
        False,
        ["upsample_nearest2", "reflect_pad"],
    ),
    (
        "block-pattern upsample x3",
        "pattern",
        "block",
        (1, 16, 3, 4),
        None,
        3,
        (1, 1, 1, 1),
        False,
        ["upsample_nearest3"],
    ),
    (
        "blocked zero pad + conv pad",
        "blocked",
        "dense3",
        (1, 8, 6, 6),
        ("zeros", (1, 2, 0, 1)),
        1,
        (1, 1, 1, 1),
        False,
        ["zero_pad"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_pad_and_upsample_are_absorbed_and_match_pytorch(h, well_formed, case):
    _, which, kind, xs, pad, up, conv_pad, epi, fused = case
    c = xs[1]
    w = {
        "dense9": lambda: _dense((16, c, 9, 9)),
        "dense3": lambda: _dense((16, c, 3, 3)),
        "block": lambda: _pattern(h, 16, c, block=16),
        "kernel": lambda: _pattern(h, 16, c),
    }[kind]()
    kw = dict(pad=pad, upsample=up, conv_pad=conv_pad, bias=epi, relu=epi)
    before = _module(xs, [w], **kw)
    x = np.random.default_rng(0).standard_normal(xs).astype("float32")
    ref = _reference(x, [w], **kw)
    p = BlockedConv2D(verify=True) if which == "blocked" else PatternSparseConv2D(verify=True)
    gone = [*(["relax.nn.pad"] if pad else []), *(["relax.image.resize2d"] if up > 1 else [])]
    after, (rec,) = _check(h, before, p, x, ref, ops_gone=gone, fused_first=fused)
    expect_kind = {"dense9": "block", "dense3": "block", "block": "block", "kernel": "kernel"}
    assert rec.kind == expect_kind[kind]
    if epi:
        assert list(rec.fused[len(fused) :]) == ["conv2d", "bias_add", "relu"]
    # the kernel takes the stored (unpadded, low-resolution) input: main's parameter
    assert _kernel_input(after, rec.function).same_as(after["main"].params[0])
    func = after[rec.function]
    # block kernels carry the description ChainConvLayouts rebuilds them from, with what they
    # absorbed (a chained norm before them writes the border and the upsampling for them)
    attrs = func.attrs or {}
    if rec.kind == "block":
        desc = json.loads(str(attrs[CONV_ATTR]))
        mode = pad[0] if pad else "zeros"
        assert (desc["pad_mode"], desc["upsample"]) == (mode, up)
        if fused == ["zero_pad"]:
            assert desc["padding"] == [2, 3, 1, 2] and desc["in_shape"] == list(xs)
    else:
        assert CONV_ATTR not in attrs


def test_a_pad_shared_by_two_convs_is_absorbed_by_both(h, well_formed):
    xs, pad = (1, 8, 6, 6), ("reflect", (1, 1, 1, 1))
    ws = [_dense((16, 8, 3, 3), seed=1), _dense((16, 8, 3, 3), seed=2)]
    before = _module(xs, ws, pad=pad)
    x = np.random.default_rng(1).standard_normal(xs).astype("float32")
    p = BlockedConv2D(verify=True)
    _, recs = _check(
        h,
        before,
        p,
        x,
        _reference(x, ws, pad=pad),
        ops_gone=["relax.nn.pad"],
        fused_first=["reflect_pad"],
    )
    assert len(recs) == 2


@pytest.mark.parametrize(
    ("why", "pad", "conv_pad", "options"),
    [
        ("fuse_input=False", ("reflect", (1, 1, 1, 1)), (0, 0, 0, 0), {"fuse_input": False}),
        ("mirrored and zero padding", ("reflect", (1, 1, 1, 1)), (1, 1, 1, 1), {}),
        ("reflection as wide as the input", ("reflect", (0, 4, 0, 0)), (0, 0, 0, 0), {}),
    ],
)
def test_pads_it_cannot_absorb_stay_and_the_conv_is_still_rewritten(
    h, well_formed, why, pad, conv_pad, options
):
    xs = (1, 8, 5, 4)
    w = _dense((16, 8, 3, 3))
    before = _module(xs, [w], pad=pad, conv_pad=conv_pad)
    p = BlockedConv2D(**options)
    after = p(before)
    (rec,) = p.records
    assert rec.rewritten and rec.fused == ("conv2d",), why
    assert "relax.nn.pad" in h.relax_ops(after)
    if why != "reflection as wide as the input":  # (torch refuses that pad)
        x = np.random.default_rng(2).standard_normal(xs).astype("float32")
        ref = _reference(x, [w], pad=pad, conv_pad=conv_pad)
        np.testing.assert_allclose(h.run_module(after, x), ref, rtol=1e-4, atol=1e-4)


def test_an_upsample_with_other_users_stays_for_them(h, well_formed):
    """The conv reads the low-resolution input; the upsampled tensor is still computed for
    the function's output that needs it."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 8, 4, 4), "float32"))
    w = _dense((16, 8, 3, 3))
    with bb.function("main", [x]):
        with bb.dataflow():
            up = bb.emit(relax.op.image.resize2d(x, (8, 8), method="nearest_neighbor"))
            y = bb.emit(relax.op.nn.conv2d(up, relax.const(w), padding=(1, 1, 1, 1)))
            out = bb.emit_output(relax.Tuple([y, up]))
        bb.emit_func_output(out)
    before = bb.get()
    p = BlockedConv2D(verify=True)
    after = p(before)
    assert p.records[0].fused == ("upsample_nearest2", "conv2d")
    assert h.relax_ops(after).count("relax.image.resize2d") == 1
    xv = np.random.default_rng(3).standard_normal((1, 8, 4, 4)).astype("float32")
    from tvm_ext._compat import host_target, tensor

    vm = relax.VirtualMachine(tvm.compile(after, target=host_target()), tvm.cpu())
    got = vm["main"](tensor(xv))
    ref = _reference(xv, [w], upsample=2, conv_pad=(1, 1, 1, 1))
    np.testing.assert_allclose(got[0].numpy(), ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got[1].numpy(), xv.repeat(2, 2).repeat(2, 3))
