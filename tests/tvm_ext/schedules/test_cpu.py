"""The default CPU schedule: block rows inside the epilogue from 14x14 outputs, register
tiles of one or two vectors; every variant still matches PyTorch's conv."""

from __future__ import annotations

import numpy as np
import pytest

from tvm_ext._compat import Schedule, host_target, te, tensor, tirx, tvm
from tvm_ext.layout import analyze_conv_weight
from tvm_ext.schedules.cpu import schedule_pattern_conv
from tvm_ext.te.conv_spec import ConvGeometry, Epilogue
from tvm_ext.te.pattern_conv import layout_arguments, pattern_conv2d_te


def _extent_of(sch, loop):
    return int(sch.get(loop).extent)


def _run(func, args, out_shape):
    ex = tvm.compile(func, target=host_target())
    dev = tvm.cpu()
    out = tensor(np.zeros(out_shape, "float32"), dev)
    ex.mod["main"](*[tensor(np.ascontiguousarray(a), dev) for a in args], out)
    return out.numpy()


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
        bias=bias if epilogue.bias else None,
        residual=res if epilogue.residual else None,
        relu=epilogue.relu,
    )
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [56, 14])
@pytest.mark.parametrize("epilogue", [Epilogue(), Epilogue(bias=True, residual=True, relu=True)])
def test_large_block_layers_compute_rows_inside_the_epilogue(h, epilogue, size):
    """From 14x14 outputs the block conv runs one output row at a time inside the epilogue."""
    from tvm_ext.schedules.cpu import FUSE_ROWS_FROM_PIXELS

    k, c, hh, ww = 32, 12, size, size + 2
    assert hh * (ww - 2) >= FUSE_ROWS_FROM_PIXELS
    w = h.pattern_weight(k, c, density=0.2, block=16, seed=3)
    lay = analyze_conv_weight(w, block=16)
    assert lay.kind == "block"
    geo = ConvGeometry((1, c, hh, ww), (1, 1), (1, 0, 1, 0))
    sch = Schedule(te.create_prim_func(pattern_conv2d_te(geo, lay, epilogue)))
    schedule_pattern_conv(sch)
    conv_loops = sch.get_loops(sch.get_sblock("ps_conv_all_update"))
    ep_loops = sch.get_loops(sch.get_sblock("ps_epilogue"))
    # the conv (decomposed into init + update) sits under the epilogue's parallel row loop
    assert sch.get(conv_loops[0]).same_as(sch.get(ep_loops[0]))
    assert sch.get(ep_loops[0]).kind == tirx.ForKind.PARALLEL
    assert _extent_of(sch, ep_loops[0]) == geo.out_hw[0]
    _assert_matches_torch(h, sch.mod["main"], lay, w, geo, epilogue, seed=1)


def test_small_block_layers_keep_the_conv_at_the_root(h):
    """Below 14x14 outputs (7x7: the chained border rows would recompute 2 of 7 conv rows)
    the block conv is computed whole, then the epilogue reads it."""
    from tvm_ext.schedules.cpu import FUSE_ROWS_FROM_PIXELS

    w = h.pattern_weight(32, 12, density=0.2, block=16, seed=3)
    lay = analyze_conv_weight(w, block=16)
    geo = ConvGeometry((1, 12, 7, 7), (1, 1), (1, 1, 1, 1))
    assert geo.out_hw[0] * geo.out_hw[1] < FUSE_ROWS_FROM_PIXELS
    epilogue = Epilogue(bias=True, relu=True)
    sch = Schedule(te.create_prim_func(pattern_conv2d_te(geo, lay, epilogue)))
    schedule_pattern_conv(sch)
    conv_loops = sch.get_loops(sch.get_sblock("ps_conv_all_update"))
    ep_loops = sch.get_loops(sch.get_sblock("ps_epilogue"))
    assert not sch.get(conv_loops[0]).same_as(sch.get(ep_loops[0]))
    assert sch.get(conv_loops[0]).kind == tirx.ForKind.PARALLEL
    _assert_matches_torch(h, sch.mod["main"], lay, w, geo, epilogue, seed=1)


def _register_tile_loops(sch):
    """(extent, kind) of the loops around the conv's accumulating FMA, innermost last."""
    update = sch.get_sblock("ps_conv_all_update")
    return [(_extent_of(sch, lp), sch.get(lp).kind) for lp in sch.get_loops(update)]


@pytest.mark.parametrize(("size", "shared"), [(28, True), (14, False), (7, False)])
def test_blocks_of_two_vectors_share_each_broadcast(h, size, shared):
    """Blocks of 32 filters (two AVX-512 vectors): where the width has a divisor of 3-6 the
    register tile holds both vectors of up to 6 columns (12 accumulators: each input
    broadcast feeds two FMAs); where it has none (14, 7: 7 columns x 2 vectors would
    spill), the vectors are tiled one at a time, 16 lanes x 7 columns."""
    from tvm_ext.schedules.cpu import BLOCK_ACCUMULATORS

    k, c = 64, 24
    w = h.pattern_weight(k, c, density=0.2, block=32, seed=4)
    lay = analyze_conv_weight(w, block=32)
    assert lay.kind == "block" and lay.block == 32
    geo = ConvGeometry((1, c, size, size), (1, 1), (1, 1, 1, 1))
    epilogue = Epilogue(bias=True, relu=True)
    sch = Schedule(te.create_prim_func(pattern_conv2d_te(geo, lay, epilogue)))
    schedule_pattern_conv(sch)
    *_, (cols, cols_kind), (lanes, lane_kind) = _register_tile_loops(sch)
    assert (cols_kind, lane_kind) == (tirx.ForKind.UNROLLED, tirx.ForKind.VECTORIZED)
    if shared:
        assert (cols, lanes) == (4, 32)
    else:
        assert (cols, lanes) == (7, 16)
    assert cols * lanes // 16 <= BLOCK_ACCUMULATORS
    _assert_matches_torch(h, sch.mod["main"], lay, w, geo, epilogue, seed=2)


def test_blocks_of_one_vector_keep_up_to_twelve_columns(h):
    w = h.pattern_weight(32, 12, density=0.2, block=16, seed=3)
    lay = analyze_conv_weight(w, block=16)
    geo = ConvGeometry((1, 12, 24, 24), (1, 1), (1, 1, 1, 1))
    sch = Schedule(te.create_prim_func(pattern_conv2d_te(geo, lay, Epilogue(relu=True))))
    schedule_pattern_conv(sch)
    *_, (cols, _), (lanes, _) = _register_tile_loops(sch)
    assert (cols, lanes) == (12, 16)
