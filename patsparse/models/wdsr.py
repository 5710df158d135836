"""A WDSR-like super-resolution network (Yu et al., "Wide Activation for Efficient and
Accurate Image Super-Resolution"), written small enough to run in real time.

Each residual block widens the features before its activation (a 3x3 conv to
``expansion`` times the channels, ReLU), narrows them with a *linear low-rank* 1x1 conv (no
activation) and returns to the trunk with a 3x3 conv, so the wide activation costs one 3x3
conv, not two. The upsampling is sub-pixel: the tail and the skip branch (WDSR's 5x5 conv
on the input) predict ``scale**2`` sub-pixel planes per channel that one ``PixelShuffle``
rearranges. The skip starts as exact bicubic upsampling (:func:`bicubic_subpixel_weight`)
and the tail near zero, so the untrained network already is bicubic upscaling and training
only adds detail. Every channel count is a multiple of 16 by default (what the blocked and
pattern kernels like).
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: PyTorch's (and OpenCV's) cubic convolution coefficient (``F.interpolate(mode="bicubic")``)
CUBIC_A = -0.75

#: the skip branch's kernel: 5 taps cover every sub-pixel phase of x2, x3 and x4 bicubic
SKIP_KERNEL = 5


def _cubic(x: float) -> float:
    x = abs(x)
    if x <= 1.0:
        return ((CUBIC_A + 2.0) * x - (CUBIC_A + 3.0)) * x * x + 1.0
    if x < 2.0:
        return ((CUBIC_A * x - 5.0 * CUBIC_A) * x + 8.0 * CUBIC_A) * x - 4.0 * CUBIC_A
    return 0.0


def _phase_taps(scale: int) -> torch.Tensor:
    """``(scale, SKIP_KERNEL)``: the 1-D bicubic weights of output phase ``p`` (output pixel
    ``scale*j + p``) on input pixels ``j-2 .. j+2`` (half-pixel centres, as
    ``align_corners=False``)."""
    taps = torch.zeros(scale, SKIP_KERNEL, dtype=torch.float64)
    for p in range(scale):
        d = (p + 0.5) / scale - 0.5  # source coordinate of output pixel scale*j + p, minus j
        base = math.floor(d)
        t = d - base
        for k, w in zip(range(base - 1, base + 3), (t + 1, t, 1 - t, 2 - t), strict=True):
            taps[p, k + SKIP_KERNEL // 2] = _cubic(w)
    return taps


def bicubic_subpixel_weight(scale: int, channels: int = 1) -> torch.Tensor:
    """A ``(channels*scale², channels, 5, 5)`` conv weight that, on the input padded by 2
    replicated pixels and followed by ``PixelShuffle(scale)``, is ``F.interpolate(x,
    scale_factor=scale, mode="bicubic", align_corners=False)``."""
    if not 1 <= scale <= 4:
        raise ValueError(f"the bicubic skip covers scales 1-4, got {scale}")
    taps = _phase_taps(scale)
    w = torch.zeros(channels * scale * scale, channels, SKIP_KERNEL, SKIP_KERNEL)
    for c in range(channels):
        for py in range(scale):
            for px in range(scale):
                w[c * scale * scale + py * scale + px, c] = torch.outer(taps[py], taps[px]).float()
    return w


class WideBlock(nn.Module):
    """3x3 conv to the wide width + ReLU, linear 1x1 conv to the low rank, 3x3 conv back;
    added to its input."""

    def __init__(self, channels: int, wide: int, low_rank: int) -> None:
        super().__init__()
        self.expand = nn.Conv2d(channels, wide, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.reduce = nn.Conv2d(wide, low_rank, 1)
        self.fuse = nn.Conv2d(low_rank, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fuse(self.reduce(self.act(self.expand(x))))


class WDSR(nn.Module):
    """Maps ``(N, in_channels, h, w)`` to ``(N, in_channels, h*scale, w*scale)``.

    ``channels`` is the trunk width, ``expansion`` the wide activation's factor,
    ``low_rank`` the width of the linear 1x1 conv, ``blocks`` the residual block count.
    """

    def __init__(
        self,
        scale: int = 2,
        *,
        channels: int = 32,
        expansion: int = 3,
        low_rank: int = 16,
        blocks: int = 2,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        if not 1 <= scale <= 4 or min(channels, expansion, low_rank, in_channels) < 1:
            raise ValueError(
                "WDSR needs 1 <= scale <= 4 and channels, expansion, low_rank, in_channels >= 1; "
                f"got scale={scale}, channels={channels}, expansion={expansion}, "
                f"low_rank={low_rank}, in_channels={in_channels}"
            )
        if blocks < 0:
            raise ValueError(f"WDSR needs blocks >= 0, got {blocks}")
        self.scale = scale
        sub = in_channels * scale * scale
        self.head = nn.Conv2d(in_channels, channels, 3, padding=1)
        wide = [WideBlock(channels, channels * expansion, low_rank) for _ in range(blocks)]
        self.body = nn.Sequential(*wide)
        self.tail = nn.Conv2d(channels, sub, 3, padding=1)
        # replicated edges, as F.interpolate's clamped taps: bicubic up to the border
        skip = nn.Conv2d(in_channels, sub, SKIP_KERNEL)
        self.skip = nn.Sequential(nn.ReplicationPad2d(SKIP_KERNEL // 2), skip)
        self.shuffle = nn.PixelShuffle(scale)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)  # type: ignore[arg-type]
        for block in wide:
            # residual branches start small: the trunk passes the head's features through
            nn.init.normal_(block.fuse.weight, 0.0, 1e-3)
        nn.init.normal_(self.tail.weight, 0.0, 1e-3)
        with torch.no_grad():
            skip.weight.copy_(bicubic_subpixel_weight(scale, in_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The upscaled image (the tail's detail added to the bicubic-initialised skip)."""
        return self.shuffle(self.tail(self.body(self.head(x))) + self.skip(x))
