"""The TE compute on its own: numerics, branch-free pattern code, default schedule."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tvm_ext._compat import Analyzer, Schedule, host_target, te, tensor, tirx, tvm
from tvm_ext.layout import analyze_conv_weight
from tvm_ext.schedules.cpu import schedule_pattern_conv
from tvm_ext.te.pattern_conv import (
    ConvGeometry,
    Epilogue,
    layout_arguments,
    pattern_conv2d_te,
)


def _extent_of(sch, loop):
    return int(sch.get(loop).extent)


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
    from tvm_ext.te.pattern_conv import BlockedActivation

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
    from tvm_ext.schedules.cpu import pattern_blocks

    w = h.pattern_weight(8, 6, density=0.3, seed=1)
    lay = analyze_conv_weight(w)
    geo = ConvGeometry((1, 6, 8, 8), (1, 1), (1, 1, 1, 1))
    sch = Schedule(te.create_prim_func(pattern_conv2d_te(geo, lay, Epilogue(relu=True))))
    flat = [n for n in pattern_blocks(sch) if n.startswith("ps_conv_flat")]
    assert flat and not any(re.fullmatch(r"ps_conv_\d+", n) for n in pattern_blocks(sch))
    for name in flat:
        body = str(sch.get(sch.get_sblock(name)).body)
        assert not re.search(r"if_then_else|Select|\bif\b", body), body


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


def test_uneven_pattern_counts_become_columns_without_padding(h):
    """12 kept channels over 8 patterns (2+2+2+2+1+1+1+1, the balanced scheme at 12x on
    64 channels): one padded column per pattern would compute 16 slots; split into 12
    one-slot columns nothing is padded, and the kernel still matches the dense conv."""
    from patsparse.schemes import BlockPatternScheme
    from tvm_ext.te.pattern_conv import block_columns, column_taps, merged_block_arrays

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


def test_many_columns_fall_back_to_one_padded_column_per_pattern(h, monkeypatch):
    from tvm_ext.te import pattern_conv

    w = h.pattern_weight(16, 24, density=0.3, block=16, seed=5)
    lay = analyze_conv_weight(w, block=16)
    counts = [int(v.shape[1]) for v in lay.values]
    monkeypatch.setattr(pattern_conv, "MAX_COLUMNS", 0)
    cols, slots = pattern_conv.block_columns(lay)
    assert cols == tuple((p, 0) for p in range(lay.patterns)) and slots == max(counts)
    assert pattern_conv.merged_block_arrays(lay)[0].shape[1:3] == (lay.patterns, max(counts))


def test_bucket_starts_minimise_padding():
    from tvm_ext.te.pattern_conv import _bucket_starts

    counts = [8, 8, 4, 4, 1, 1]
    assert _bucket_starts(counts, 1) == [0, 6]
    assert _bucket_starts(counts, 2) == [0, 2, 6]  # 16 + 16 beats 24 + 2
    assert _bucket_starts(counts, 3) == [0, 2, 4, 6]
    assert _bucket_starts(counts, 5) == [0, 2, 4, 6]  # equal counts are never split
    assert _bucket_starts([3, 3, 3], 3) == [0, 3]


def test_flat_buckets_hold_every_kept_kernel_once(h):
    from tvm_ext.te.pattern_conv import FLAT_BUCKETS, FlatInput, flat_buckets

    # unbalanced connectivity: filters keep 1-8 of 24 kernels
    w = h.pattern_weight(32, 24, density=0.08, seed=2)
    kept = (np.abs(w).sum((2, 3)) > 0).sum(1)
    assert kept.min() < kept.max()
    lay = analyze_conv_weight(w)
    assert lay.kind == "kernel"
    geo = ConvGeometry((1, 24, 9, 13), (1, 1), (1, 1, 1, 1))
    flat = FlatInput.of(geo)
    assert flat.pitch == 15 and flat.length % 64 == 0 and flat.length >= 9 * 15
    assert flat.rows * flat.pitch >= flat.length + 2 * flat.pitch + 2
    fb = flat_buckets(lay, flat)
    assert len(fb.values) <= FLAT_BUCKETS and fb.starts[0] == 0 and fb.starts[-1] == 32
    assert list(fb.slots) == sorted(fb.slots, reverse=True)
    assert sorted(fb.inverse.tolist()) == list(range(32))
    # every kept weight once, at its (filter, channel, tap), zeros only in padding slots
    rebuilt = np.zeros((32, 24, 9), np.float32)
    for f in range(32):
        pos = int(fb.inverse[f])
        b = max(i for i, s in enumerate(fb.starts[:-1]) if s <= pos)
        vals, offs = fb.values[b][pos - fb.starts[b]], fb.offsets[b][pos - fb.starts[b]]
        for v, o in zip(vals.ravel(), offs.ravel(), strict=True):
            if v != 0:
                ch, rest = divmod(int(o), flat.rows * flat.pitch)
                dy, dx = divmod(rest, flat.pitch)
                rebuilt[f, ch, dy * 3 + dx] += v
    np.testing.assert_array_equal(rebuilt.reshape(w.shape), w)
    # padding: less than one pattern list per filter padded to the longest (per-pattern stages)
    assert fb.macs_per_pixel() < lay.macs_per_pixel()
    assert fb.macs_per_pixel() < 4 * kept.max() * 32


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
    from tvm_ext.te.pattern_conv import flat_buckets

    w = h.pattern_weight(24, 12, density=0.12, seed=9)
    w[5] = 0  # a filter whose every kernel was pruned
    lay = analyze_conv_weight(w)
    assert len(flat_buckets(lay).values) >= 3
    geo = ConvGeometry((1, 12, 7, 13), stride, padding)
    epilogue = Epilogue(bias=True, residual=True, relu=True)
    func = _build(geo, lay, epilogue, scheduled=scheduled)
    _assert_matches_torch(h, func, lay, w, geo, epilogue, seed=3)


def _offset_table(tap_offset, taps, which):
    """``tap_offset`` evaluated (compiled and run) at every (column, tap)."""
    table = te.compute((len(taps), 4), lambda p, t: tap_offset(taps, p, t, which))
    out = tensor(np.zeros((len(taps), 4), "int32"), tvm.cpu())
    tvm.compile(te.create_prim_func([table]), target=host_target())["main"](out)
    return out.numpy()


@pytest.mark.parametrize("bits", [4, 40])  # packed per column / one select per (column, tap)
def test_tap_offset_gives_every_columns_taps_and_folds(monkeypatch, bits):
    """The block kernel's tap offset is an expression of the column and tap loop variables
    over constants: evaluated it gives each tap's row / column; with both variables fixed (as
    unrolling fixes them) no select is left. Packed, it holds one select per column, not
    one per (column, tap)."""
    from tvm_ext.te import pattern_conv

    monkeypatch.setattr(pattern_conv, "TAP_BITS", bits)
    taps = [((0, 1), (1, 2), (2, 0), (1, 1)), ((2, 2), (0, 0), (1, 0), (0, 2)), ((1, 1), (2, 1))]
    for which in (0, 1):
        p, t = tirx.Var("p", "int32"), tirx.Var("t", "int32")
        expr = pattern_conv._tap_offset(taps, p, t, which)
        selects = str(expr).count("if_then_else")
        assert selects == (len(taps) - 1 if bits == 4 else sum(map(len, taps)) - 1)
        for pp, tt in ((0, 0), (1, 3), (2, 1)):
            ana = Analyzer()
            ana.bind(p, tirx.const(pp, "int32"))
            ana.bind(t, tirx.const(tt, "int32"))
            folded = str(ana.simplify(expr))
            assert "if_then_else" not in folded and not re.search(r"\b[pt]\b", folded), folded
        got = _offset_table(pattern_conv._tap_offset, taps, which)
        for pp, col in enumerate(taps):
            assert [int(v) for v in got[pp, : len(col)]] == [tap[which] for tap in col]


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
