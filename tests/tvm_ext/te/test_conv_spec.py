"""ConvGeometry: the absorbed pad mode and nearest upsampling, and their typed errors."""

from __future__ import annotations

import pytest

from tvm_ext.te.conv_spec import ConvGeometry


def test_upsampled_geometry_reads_the_low_resolution_input():
    geo = ConvGeometry((1, 8, 12, 16), (1, 1), (1, 1, 1, 1), pad_mode="reflect", upsample=2)
    assert geo.source_shape == (1, 8, 6, 8) and geo.out_hw == (12, 16) and geo.absorbs
    plain = ConvGeometry((1, 8, 12, 16), (1, 1), (1, 1, 1, 1))
    assert plain.source_shape == plain.in_shape and not plain.absorbs


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pad_mode": "circular"}, "pad_mode must be one of"),
        ({"upsample": 0}, "upsample must be an int >= 1"),
        ({"upsample": 3}, "multiples of the factor"),
        ({"pad_mode": "reflect", "padding": (4, 0, 0, 0)}, "smaller than the input"),
    ],
)
def test_bad_geometry_is_a_clear_error(kwargs, message):
    args = {"in_shape": (1, 2, 4, 6), "stride": (1, 1), "padding": (1, 1, 1, 1), **kwargs}
    with pytest.raises(ValueError, match=message):
        ConvGeometry(**args)
