"""App-like test models: the layer mixes of the papers' applications, untrained.

What users bring besides classification nets, written small and parameterised by width so
the same topology serves the tests (tiny) and ``benchmarks/app_models.py`` (full size).
The trained applications are a separate matter; these exist to check that every layer
compiles scheduled, correct and fast.
"""

from __future__ import annotations

import torch
from torch import nn


class ColorizationLike(nn.Module):
    """Iizuka-like: strided low-level convs, a dilation-2 mid-level conv, a global branch
    (pool, 1x1) broadcast and fused by concat, nearest upsampling, two chroma channels."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.low = nn.Sequential(
            nn.Conv2d(1, w, 3, 2, 1), nn.ReLU(), nn.Conv2d(w, 2 * w, 3, 2, 1), nn.ReLU()
        )
        self.mid = nn.Sequential(nn.Conv2d(2 * w, 2 * w, 3, 1, 2, dilation=2), nn.ReLU())
        self.glob = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(2 * w, w, 1), nn.ReLU())
        self.fuse = nn.Conv2d(3 * w, 2 * w, 1)
        self.out = nn.Sequential(
            nn.Upsample(scale_factor=4), nn.Conv2d(2 * w, 2, 3, 1, 1), nn.Tanh()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mid(self.low(x))
        g = self.glob(y).expand(-1, -1, y.shape[2], y.shape[3])
        return self.out(torch.relu(self.fuse(torch.cat([y, g], 1))))


class StyleLike(nn.Module):
    """Johnson-like: reflection pad, 9x9 convs, instance norm, a residual block (group
    norm), upsample + conv, a 3-channel tanh output."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.head = nn.Sequential(
            nn.ReflectionPad2d(4), nn.Conv2d(3, w, 9), nn.InstanceNorm2d(w, affine=True), nn.ReLU()
        )
        self.down = nn.Sequential(nn.Conv2d(w, 2 * w, 3, 2, 1), nn.InstanceNorm2d(2 * w), nn.ReLU())
        self.res = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(2 * w, 2 * w, 3), nn.GroupNorm(4, 2 * w), nn.ReLU()
        )
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2), nn.Conv2d(2 * w, w, 3, 1, 1), nn.ReLU()
        )
        self.tail = nn.Sequential(nn.ReflectionPad2d(4), nn.Conv2d(w, 3, 9), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.down(self.head(x))
        y = y + self.res(y)
        return self.tail(self.up(y))


class SuperResolutionLike(nn.Module):
    """WDSR-like: a 5x5 head, a wide-activation residual block, an odd (37-channel) conv,
    pixel shuffle x2, a bilinear skip."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.head = nn.Conv2d(3, w, 5, 1, 2)
        self.body = nn.Sequential(
            nn.Conv2d(w, 4 * w, 3, 1, 1), nn.ReLU(), nn.Conv2d(4 * w, w, 3, 1, 1)
        )
        self.odd = nn.Conv2d(w, 37, 3, 1, 1)
        self.tail = nn.Sequential(nn.Conv2d(37, 12, 3, 1, 1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.head(x)
        y = y + self.body(y)
        up = nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.tail(torch.relu(self.odd(y))) + up


#: name -> (model class, input channels)
APP_LIKE = {
    "colorization": (ColorizationLike, 1),
    "style": (StyleLike, 3),
    "sr": (SuperResolutionLike, 3),
}
