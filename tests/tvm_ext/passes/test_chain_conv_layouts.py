"""ChainConvLayouts: chained block layouts between rewritten convs (structure and numbers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from patsparse.bench import BenchConfig, prune_for_bench
from patsparse.compiler.compile import compile_torch
from patsparse.models import build_model, default_input_shape
from tvm_ext._compat import relax, tvm
from tvm_ext.conv_rewriter import CONV_ATTR, OPAQUE
from tvm_ext.layout import analyze_blocked_weight, analyze_conv_weight
from tvm_ext.passes import BlockedConv2D, ChainConvLayouts, PatternSparseConv2D
from tvm_ext.te.block_names import PAD_BLOCK
from tvm_ext.te.block_plan import merged_block_arrays
from tvm_ext.te.conv_spec import BlockedActivation, ConvGeometry, Epilogue
from tvm_ext.te.pattern_conv import pattern_conv2d_compute


def _weight(h, k, c, seed):
    # scaled so activations stay O(1) through a few layers (absolute tolerances mean something)
    w = h.pattern_weight(k, c, density=0.25, block=16, seed=seed)
    return (w / np.sqrt(np.count_nonzero(w) / k)).astype("float32")


def _build(fn, x_shape):
    """``main(x)`` built with BlockBuilder; ``fn(bb, x)`` emits the body, returns the output."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(x_shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(fn(bb, x))
        bb.emit_func_output(out)
    return bb.get()


def _conv(bb, x, w, *, stride=1, padding=1, dilation=1, bias=None, relu=False, residual=None):
    conv = relax.op.nn.conv2d(x, relax.const(w), strides=stride, padding=padding, dilation=dilation)
    y = bb.emit(conv)
    if bias is not None:
        y = bb.emit(relax.op.add(y, relax.const(bias.reshape(1, -1, 1, 1))))
    if residual is not None:
        y = bb.emit(relax.op.add(y, residual))
    return bb.emit(relax.op.nn.relu(y)) if relu else y


def _rewrite(mod, **chain):
    """The conv rewrites (unscheduled: structure only) and the chain pass."""
    passes = [PatternSparseConv2D(schedule=False), BlockedConv2D(schedule=False)]
    pass_ = ChainConvLayouts(**chain)
    return tvm.transform.Sequential([*passes, pass_])(mod), pass_


def _kernels(mod):
    return {gv.name_hint: f for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}


def _check(h, mod, x_shape, *, seed=0, rtol=1e-4, atol=1e-4, **chain):
    """Compiled (default schedules, chained) output vs the unchanged Relax module."""
    x = np.random.default_rng(seed).standard_normal(x_shape).astype("float32")
    passes = [PatternSparseConv2D(), BlockedConv2D(), ChainConvLayouts(**chain)]
    after = tvm.transform.Sequential(passes)(mod)
    np.testing.assert_allclose(h.run_module(after, x), h.run_module(mod, x), rtol=rtol, atol=atol)
    return after


# -- structure ------------------------------------------------------------------------------


def test_structural_conv_conv_chain_before_expected(h, well_formed):
    """conv+ReLU -> conv: the producer writes its own blocked, bordered layout (no gather), the
    consumer reads it in place (no pad stage) with channel indices permuted at compile time."""
    xs = (1, 16, 6, 6)
    w1, w2 = _weight(h, 32, 16, 1), _weight(h, 16, 32, 2)
    before = _build(lambda bb, x: _conv(bb, _conv(bb, x, w1, relu=True), w2), xs)
    after, chain = _rewrite(before)

    lay1, lay2 = analyze_conv_weight(w1), analyze_conv_weight(w2)
    assert lay1.kind == lay2.kind == "block"
    v1, i1 = merged_block_arrays(lay1)
    v2, i2 = merged_block_arrays(lay2)
    act = BlockedActivation(lay1.rows, lay1.block, 1)
    geo1 = ConvGeometry(xs, (1, 1), (1, 1, 1, 1))
    geo2 = ConvGeometry((1, 32, 6, 6), (1, 1), (1, 1, 1, 1), in_layout=act)
    ep1, ep2 = Epilogue(relu=True, out_border=1), Epilogue()

    def expected_body(bb, x):
        y = bb.emit_te(
            lambda *t: pattern_conv2d_compute(t, geo1, lay1, ep1),
            x,
            relax.const(v1),
            relax.const(i1),
            primfunc_name_hint="pattern_sparse_conv2d_0_chained",
        )
        return bb.emit_te(
            lambda *t: pattern_conv2d_compute(t, geo2, lay2, ep2),
            y,
            relax.const(v2),
            relax.const(lay1.inverse[i2].astype("int32")),
            relax.const(lay2.inverse),
            primfunc_name_hint="pattern_sparse_conv2d_1_chained",
        )

    expected = _build(expected_body, xs)
    for gv, func in list(expected.functions_items()):
        if isinstance(func, tvm.tirx.PrimFunc):
            expected[gv] = func.with_attr("op_pattern", OPAQUE)
    tvm.ir.assert_structural_equal(after, expected)
    kernels = _kernels(after)
    assert PAD_BLOCK not in kernels["pattern_sparse_conv2d_1_chained"].script()
    assert "inverse" not in kernels["pattern_sparse_conv2d_0_chained"].script()
    rec = {r.function: r for r in chain.records}
    assert rec["pattern_sparse_conv2d_0_chained"].chained_output
    assert rec["pattern_sparse_conv2d_1_chained"].chained_input
    assert "leaves the function" in rec["pattern_sparse_conv2d_1_chained"].reason


def test_structural_dilated_chain_border_covers_the_consumers_padding(h, well_formed):
    """dilation 2 -> dilation 3 ("same" padding 2, then 3): the producer writes a border of
    3, the consumer's padding; both keep their dilation."""
    xs = (1, 16, 9, 9)
    w1, w2 = _weight(h, 32, 16, 1), _weight(h, 16, 32, 2)

    def body(bb, x):
        y = _conv(bb, x, w1, padding=2, dilation=2, relu=True)
        return _conv(bb, y, w2, padding=3, dilation=3)

    after, chain = _rewrite(_build(body, xs))
    lay1, lay2 = analyze_conv_weight(w1), analyze_conv_weight(w2)
    v1, i1 = merged_block_arrays(lay1)
    v2, i2 = merged_block_arrays(lay2)
    act = BlockedActivation(lay1.rows, lay1.block, 3)
    geo1 = ConvGeometry(xs, (1, 1), (2, 2, 2, 2), dilation=(2, 2))
    geo2 = ConvGeometry((1, 32, 9, 9), (1, 1), (3, 3, 3, 3), in_layout=act, dilation=(3, 3))
    ep1 = Epilogue(relu=True, out_border=3)

    def expected_body(bb, x):
        y = bb.emit_te(
            lambda *t: pattern_conv2d_compute(t, geo1, lay1, ep1),
            x,
            relax.const(v1),
            relax.const(i1),
            primfunc_name_hint="pattern_sparse_conv2d_0_chained",
        )
        return bb.emit_te(
            lambda *t: pattern_conv2d_compute(t, geo2, lay2, Epilogue()),
            y,
            relax.const(v2),
            relax.const(lay1.inverse[i2].astype("int32")),
            relax.const(lay2.inverse),
            primfunc_name_hint="pattern_sparse_conv2d_1_chained",
        )

    expected = _build(expected_body, xs)
    for gv, func in list(expected.functions_items()):
        if isinstance(func, tvm.tirx.PrimFunc):
            expected[gv] = func.with_attr("op_pattern", OPAQUE)
    tvm.ir.assert_structural_equal(after, expected)
    assert chain.records[0].chained_output and chain.records[1].chained_input


def _vgg_stage(h, xs=(1, 16, 8, 8)):
    """conv+bias+ReLU -> conv+ReLU -> max pool 2x2 -> conv (a VGG stage boundary)."""
    w1, w2, w3 = _weight(h, 32, 16, 1), _weight(h, 32, 32, 2), _weight(h, 16, 32, 3)
    bias = np.linspace(-0.5, 0.5, 32).astype("float32")

    def body(bb, x):
        y = _conv(bb, x, w1, bias=bias, relu=True)
        y = _conv(bb, y, w2, relu=True)
        y = bb.emit(relax.op.nn.max_pool2d(y, pool_size=(2, 2), strides=(2, 2)))
        return _conv(bb, y, w3)

    return _build(body, xs), xs


def test_max_pool_is_fused_and_no_nchw_op_is_left_between_convs(h, well_formed):
    mod, _ = _vgg_stage(h)
    after, chain = _rewrite(mod)
    assert "relax.nn.max_pool2d" not in h.relax_ops(after)
    assert [(r.chained_input, r.chained_output, r.pool) for r in chain.records] == [
        (False, True, 1),
        (True, True, 2),
        (True, False, 1),
    ]
    # every call reads the previous call's output directly, 5-D in between
    calls = []
    relax.analysis.post_order_visit(
        after["main"], lambda e: calls.append(e) if _is_call_tir(e) else None
    )
    shapes = [tuple(int(d) for d in c.ty_args[0].shape) for c in calls]
    assert shapes == [(1, 2, 10, 10, 16), (1, 2, 6, 6, 16), (1, 16, 4, 4)]
    for name, func in _kernels(after).items():
        assert PAD_BLOCK not in func.script() or name.startswith("pattern_sparse_conv2d_0")
        assert CONV_ATTR not in (func.attrs or {})


def _is_call_tir(expr):
    return (
        isinstance(expr, relax.Call)
        and isinstance(expr.op, tvm.ir.Op)
        and expr.op.name == "relax.call_tir"
    )


def test_disabled_pass_only_removes_metadata(h, well_formed):
    mod, _ = _vgg_stage(h)
    rewritten = tvm.transform.Sequential(
        [PatternSparseConv2D(schedule=False), BlockedConv2D(schedule=False)]
    )(mod)
    assert any(CONV_ATTR in (f.attrs or {}) for f in _kernels(rewritten).values())
    off, chain = _rewrite(mod, enabled=False)
    assert not chain.records
    expected = rewritten
    for gv, func in list(expected.functions_items()):
        if isinstance(func, tvm.tirx.PrimFunc) and CONV_ATTR in (func.attrs or {}):
            expected[gv] = func.without_attr(CONV_ATTR)
    tvm.ir.assert_structural_equal(off, expected)
    no_pool, chain = _rewrite(mod, pool=False)
    assert "relax.nn.max_pool2d" in h.relax_ops(no_pool)
    assert [r.chained_output for r in chain.records] == [True, False, False]


def _unchained(mod):
    return _rewrite(mod, enabled=False)[0]


@pytest.mark.parametrize(
    "case",
    ["single conv", "used by a non-conv op", "per-kernel patterns", "second use leaves"],
)
def test_non_chainable_graphs_are_unchanged(h, well_formed, case):
    xs = (1, 16, 6, 6)
    w1, w2 = _weight(h, 32, 16, 1), _weight(h, 16, 32, 2)

    def body(bb, x):
        if case == "single conv":
            return _conv(bb, x, w1, relu=True)
        if case == "used by a non-conv op":
            y = _conv(bb, x, w1, relu=True)
            return bb.emit(relax.op.mean(y, axis=[2, 3]))
        if case == "per-kernel patterns":
            k1 = h.pattern_weight(32, 16, density=0.25, seed=1)
            k2 = h.pattern_weight(16, 32, density=0.25, seed=2)
            return _conv(bb, _conv(bb, x, k1, relu=True), k2)
        y = _conv(bb, x, w1, relu=True)  # feeds a conv and, summed, the output
        z = _conv(bb, y, w2)
        return bb.emit(relax.op.add(bb.emit(relax.op.mean(y)), bb.emit(relax.op.mean(z))))

    mod = _build(body, xs)
    after, chain = _rewrite(mod)
    tvm.ir.assert_structural_equal(after, _unchained(mod))
    assert not any(r.chained_input or r.chained_output for r in chain.records)


def test_bad_option_is_a_clear_error():
    with pytest.raises(ValueError, match="min_pixels"):
        ChainConvLayouts(min_pixels=-1)
    with pytest.raises(ValueError, match="max_channels"):
        ChainConvLayouts(max_channels=0)


# -- numbers ----------------------------------------------------------------------------


@pytest.mark.parametrize("planar", [False, True])
def test_conv_conv_chain_matches(h, well_formed, planar):
    xs = (1, 16, 9, 7)
    w1, w2 = _weight(h, 32, 16, 4), _weight(h, 32, 32, 5)
    bias = np.linspace(-1, 1, 32).astype("float32")
    mod = _build(lambda bb, x: _conv(bb, _conv(bb, x, w1, bias=bias, relu=True), w2), xs)
    # planar: activations above max_channels keep NCHW order (with a border, no pad stage)
    _, chain = _rewrite(mod, max_channels=16 if planar else 256)
    assert chain.records[0].chained_output and chain.records[0].planar == planar
    _check(h, mod, xs, max_channels=16 if planar else 256)


@pytest.mark.parametrize("planar", [False, True])
def test_dilated_convs_chain_and_match(h, well_formed, planar):
    """Iizuka-like: conv -> dilation 2 -> dilation 3 (one strided) -> a dense dilated conv on
    the blocked kernel; every border is the widest padding its consumers read. 15x14: the
    first two compute their rows inside the chained epilogue (FUSE_ROWS_FROM_PIXELS)."""
    xs = (1, 16, 15, 14)
    w1, w2, w3 = _weight(h, 32, 16, 1), _weight(h, 32, 32, 2), _weight(h, 32, 32, 3)
    dense = np.random.default_rng(4).standard_normal((16, 32, 3, 3)).astype("float32") / 12

    def body(bb, x):
        y = _conv(bb, x, w1, relu=True)
        y = _conv(bb, y, w2, padding=2, dilation=2, relu=True)
        y = _conv(bb, y, w3, stride=2, padding=3, dilation=3, relu=True)
        return _conv(bb, y, dense, padding=2, dilation=2)

    mod = _build(body, xs)
    max_channels = 16 if planar else 256
    _, chain = _rewrite(mod, max_channels=max_channels)
    assert [r.chained_output for r in chain.records] == [True, True, True, False]
    assert all(r.chained_input for r in chain.records[1:])
    _check(h, mod, xs, max_channels=max_channels)


@pytest.mark.parametrize("planar", [False, True])
def test_chain_through_max_pool_matches(h, well_formed, planar):
    mod, xs = _vgg_stage(h, (1, 16, 10, 10))
    after = _check(h, mod, xs, max_channels=16 if planar else 256)
    assert "relax.nn.max_pool2d" not in h.relax_ops(after)


def test_large_layers_compute_rows_inside_the_chained_epilogue(h):
    """From 56x56 the conv runs one output row (two under a 2x2 pool) at a time inside the
    epilogue's parallel row loop, also when the epilogue writes the chained layout."""
    mod, xs = _vgg_stage(h, (1, 16, 56, 56))
    after = _check(h, mod, xs)
    pooled = _kernels(after)["pattern_sparse_conv2d_1_chained"].script()
    assert "T.parallel" in pooled and "T.vectorized" in pooled


@pytest.mark.parametrize(("downsample", "planar"), [(False, False), (True, False), (True, True)])
def test_resnet_basic_block_with_residual_matches(h, well_formed, downsample, planar):
    """stem -> basic block (identity or stride-2 with a 1x1 downsample) -> conv: the block
    input is chained into conv1, the downsample and the residual conv2's epilogue adds."""
    xs = (1, 8, 12, 12)
    rng = np.random.default_rng(0)
    stem = rng.standard_normal((32, 8, 3, 3)).astype("float32") / 6
    w1, w2, w3 = _weight(h, 32, 32, 6), _weight(h, 32, 32, 7), _weight(h, 16, 32, 8)
    ds = rng.standard_normal((32, 32, 1, 1)).astype("float32") / 6
    bias = np.linspace(-0.3, 0.3, 32).astype("float32")

    def body(bb, x):
        x0 = _conv(bb, x, stem, relu=True)
        identity = _conv(bb, x0, ds, stride=2, padding=0, bias=bias) if downsample else x0
        y = _conv(bb, x0, w1, stride=2 if downsample else 1, bias=bias, relu=True)
        y = _conv(bb, y, w2, bias=bias, residual=identity, relu=True)
        return _conv(bb, y, w3)

    mod = _build(body, xs)
    max_channels = 16 if planar else 256
    _, chain = _rewrite(mod, max_channels=max_channels)
    assert sum(r.chained_residual for r in chain.records) == 1
    assert all(r.chained_output and r.planar == planar for r in chain.records[:-1])
    _check(h, mod, xs, max_channels=max_channels)


def _scaled_pruned(name):
    """A model pruned as ``patsparse bench`` prunes it (block-pattern at the paper's rate),
    weights rescaled so activations stay O(1) (random init pruned 12x shrinks them ~1e7)."""
    torch.manual_seed(0)
    model = prune_for_bench(build_model(name).eval(), BenchConfig(model=name))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
                kept = max(int(torch.count_nonzero(m.weight)), 1)
                m.weight.mul_(float(np.sqrt(m.weight.numel() / kept)))
    return model


@pytest.mark.parametrize("name", ["vgg16-cifar", "resnet18-cifar"])
def test_whole_model_chained_matches_pytorch(name):
    model = _scaled_pruned(name)
    x = torch.randn(default_input_shape(name), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(ref).max() > 0.1  # the tolerance below is not vacuous
    compiled = compile_torch(model, x, verify=False)  # compared with PyTorch below
    chained = [r for r in compiled.chain_records if r.chained_output]
    # VGG: every conv but the last (its pool feeds the classifier); ResNet: all but the
    # stage outputs that feed a compacted downsample or the final mean
    assert len(chained) >= (12 if name == "vgg16-cifar" else 14)
    if name == "vgg16-cifar":
        assert sum(r.pool == 2 for r in compiled.chain_records) == 4
    else:
        assert any(r.chained_residual for r in compiled.chain_records)
    np.testing.assert_allclose(compiled(x.numpy()), ref, rtol=1e-4, atol=1e-4)
    plain = compile_torch(model, x, chain=False, verify=False)
    assert not any(r.chained_output or r.chained_input for r in plain.chain_records)
    np.testing.assert_allclose(plain(x.numpy()), ref, rtol=1e-4, atol=1e-4)


def test_blocked_layout_producer_chains_too(h, well_formed):
    """A dense conv on the blocked kernel (e.g. VGG's stem) writes the chained layout too."""
    xs = (1, 3, 8, 8)
    stem = np.random.default_rng(3).standard_normal((32, 3, 3, 3)).astype("float32") / 3
    assert analyze_blocked_weight(stem).kind == "block"  # type: ignore[union-attr]
    w = _weight(h, 16, 32, 9)
    mod = _build(lambda bb, x: _conv(bb, _conv(bb, x, stem, relu=True), w), xs)
    _, chain = _rewrite(mod)
    assert chain.records[0].function.startswith("blocked_conv2d_")
    assert chain.records[0].chained_output and chain.records[1].chained_input
    _check(h, mod, xs)


def test_gpu_targets_keep_nchw(h, well_formed):
    """The chained layouts are a CPU (vector lanes) choice: a GPU target leaves them out."""
    from tvm_ext.targets import make_target

    mod, _ = _vgg_stage(h)
    gpu, chain = _rewrite(mod, target=make_target("adreno"))
    tvm.ir.assert_structural_equal(gpu, _unchained(mod))
    assert not chain.records


def _inverted_residual(inp, oup, stride, expand, seed):
    """MobileNet-V2's block (1x1 expand + ReLU6, depthwise 3x3 + ReLU6, 1x1 project, the
    residual when stride 1), BN statistics randomised so the folded bias is not zero."""
    from patsparse.models.mobilenet import InvertedResidual

    torch.manual_seed(seed)
    block = InvertedResidual(inp, oup, stride, expand).eval()
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return block


@pytest.mark.parametrize(
    "inp, oup, stride, expand", [(16, 16, 1, 6), (16, 24, 2, 5)], ids=["stride1", "stride2"]
)
def test_mobilenet_block_chains_through_the_depthwise_conv(well_formed, inp, oup, stride, expand):
    """1x1 -> ReLU6 -> depthwise 3x3 -> 1x1 runs chained end to end: no NCHW tensor, clip or
    layout transform between the kernels, the depthwise kernel reads and writes the 1x1 convs'
    rows of lanes (80 channels: the last row half padding lanes), and matches PyTorch."""
    block = _inverted_residual(inp, oup, stride, expand, seed=stride)
    x = torch.randn(1, inp, 14, 14, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = block(x).numpy()
    compiled = compile_torch(block, x, verify=False)  # compared with PyTorch below
    kinds = [(r.kind, r.chained_input, r.chained_output) for r in compiled.chain_records]
    assert kinds == [("block", False, True), ("depthwise", True, True), ("block", True, False)]
    assert compiled.chain_records[1].fused == ("clip",)
    np.testing.assert_allclose(compiled(x.numpy()), ref, rtol=1e-4, atol=1e-4)
    plain = compile_torch(block, x, chain=False, verify=False)
    assert not any(r.chained_output for r in plain.chain_records)
    np.testing.assert_allclose(plain(x.numpy()), ref, rtol=1e-4, atol=1e-4)


def test_mobilenet_block_rewrite_leaves_no_op_between_kernels(well_formed):
    """Structure right after the pass: three kernel calls, the chained buffers between them."""
    from patsparse.compiler import import_torch
    from tvm_ext.passes import DepthwiseConv2D, FoldConvBiasBatchNorm

    block = _inverted_residual(16, 16, 1, 6, seed=0)
    mod = import_torch(block, torch.randn(1, 16, 14, 14))
    rewrites = [
        relax.transform.FoldConstant(),
        FoldConvBiasBatchNorm(),
        relax.transform.FoldBatchnormToConv2D(),
        relax.transform.FoldConstant(),
        DepthwiseConv2D(schedule=False),
        BlockedConv2D(schedule=False),
    ]
    out = tvm.transform.Sequential([*rewrites, ChainConvLayouts()])(mod)
    calls = [b.value for blk in out["main"].body.blocks for b in blk.bindings]
    ops = [c.args[0].name_hint if _is_call_tir(c) else type(c).__name__ for c in calls]
    assert ops == [
        "blocked_conv2d_0_chained",
        "depthwise_conv2d_1_chained",
        "blocked_conv2d_1_chained",
        "Tuple",
    ]
    # (N, rows of 16 lanes, H + 2, W + 2, 16): the border is the depthwise conv's padding
    assert [int(v) for v in calls[0].ty.shape] == [1, 6, 16, 16, 16]
    assert [int(v) for v in calls[1].ty.shape] == [1, 6, 14, 14, 16]
    assert not any(
        "patsparse.depthwise" in (f.attrs or {})
        for _, f in out.functions_items()
        if isinstance(f, tvm.tirx.PrimFunc)
    )
    off = ChainConvLayouts(depthwise=False)
    tvm.transform.Sequential([*rewrites, off])(mod)
    assert [r.kind for r in off.records] == ["block", "block"]
    assert off.records[0].reason == "used by relax.clip, not a block-layout conv"


# -- norms ----------------------------------------------------------------------------------


def _norm(bb, y, c, *, groups=0, seed=0, affine=True):
    rng = np.random.default_rng(seed)
    gamma = relax.const(
        (1 + 0.3 * rng.standard_normal(c)).astype("float32") if affine else np.ones(c, "float32")
    )
    beta = relax.const(
        (0.3 * rng.standard_normal(c)).astype("float32") if affine else np.zeros(c, "float32")
    )
    flags = {"center": affine, "scale": affine}
    if groups:
        call = relax.op.nn.group_norm(y, gamma, beta, groups, 1, [2, 3], **flags)
    else:
        call = relax.op.nn.instance_norm(y, gamma, beta, 1, [2, 3], **flags)
    return bb.emit(call)


def _reflect(bb, y, width):
    return bb.emit(relax.op.nn.pad(y, [0, 0, 0, 0, width, width, width, width], "reflect"))


def _up2(bb, y):
    from tvm_ext.relax_match import static_shape

    _, _, hh, ww = static_shape(y)
    return bb.emit(relax.op.image.resize2d(y, (2 * hh, 2 * ww), method="nearest_neighbor"))


def _style_block(h, xs):
    """Johnson-like: conv -> instance norm -> ReLU -> reflection pad -> conv (-> a norm whose
    output leaves the function, NCHW)."""
    w1, w2 = _weight(h, 32, 16, 11), _weight(h, 32, 32, 12)

    def body(bb, x):
        y = _norm(bb, _conv(bb, x, w1), 32, seed=1)
        y = bb.emit(relax.op.nn.relu(y))
        y = _conv(bb, _reflect(bb, y, 1), w2, padding=0)
        return _norm(bb, y, 32, seed=2, affine=False)

    return _build(body, xs)


def test_structural_norm_chains_between_convs_and_the_pad_becomes_its_border(h, well_formed):
    xs = (1, 16, 12, 10)
    after, chain = _rewrite(_style_block(h, xs))
    kinds = [(r.kind, r.chained_input, r.chained_output) for r in chain.records]
    assert kinds == [
        ("block", False, True),
        ("norm", True, True),
        ("block", True, True),
        ("norm", True, False),
    ]
    assert chain.records[1].fused == ("instance_norm", "relu")
    assert chain.records[3].reason == "the output leaves the function"
    ops = h.relax_ops(after)
    # the norms, the ReLU and the mirrored pad are inside the kernels now
    for gone in ("relax.nn.instance_norm", "relax.nn.relu", "relax.nn.pad"):
        assert gone not in ops
    assert ops.count("relax.call_tir") == 4
    kernels = _kernels(after)
    assert {"instance_norm_chained", "instance_norm_chained1"} <= set(kernels)


def test_norm_chain_matches(h, well_formed):
    xs = (1, 16, 12, 10)
    _check(h, _style_block(h, xs), xs)


def _residual_block(h, xs, *, relu_first, upsampled):
    """conv -> norm -> ReLU = a; conv(a) -> group norm -> (ReLU, add a | add a, ReLU) = b;
    b -> (nearest x2 ->) reflection pad 1 -> conv, and a take of b's channels -> the same."""
    w0, w1 = _weight(h, 32, 16, 21), _weight(h, 32, 32, 22)
    w2, w3 = _weight(h, 16, 32, 23), _weight(h, 16, 12, 24)
    picked = relax.const(np.array([3, 0, 31, 7, 8, 9, 20, 21, 22, 23, 1, 2], dtype="int64"))

    def read(bb, y, w):
        return _conv(bb, _reflect(bb, _up2(bb, y) if upsampled else y, 1), w, padding=0)

    def body(bb, x):
        a = bb.emit(relax.op.nn.relu(_norm(bb, _conv(bb, x, w0), 32, seed=3)))
        b = _norm(bb, _conv(bb, a, w1), 32, groups=4, seed=4)
        if relu_first:
            b = bb.emit(relax.op.add(a, bb.emit(relax.op.nn.relu(b))))
        else:
            b = bb.emit(relax.op.nn.relu(bb.emit(relax.op.add(b, a))))
        side = read(bb, bb.emit(relax.op.take(b, picked, axis=1)), w3)
        return bb.emit(relax.op.add(read(bb, b, w2), side))

    return _build(body, xs)


@pytest.mark.parametrize("relu_first", [False, True])
def test_group_norm_with_residual_and_take_chains(h, well_formed, relu_first):
    xs = (1, 16, 8, 6)
    mod = _residual_block(h, xs, relu_first=relu_first, upsampled=False)
    after, chain = _rewrite(mod)
    norms = [r for r in chain.records if r.kind == "norm"]
    assert [r.fused for r in norms] == [
        ("instance_norm", "relu"),
        ("group_norm", "relu", "add") if relu_first else ("group_norm", "add", "relu"),
    ]
    # a is chained to the second conv and, as the residual, to the group norm, whose output
    # both convs read in place (one through the take): no NCHW tensor, no take, no pad left
    assert norms[0].chained_output and norms[1].chained_residual and norms[1].chained_output
    ops = h.relax_ops(after)
    for gone in ("relax.take", "relax.nn.pad", "relax.nn.group_norm", "relax.nn.relu"):
        assert gone not in ops
    _check(h, mod, xs)


@pytest.mark.parametrize("norm_upsample", [True, False])
def test_a_norm_with_a_residual_and_an_nchw_output_is_left_to_tvm(h, well_formed, norm_upsample):
    """Upsampled readers: with norm_upsample the group norm writes b upsampled and mirrored
    for both; without, b would be written NCHW, gathered from two chained layouts (slower
    than TVM's norm): the group norm stays a Relax op."""
    xs = (1, 16, 8, 6)
    mod = _residual_block(h, xs, relu_first=False, upsampled=True)
    after, chain = _rewrite(mod, norm_upsample=norm_upsample)
    norms = [r for r in chain.records if r.kind == "norm"]
    if norm_upsample:
        assert norms[1].chained_output and norms[1].upsample == 2
        assert "relax.nn.group_norm" not in h.relax_ops(after)
    else:
        assert norms[1].fused == ("group_norm", "add", "relu") and not norms[1].chained_input
        assert norms[1].reason.startswith("a residual add and an NCHW output")
        assert "relax.nn.group_norm" in h.relax_ops(after)
    _check(h, mod, xs, norm_upsample=norm_upsample)


def test_upsampled_mirrored_and_taken_outputs_chain_when_the_readers_agree(h, well_formed):
    """Two convs reading one norm's output through a take and directly, both upsampled and
    mirrored the same way: one chained buffer, written upsampled, no take left."""
    xs = (1, 16, 6, 8)
    w0, w1, w2 = _weight(h, 32, 16, 31), _weight(h, 16, 32, 32), _weight(h, 16, 12, 33)
    picked = relax.const(np.array([5, 4, 3, 2, 1, 0, 31, 30, 29, 28, 27, 26], dtype="int64"))

    def body(bb, x):
        a = bb.emit(relax.op.nn.relu(_norm(bb, _conv(bb, x, w0), 32, seed=5)))
        one = _conv(bb, _reflect(bb, _up2(bb, a), 1), w1, padding=0)
        taken = bb.emit(relax.op.take(a, picked, axis=1))
        two = _conv(bb, _reflect(bb, _up2(bb, taken), 1), w2, padding=0)
        return bb.emit(relax.op.add(one, two))

    mod = _build(body, xs)
    after, chain = _rewrite(mod)
    norm = next(r for r in chain.records if r.kind == "norm")
    assert norm.chained_output, norm.reason
    assert (norm.out_pad_mode, norm.upsample) == ("reflect", 2)
    ops = h.relax_ops(after)
    for gone in ("relax.take", "relax.image.resize2d", "relax.nn.pad"):
        assert gone not in ops
    _check(h, mod, xs)
    # norm_upsample off: the convs upsample the norm's NCHW output themselves, in cache
    _, chain = _rewrite(mod, norm_upsample=False)
    norm = next(r for r in chain.records if r.kind == "norm")
    assert norm.chained_input and not norm.chained_output
    assert norm.reason.startswith("the convs after it upsample it")


def test_norms_option_off_leaves_them(h, well_formed):
    xs = (1, 16, 12, 10)
    after, chain = _rewrite(_style_block(h, xs), norms=False)
    assert all(r.kind == "block" for r in chain.records)
    assert h.relax_ops(after).count("relax.nn.instance_norm") == 2
    _check(h, _style_block(h, xs), xs, norms=False)


def test_norm_with_a_second_user_of_the_conv_is_not_chained(h, well_formed):
    """The conv's output is also returned: the norm reads NCHW (TVM's own norm)."""
    xs = (1, 16, 8, 8)
    w1 = _weight(h, 32, 16, 41)

    def body(bb, x):
        y = _conv(bb, x, w1)
        n = bb.emit(relax.op.nn.relu(_norm(bb, y, 32)))
        return bb.emit(relax.Tuple([y, n]))

    after, chain = _rewrite(_build(body, xs))
    assert [r.kind for r in chain.records] == ["block", "norm"]
    assert chain.records[1].reason == "the conv before it has other users: TVM's norm on NCHW"
    assert "relax.nn.instance_norm" in h.relax_ops(after)


def test_channel_take_between_convs_folds_into_the_consumer(h, well_formed):
    """conv -> ReLU -> take(channels) -> conv: the consumer reads the chained buffer with the
    taken channels as its channel indices; no take is left."""
    xs = (1, 16, 9, 8)
    w1, w2 = _weight(h, 32, 16, 51), _weight(h, 16, 10, 52)
    picked = relax.const(np.array([31, 0, 5, 5, 17, 2, 30, 9, 12, 1], dtype="int64"))

    def body(bb, x):
        y = _conv(bb, x, w1, relu=True)
        return _conv(bb, bb.emit(relax.op.take(y, picked, axis=1)), w2)

    mod = _build(body, xs)
    after, chain = _rewrite(mod)
    assert chain.records[0].chained_output and chain.records[1].chained_input
    assert "relax.take" not in h.relax_ops(after)
    _check(h, mod, xs)


def test_a_conv_never_chains_into_a_conv_that_mirrors_its_input(h, well_formed):
    """Only a norm writes a mirrored border: conv -> reflection pad -> conv stays NCHW."""
    xs = (1, 16, 9, 8)
    w1, w2 = _weight(h, 32, 16, 61), _weight(h, 32, 32, 62)
    mod = _build(lambda bb, x: _conv(bb, _reflect(bb, _conv(bb, x, w1), 1), w2, padding=0), xs)
    _, chain = _rewrite(mod)
    assert not chain.records[0].chained_output
    assert chain.records[0].reason.startswith("a conv reads it mirrored or upsampled")
    _check(h, mod, xs)


def test_a_take_that_is_also_a_residual_is_not_folded(h, well_formed):
    xs = (1, 16, 9, 8)
    w1, w2 = _weight(h, 32, 16, 71), _weight(h, 16, 16, 72)
    picked = relax.const(np.arange(16, dtype="int64") * 2)

    def body(bb, x):
        t = bb.emit(relax.op.take(_conv(bb, x, w1, relu=True), picked, axis=1))
        return _conv(bb, t, w2, residual=t)

    mod = _build(body, xs)
    after, chain = _rewrite(mod)
    assert not chain.records[0].chained_output and "take" in chain.records[0].reason
    assert "relax.take" in h.relax_ops(after)
    _check(h, mod, xs)


def test_residual_option_off_keeps_a_norms_residual_unchained(h, well_formed):
    xs = (1, 16, 8, 6)
    mod = _residual_block(h, xs, relu_first=False, upsampled=False)
    _, chain = _rewrite(mod, residual=False)
    norms = [r for r in chain.records if r.kind == "norm"]
    assert not norms[0].chained_output and not norms[1].chained_residual
    assert norms[0].reason == "used as a residual (residual chaining disabled)"
    _check(h, mod, xs, residual=False)


def test_norm_chain_matches_on_a_batch_of_two(h, well_formed):
    xs = (2, 16, 12, 10)
    _check(h, _style_block(h, xs), xs)
