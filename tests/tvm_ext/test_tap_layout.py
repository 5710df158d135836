"""Zero-tap skipping: block / column-pruned large kernels on single-tap columns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from patsparse.schemes import BlockScheme, ConnectivityScheme
from tvm_ext.layout import Rejection, SparseConvLayout, analyze_blocked_weight
from tvm_ext.passes import BlockedConv2D
from tvm_ext.tap_layout import TAP_SKIP_RATIO, analyze_tap_sparse_weight, tap_layout_macs


def _weight(shape, scheme=None, seed=0):
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    return (scheme.project(w) if scheme is not None else w).numpy()


def test_layout_round_trips_and_keeps_only_nonzero_taps():
    w = _weight((32, 8, 5, 5), BlockScheme(density=0.25, block_rows=16))
    lay = analyze_tap_sparse_weight(w, block=16)
    assert isinstance(lay, SparseConvLayout) and lay.kind == "block"
    np.testing.assert_array_equal(lay.to_dense(), w)
    assert all(len(t) == 1 for t in lay.tap_sets)
    # block pruning keeps a quarter of the (channel, tap) columns of each 16-filter block
    whole = analyze_blocked_weight(w, block=16)
    assert isinstance(whole, SparseConvLayout)
    assert tap_layout_macs(lay) <= TAP_SKIP_RATIO * tap_layout_macs(whole)
    assert isinstance(analyze_tap_sparse_weight(np.zeros((4, 4, 3, 3))), Rejection)


def test_whole_kernels_keep_the_whole_kernel_layout(h, well_formed):
    """Connectivity pruning zeroes whole kernels: no tap is zero across a block, nothing to
    skip, the layer keeps one column holding every tap."""
    w = _weight((32, 16, 5, 5), ConnectivityScheme(density=0.5))
    before = h.conv_module((1, 16, 8, 8), w, padding=(2, 2, 2, 2))
    p = BlockedConv2D()
    after = p(before)
    assert p.records[0].rewritten
    assert "ps_conv_all" in after[p.records[0].function].script()
    lay = analyze_tap_sparse_weight(w, block=16)
    whole = analyze_blocked_weight(w, block=16)
    assert tap_layout_macs(lay) > TAP_SKIP_RATIO * tap_layout_macs(whole)


@pytest.mark.parametrize(("size", "stride"), [(5, 1), (7, 2)])
def test_block_pruned_large_kernels_skip_zero_taps_and_match_pytorch(h, well_formed, size, stride):
    w = _weight((32, 8, size, size), BlockScheme(density=0.125, block_rows=16), seed=size)
    pad = size // 2
    xs = (1, 8, 11, 12)
    bias = np.linspace(-1, 1, 32).astype("float32")
    before = h.conv_module(xs, w, stride=(stride, stride), padding=(pad,) * 4, bias=bias, relu=True)
    p = BlockedConv2D(verify=True)
    after = p(before)
    (rec,) = p.records
    assert rec.rewritten and rec.max_abs_error is not None and rec.max_abs_error < 1e-3
    # the kernel's weight array holds single taps: fewer than the whole kernels' values
    whole = analyze_blocked_weight(w, block=16)
    assert isinstance(whole, SparseConvLayout)
    assert rec.storage_bytes["ours"] < 0.5 * whole.values[0].nbytes
    x = np.random.default_rng(0).standard_normal(xs).astype("float32")
    ref = h.torch_reference(x, w, stride=(stride, stride), padding=(pad,) * 4, bias=bias, relu=True)
    np.testing.assert_allclose(h.run_module(after, x), ref, rtol=1e-4, atol=1e-4)
