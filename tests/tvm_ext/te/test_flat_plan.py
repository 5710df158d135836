"""The flat stages' plan: bucket boundaries, every kept kernel once at its input offset."""

from __future__ import annotations

import numpy as np

from tvm_ext.layout import analyze_conv_weight
from tvm_ext.te.conv_spec import ConvGeometry


def test_bucket_starts_minimise_padding():
    from tvm_ext.te.flat_plan import _bucket_starts

    counts = [8, 8, 4, 4, 1, 1]
    assert _bucket_starts(counts, 1) == [0, 6]
    assert _bucket_starts(counts, 2) == [0, 2, 6]  # 16 + 16 beats 24 + 2
    assert _bucket_starts(counts, 3) == [0, 2, 4, 6]
    assert _bucket_starts(counts, 5) == [0, 2, 4, 6]  # equal counts are never split
    assert _bucket_starts([3, 3, 3], 3) == [0, 3]


def test_flat_buckets_hold_every_kept_kernel_once(h):
    from tvm_ext.te.flat_plan import FLAT_BUCKETS, FlatInput, flat_buckets

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


def test_dilated_tap_offsets_within_the_padded_rows():
    """A dilated tap ``(r, s)`` reads ``(r * dh) * pitch + s * dw`` on at stride 1; strided,
    its dilated offset is split over the phase planes as any other offset."""
    from tvm_ext.te.flat_plan import FlatInput

    geo = ConvGeometry((1, 4, 9, 13), (1, 1), (2, 3, 2, 3), dilation=(2, 3))
    assert geo.span == (5, 7) and geo.out_hw == (9, 13)
    flat = FlatInput.of(geo)
    assert flat.pitch == 19 and flat.dilation == (2, 3)
    plane = flat.rows * flat.pitch
    for r in range(3):
        for s in range(3):
            assert flat.offset(1, r, s) == plane + (r * 2) * 19 + s * 3
    # the last flat position's farthest tap stays inside the channel's rows
    assert flat.length - 1 + flat.offset(0, 2, 2) < plane
    strided = FlatInput.of(ConvGeometry((1, 4, 9, 13), (2, 2), (2, 2, 2, 2), dilation=(3, 3)))
    rows, pitch = strided.rows, strided.pitch
    # tap (1, 2) dilated is (3, 6): plane (3 % 2, 6 % 2) = (1, 0), 1 row and 3 columns on
    assert strided.offset(0, 1, 2) == (2 * rows + 1) * pitch + 3
    assert strided.length - 1 + strided.offset(0, 2, 2) < rows * pitch  # (6, 6): plane (0, 0)
