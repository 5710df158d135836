"""A Johnson / MSG-Net-like feed-forward style-transfer network, sized for real time.

After Johnson, Alahi and Fei-Fei, "Perceptual losses for real-time style transfer"
(ECCV 2016) and Zhang and Dana's MSG-Net generator (the papers' mobile demo): reflection
padding everywhere, a 9x9 input conv, two stride-2 3x3 convs, residual blocks at 1/4
resolution, two nearest x2 upsamplings each followed by a 3x3 conv (no transposed convs:
no checkerboard), a 9x9 output conv; instance norm (affine) after every conv but the last.
The output is ``0.5 + 0.5 * tanh``: an RGB picture in [0, 1].

Widths are modest (``widths=(16, 32, 64)`` shipped) so the pruned model runs under 75 ms
at 256² on two cores; every channel count but the RGB ends is a multiple of 16.
Heights and widths must be multiples of :data:`StyleTransferNet.multiple`.
"""

from __future__ import annotations

import torch
from torch import nn

from patsparse.models._common import check_image_batch


def _conv(cin: int, cout: int, kernel: int, *, stride: int = 1) -> list[nn.Module]:
    return [nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride)]


def _conv_norm_relu(cin: int, cout: int, kernel: int, *, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        *_conv(cin, cout, kernel, stride=stride), nn.InstanceNorm2d(cout, affine=True), nn.ReLU()
    )


class ResidualBlock(nn.Module):
    """Two 3x3 conv + instance norm layers (ReLU between) added to the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_norm_relu(channels, channels, 3),
            *_conv(channels, channels, 3),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class StyleTransferNet(nn.Module):
    """RGB ``(N, 3, H, W)`` in [0, 1] to its stylised RGB ``(N, 3, H, W)`` in [0, 1]."""

    multiple = 4
    """Input sides must be multiples of this (two stride-2 convs, two x2 upsamplings)."""

    def __init__(self, widths: tuple[int, int, int] = (16, 32, 64), blocks: int = 4) -> None:
        super().__init__()
        if len(widths) != 3 or min(widths) < 1:
            raise ValueError(f"StyleTransferNet widths must be 3 positive ints, got {widths}")
        if blocks < 0:
            raise ValueError(f"StyleTransferNet blocks must be >= 0, got {blocks}")
        w1, w2, w3 = widths
        self.encode = nn.Sequential(
            _conv_norm_relu(3, w1, 9),
            _conv_norm_relu(w1, w2, 3, stride=2),
            _conv_norm_relu(w2, w3, 3, stride=2),
        )
        self.res = nn.Sequential(*(ResidualBlock(w3) for _ in range(blocks)))
        self.decode = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            _conv_norm_relu(w3, w2, 3),
            nn.Upsample(scale_factor=2, mode="nearest"),
            _conv_norm_relu(w2, w1, 3),
            *_conv(w1, 3, 9),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(
            x,
            channels=3,
            multiple=self.multiple,
            model="StyleTransferNet",
            takes="RGB",
            app="StyleTransferApp",
        )
        return 0.5 + 0.5 * torch.tanh(self.decode(self.res(self.encode(x - 0.5))))
