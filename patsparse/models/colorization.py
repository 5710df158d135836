"""An Iizuka-like colorization network: grey lightness in, two chroma channels out.

After Iizuka, Simo-Serra and Ishikawa, "Let there be color!" (SIGGRAPH 2016), the
network the papers' mobile demo prunes for colorization, scaled down to run in real time:

- **low-level** features: strided 3x3 convs take the lightness to 1/4 resolution;
- **mid-level** features: dilated 3x3 convs (dilation 2 and 4) widen the context cheaply;
- a **global** branch: two more strided convs, global average pooling and two 1x1 convs
  (linear layers on the pooled vector) summarise the whole picture (indoors, sky, skin),
  broadcast over every pixel and **fused** with the mid-level features by a 1x1 conv;
- a **colorization** decoder: 3x3 convs and nearest-neighbour x2 upsamplings back to full
  resolution, a 3x3 conv to the two chroma channels (YCbCr's Cb and Cr, see
  :mod:`patsparse.apps.color` for why), bounded to [-0.5, 0.5] by ``0.5 * tanh``.

Heights and widths must be multiples of :data:`ColorizationNet.multiple` (the input
conversion of the app pads them). Every channel count is a multiple of 16 (the pattern
kernels' vector width) except the 1-channel input and the 2-channel output.
"""

from __future__ import annotations

import torch
from torch import nn

from patsparse.models._common import check_image_batch


def _conv(cin: int, cout: int, *, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation), nn.ReLU()
    )


class ColorizationNet(nn.Module):
    """Lightness ``(N, 1, H, W)`` (centred: Y - 0.5) to chroma ``(N, 2, H, W)`` (Cb, Cr).

    ``width`` is the first layer's channel count; the low/mid features have ``4 * width``
    (the shipped model: ``width=16``, so 16/32/64 channels).
    """

    multiple = 4
    """Input sides must be multiples of this (two stride-2 convs, two x2 upsamplings)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"ColorizationNet width must be >= 1, got {width}")
        w1, w2, w4 = width, 2 * width, 4 * width
        self.low = nn.Sequential(
            _conv(1, w1, stride=2), _conv(w1, w2), _conv(w2, w4, stride=2), _conv(w4, w4)
        )
        self.mid = nn.Sequential(_conv(w4, w4, dilation=2), _conv(w4, w4, dilation=4))
        self.glob = nn.Sequential(
            _conv(w4, w4, stride=2),
            _conv(w4, w4, stride=2),
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(w4, w4, 1),
            nn.ReLU(),
            nn.Conv2d(w4, w4, 1),
            nn.ReLU(),
        )
        self.fuse = nn.Sequential(nn.Conv2d(2 * w4, w4, 1), nn.ReLU())
        self.decode = nn.Sequential(
            _conv(w4, w2),
            nn.Upsample(scale_factor=2, mode="nearest"),
            _conv(w2, w1),
            nn.Upsample(scale_factor=2, mode="nearest"),
            _conv(w1, w1),
            nn.Conv2d(w1, 2, 3, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(
            x,
            channels=1,
            multiple=self.multiple,
            model="ColorizationNet",
            takes="lightness",
            app="ColorizationApp",
        )
        low = self.low(x)
        local = self.mid(low)
        glob = self.glob(low).expand(-1, -1, local.shape[2], local.shape[3])
        fused = self.fuse(torch.cat([local, glob], 1))
        return 0.5 * torch.tanh(self.decode(fused))
