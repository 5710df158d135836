from __future__ import annotations

import numpy as np
import pytest
import torch

from patsparse.schemes import ChannelScheme, ColumnScheme, FilterScheme
from tvm_ext._compat import relax
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


def _pad_upsample_conv(weight, pad_mode):
    """``main(x)``: nearest x2 upsampling, a 1-pixel ``pad_mode`` pad, the 3x3 conv, ReLU."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 6, 5, 4), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            up = bb.emit(relax.op.image.resize2d(x, (10, 8), method="nearest_neighbor"))
            pad = bb.emit(relax.op.nn.pad(up, [0, 0, 0, 0, 1, 1, 1, 1], pad_mode=pad_mode))
            y = bb.emit(relax.op.nn.conv2d(pad, relax.const(weight)))
            out = bb.emit_output(bb.emit(relax.op.nn.relu(y)))
        bb.emit_func_output(out)
    return bb.get()


@pytest.mark.parametrize("pad_mode", ["reflect", "replicate", "constant"])
def test_the_channel_gather_goes_under_the_pad_and_upsampling(h, well_formed, pad_mode):
    # whole input channels 1 and 4 pruned: the gather of the other four moves to the
    # low-resolution input, the upsampling and pad are redone on four channels
    w = torch.randn(8, 6, 3, 3, generator=torch.Generator().manual_seed(2)).numpy()
    w[:, [1, 4]] = 0
    before = _pad_upsample_conv(w, pad_mode)
    compact = CompactStructuredConv2D()
    after = compact(before)
    assert compact.records[0].kept_channels == 4
    assert h.relax_ops(after) == [
        "relax.take",
        "relax.image.resize2d",
        "relax.nn.pad",
        "relax.nn.conv2d",
        "relax.nn.relu",
    ]
    take = next(
        v for v in _bindings(after) if isinstance(v, relax.Call) and v.op.name == "relax.take"
    )
    assert take.args[0].same_as(after["main"].params[0])  # reads the input itself
    x = np.random.default_rng(3).standard_normal((1, 6, 5, 4)).astype("float32")
    np.testing.assert_allclose(
        h.run_module(after, x), h.run_module(before, x), rtol=1e-5, atol=1e-5
    )


def _bindings(mod):
    return [b.value for block in mod["main"].body.blocks for b in block.bindings]


def test_a_conv_keeping_every_filter_stays_bound_to_its_variable(h, well_formed):
    # no alias binding (y = conv_var) between the conv and its bias add: the fusing passes
    # after this one follow the conv's single user into bias add and ReLU
    w = ChannelScheme(density=0.5).project(
        torch.randn(8, 6, 3, 3, generator=torch.Generator().manual_seed(4))
    )
    before = h.conv_module((1, 6, 7, 5), w.numpy(), bias=np.ones(8, "float32"), relu=True)
    after = CompactStructuredConv2D()(before)
    values = {b.var: b.value for block in after["main"].body.blocks for b in block.bindings}
    add = next(v for v in values.values() if isinstance(v, relax.Call) and v.op.name == "relax.add")
    conv = values[add.args[0]]
    assert isinstance(conv, relax.Call) and conv.op.name == "relax.nn.conv2d"  # no alias
