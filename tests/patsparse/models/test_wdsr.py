"""The WDSR-like SR network: shapes, and its skip branch is exactly bicubic upsampling."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from patsparse.models.wdsr import WDSR, bicubic_subpixel_weight


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_untrained_without_the_tail_is_bicubic(scale):
    torch.manual_seed(0)
    model = WDSR(scale, blocks=1).eval()
    torch.nn.init.zeros_(model.tail.weight)
    x = torch.rand(1, 1, 13, 17)
    with torch.no_grad():
        out = model(x)
    ref = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    assert out.shape == (1, 1, 13 * scale, 17 * scale)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_the_weight_is_one_bicubic_filter_per_subpixel_phase():
    w = bicubic_subpixel_weight(2, channels=2)
    assert w.shape == (8, 2, 5, 5)
    # every phase's filter sums to 1 (constants stay constant); no cross-channel taps
    torch.testing.assert_close(w.sum(dim=(1, 2, 3)), torch.ones(8))
    assert float(w[:4, 1].abs().sum()) == 0.0 and float(w[4:, 0].abs().sum()) == 0.0
    with pytest.raises(ValueError, match="scales 1-4"):
        bicubic_subpixel_weight(5)


def test_channels_and_bad_arguments():
    model = WDSR(2, channels=16, expansion=2, low_rank=16, blocks=2, in_channels=3)
    assert model(torch.rand(2, 3, 8, 8)).shape == (2, 3, 16, 16)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs[1:4]] == [(3, 3), (1, 1), (3, 3)]  # wide, low-rank, 3x3
    with pytest.raises(ValueError, match="scale"):
        WDSR(5)
    with pytest.raises(ValueError, match="blocks"):
        WDSR(2, blocks=-1)
