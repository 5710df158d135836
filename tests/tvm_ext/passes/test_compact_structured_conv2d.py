from __future__ import annotations

import numpy as np
import pytest
import torch

from patsparse.schemes import ChannelScheme, ColumnScheme, FilterScheme
from tvm_ext.passes import CompactStructuredConv2D


@pytest.mark.parametrize(
    ("scheme", "ksize", "expect_filters", "expect_channels"),
    [
        (FilterScheme(density=0.5), 3, 8, 6),
        (ChannelScheme(density=0.5), 3, 16, 3),
        (ChannelScheme(density=0.34), 1, 16, 2),
    ],
)
def test_structured_convs_shrink_and_match(
    h, well_formed, scheme, ksize, expect_filters, expect_channels
):
    w = torch.randn(16, 6, ksize, ksize, generator=torch.Generator().manual_seed(0))
    w = scheme.project(w).numpy()
    pad = (1, 1, 1, 1) if ksize == 3 else (0, 0, 0, 0)
    bias = np.linspace(-1, 1, 16).astype("float32")
    before = h.conv_module((1, 6, 7, 5), w, padding=pad, bias=bias, relu=True)
    compact = CompactStructuredConv2D()
    after = compact(before)
    rec = compact.records[0]
    assert rec.rewritten, rec.reason
    assert (rec.kept_filters, rec.kept_channels) == (expect_filters, expect_channels)
    x = np.random.default_rng(0).standard_normal((1, 6, 7, 5)).astype("float32")
    np.testing.assert_allclose(
        h.run_module(after, x), h.run_module(before, x), rtol=1e-5, atol=1e-5
    )
    assert "relax.take" in h.relax_ops(after)


def test_dense_and_column_without_whole_channels_are_untouched(h, well_formed):
    from tvm_ext._compat import tvm

    rng = np.random.default_rng(1)
    dense = rng.standard_normal((8, 4, 3, 3)).astype("float32")
    col = ColumnScheme(density=0.6).project(torch.from_numpy(dense)).numpy()
    for w in (dense, col):
        if (np.abs(col).reshape(8, 4, 9).sum((0, 2)) == 0).any() and w is col:
            continue  # a whole channel happened to go: that case shrinks, tested above
        mod = h.conv_module((1, 4, 6, 6), w)
        compact = CompactStructuredConv2D()
        tvm.ir.assert_structural_equal(compact(mod), mod)
        assert not compact.records[0].rewritten
        assert "no whole-zero" in compact.records[0].reason
