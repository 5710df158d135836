"""The numpy reference conv against PyTorch: padding modes and nearest upsampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tvm_ext.reference import conv2d_nchw, pad_nchw, upsample_nearest


@pytest.mark.parametrize(
    ("mode", "torch_mode"), [("reflect", "reflect"), ("replicate", "replicate")]
)
@pytest.mark.parametrize("upsample", [1, 2])
def test_padded_upsampled_conv_matches_pytorch(mode, torch_mode, upsample):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, 5, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    got = conv2d_nchw(x, w, padding=(2, 1, 0, 1), pad_mode=mode, upsample=upsample)
    xt = torch.nn.functional.interpolate(torch.from_numpy(x), scale_factor=upsample)
    xt = torch.nn.functional.pad(xt, (1, 1, 2, 0), mode=torch_mode)
    ref = torch.nn.functional.conv2d(xt, torch.from_numpy(w)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_bad_mode_and_factor_are_clear_errors():
    x = np.zeros((1, 1, 2, 2), np.float32)
    with pytest.raises(ValueError, match="pad mode must be one of"):
        pad_nchw(x, (1, 1, 1, 1), "edge")
    with pytest.raises(ValueError, match="upsample factor"):
        upsample_nearest(x, 0)
