"""The TE compute on its own: numerics against PyTorch's conv, branch-free pattern code."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tvm_ext._compat import Schedule, host_target, te, tensor, tvm
from tvm_ext.layout import analyze_conv_weight
from tvm_ext.schedules.cpu import schedule_pattern_conv
from tvm_ext.te.conv_spec import ConvGeometry, Epilogue
from tvm_ext.te.pattern_conv import layout_arguments, pattern_conv2d_te


def _run(func, args, out_shape):
    ex = tvm.compile(func, target=host_target())
    dev = tvm.cpu()
    out = tensor(np.zeros(out_shape, "float32"), dev)
    ex.mod["main"](*[tensor(np.ascontiguousarray(a), dev) for a in args], out)
    return out.numpy()


def _build(geo, lay, epilogue, *, scheduled):
    """The layer's PrimFunc, with the default CPU schedule if ``scheduled``."""
    func = te.create_prim_func(pattern_conv2d_te(geo, lay, epilogue))
    if not scheduled:
        return func
    sch = Schedule(func)
    schedule_pattern_conv(sch)
    return sch.mod["main"]


def _assert_matches_torch(h, func, lay, w, geo, epilogue, *, seed):
    """Run ``func`` on random input (+ bias / residual) and compare with PyTorch's conv."""
    k = w.shape[0]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(geo.in_shape).astype("float32")
    bias = rng.standard_normal(k).astype("float32")
    oh, ow = geo.out_hw
    res = rng.standard_normal((1, k, oh, ow)).astype("float32")
    args = [x, *layout_arguments(lay, geo)]
    args += [bias] if epilogue.bias else []
    args += [res] if epilogue.residual else []
    got = _run(func, args, (1, k, oh, ow))
    ref = h.torch_reference(
        x,
        w,
        stride=geo.stride,
        padding=geo.padding,
        dilation=geo.dilation,
        bias=bias if epilogue.bias else None,
        residual=res if epilogue.residual else None,
        relu=epilogue.relu,
    )
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("block", [None, 8])
@pytest.mark.parametrize("scheduled", [False, True])
@pytest.mark.parametrize(
    ("stride", "padding", "epilogue"),
    [
        ((1, 1), (1, 1, 1, 1), Epilogue()),
        ((2, 2), (0, 1, 2, 0), Epilogue(bias=True, relu=True)),
        ((1, 2), (0, 0, 0, 0), Epilogue(bias=True, residual=True, relu=True)),
    ],
)
def test_matches_dense_conv(h, block, scheduled, stride, padding, epilogue):
    k, c, hh, ww = 16, 5, 9, 16
    w = h.pattern_weight(k, c, density=0.2, block=block, seed=7)
    lay = analyze_conv_weight(w, block=block)
    geo = ConvGeometry((1, c, hh, ww), stride, padding)
    func = _build(geo, lay, epilogue, scheduled=scheduled)
    _assert_matches_torch(h, func, lay, w, geo, epilogue, seed=0)


def test_pattern_code_has_no_branches(h):
    # Per-kernel layers reading a chained input in place (lanes 1, no border, no padding): the
    # only stages are the per-pattern reductions and the epilogue; taps are constant offsets,
    # so the function has no conditional at all.
    from tvm_ext.te.conv_spec import BlockedActivation

    w = h.pattern_weight(8, 6, density=0.3, seed=1)
    lay = analyze_conv_weight(w)
    geo = ConvGeometry((1, 6, 8, 8), (1, 1), (0, 0, 0, 0), in_layout=BlockedActivation(6, 1, 0))
    func = te.create_prim_func(pattern_conv2d_te(geo, lay, Epilogue(relu=True)))
    text = func.script()
    assert not re.search(r"if_then_else|T\.Select|\bif\b", text)
    assert len(re.findall(r"ps_conv_\d+", text)) >= len(lay.codes)
    # each pattern's taps appear as literal offsets, e.g. "v_y + 1"
    assert "T.max" in text


def test_flat_reduction_has_no_branches(h):
    # Stride 1: the flat stages read each tap at an offset from an array; their reduction
    # bodies hold no conditional (padding and bucket choice live in ps_pad / ps_epilogue).
    from tvm_ext.schedules.common import pattern_blocks

    w = h.pattern_weight(8, 6, density=0.3, seed=1)
    lay = analyze_conv_weight(w)
    geo = ConvGeometry((1, 6, 8, 8), (1, 1), (1, 1, 1, 1))
    sch = Schedule(te.create_prim_func(pattern_conv2d_te(geo, lay, Epilogue(relu=True))))
    flat = [n for n in pattern_blocks(sch) if n.startswith("ps_conv_flat")]
    assert flat and not any(re.fullmatch(r"ps_conv_\d+", n) for n in pattern_blocks(sch))
    for name in flat:
        body = str(sch.get(sch.get_sblock(name)).body)
        assert not re.search(r"if_then_else|Select|\bif\b", body), body


def test_uneven_pattern_counts_become_columns_without_padding(h):
    """12 kept channels over 8 patterns (2+2+2+2+1+1+1+1, the balanced scheme at 12x on
    64 channels): one padded column per pattern would compute 16 slots; split into 12
    one-slot columns nothing is padded, and the kernel still matches the dense conv."""
    from patsparse.schemes import BlockPatternScheme
    from tvm_ext.te.block_plan import block_columns, column_taps, merged_block_arrays

    torch = pytest.importorskip("torch")
    k, c = 32, 64
    scheme = BlockPatternScheme(density=1 / 12, block_size=16)
    w = scheme.project(torch.randn(k, c, 3, 3, generator=torch.Generator().manual_seed(4)))
    lay = analyze_conv_weight(w.numpy(), block=16)
    counts = sorted(int(v.shape[1]) for v in lay.values)
    assert counts == [1, 1, 1, 1, 2, 2, 2, 2]
    cols, slots = block_columns(lay)
    assert (len(cols), slots) == (12, 1)
    vals, chans = merged_block_arrays(lay)
    assert vals.shape == (2, 12, 1, 4, 16) and chans.shape == (2, 12, 1)
    # every slot holds a kept kernel: 12 per block, no zero padding
    assert int(np.any(vals != 0, axis=(3, 4)).sum()) == 2 * 12
    assert [column_taps(lay)[j] for j in range(12)] == [lay.taps(p) for p, _ in cols]
    geo = ConvGeometry((1, c, 8, 8), (1, 1), (1, 1, 1, 1))
    epilogue = Epilogue(bias=True, relu=True)
    sch = Schedule(te.create_prim_func(pattern_conv2d_te(geo, lay, epilogue)))
    schedule_pattern_conv(sch)
    _assert_matches_torch(h, sch.mod["main"], lay, w.numpy(), geo, epilogue, seed=1)


@pytest.mark.parametrize("scheduled", [False, True])
@pytest.mark.parametrize(
    ("stride", "padding"),
    [
        ((1, 1), (1, 1, 1, 1)),
        ((1, 1), (0, 1, 2, 0)),
        ((2, 2), (1, 1, 1, 1)),
        ((2, 1), (0, 2, 1, 0)),
    ],
)
def test_flat_layers_match_dense_conv(h, scheduled, stride, padding):
    """Uneven kept counts (three or more buckets), a filter with no kernel, odd widths,
    strides (phase planes)."""
    from tvm_ext.te.flat_plan import flat_buckets

    w = h.pattern_weight(24, 12, density=0.12, seed=9)
    w[5] = 0  # a filter whose every kernel was pruned
    lay = analyze_conv_weight(w)
    assert len(flat_buckets(lay).values) >= 3
    geo = ConvGeometry((1, 12, 7, 13), stride, padding)
    epilogue = Epilogue(bias=True, residual=True, relu=True)
    func = _build(geo, lay, epilogue, scheduled=scheduled)
    _assert_matches_torch(h, func, lay, w, geo, epilogue, seed=3)


@pytest.mark.parametrize("block", [None, 8])
@pytest.mark.parametrize("dilation", [2, 3])
@pytest.mark.parametrize("stride", [1, 2])
def test_dilated_layers_match_dense_conv(h, block, dilation, stride):
    """A tap is its offset times the dilation: flat per-kernel stages (phase planes when
    strided) and the block stage, padding = dilation ("same" at stride 1)."""
    w = h.pattern_weight(16, 6, density=0.25, block=block, seed=11)
    lay = analyze_conv_weight(w, block=block)
    pad = (dilation,) * 4
    geo = ConvGeometry((1, 6, 11, 14), (stride, stride), pad, dilation=(dilation, dilation))
    assert geo.out_hw == ((11 - 1) // stride + 1, (14 - 1) // stride + 1)
    epilogue = Epilogue(bias=True, relu=True)
    func = _build(geo, lay, epilogue, scheduled=True)
    _assert_matches_torch(h, func, lay, w, geo, epilogue, seed=5)


@pytest.mark.parametrize("dilation", [(2, 2), (3, 1)])
def test_dilated_taps_read_a_chained_input_in_place(h, dilation):
    """Per-pattern stages (a per-kernel layer reading a chained input, lanes 1): each tap
    reads its offset times the dilation, the border as wide as the padding."""
    from tvm_ext.te.conv_spec import BlockedActivation

    w = h.pattern_weight(8, 6, density=0.3, seed=2)
    lay = analyze_conv_weight(w)
    border = max(dilation)
    pad = (dilation[0], dilation[1], dilation[0], dilation[1])
    geo = ConvGeometry(
        (1, 6, 9, 10),
        (1, 1),
        pad,
        in_layout=BlockedActivation(6, 1, border),
        dilation=dilation,
    )
    func = _build(geo, lay, Epilogue(), scheduled=True)
    x = np.random.default_rng(0).standard_normal((1, 6, 9, 10)).astype("float32")
    chained = np.pad(x, ((0, 0), (0, 0), (border, border), (border, border)))[..., None]
    got = _run(func, [chained, *layout_arguments(lay, geo)], (1, 8, *geo.out_hw))
    ref = h.torch_reference(x, w, stride=(1, 1), padding=pad, dilation=dilation)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
