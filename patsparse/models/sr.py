"""A small sub-pixel super-resolution CNN for single-channel (luma) images.

ESPCN-style: every layer is a 3x3 conv, so the whole network is prunable with 3x3 patterns;
the last conv predicts ``scale**2`` sub-pixel channels which ``PixelShuffle`` rearranges.
Pairs with :func:`patsparse.data.load_sr_patches`.
"""

from __future__ import annotations

import torch
from torch import nn


class SRNet(nn.Module):
    """``head`` conv3x3+ReLU, ``body`` of ``num_blocks`` conv3x3+ReLU, ``tail`` conv3x3, shuffle.

    Maps ``(N, in_channels, h, w)`` to ``(N, in_channels, h*scale, w*scale)``. With
    ``residual=True`` (default) the network predicts a correction to nearest-neighbour
    upsampling (the input repeated into every sub-pixel channel before the shuffle); the tail
    starts near zero, so the untrained net already returns the nearest-neighbour image and short
    training runs are stable.
    """

    def __init__(
        self,
        scale: int = 2,
        channels: int = 32,
        num_blocks: int = 4,
        *,
        in_channels: int = 1,
        residual: bool = True,
    ) -> None:
        super().__init__()
        if scale < 1 or channels < 1 or num_blocks < 0 or in_channels < 1:
            raise ValueError(
                "SRNet needs scale >= 1, channels >= 1, num_blocks >= 0, in_channels >= 1; got "
                f"scale={scale}, channels={channels}, num_blocks={num_blocks}, "
                f"in_channels={in_channels}"
            )
        self.scale = scale
        self.residual = residual
        self.head = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        body: list[nn.Module] = []
        for _ in range(num_blocks):
            body += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*body)
        self.tail = nn.Conv2d(channels, in_channels * scale * scale, 3, padding=1)
        self.upsample = nn.PixelShuffle(scale)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)  # type: ignore[arg-type]
        nn.init.normal_(self.tail.weight, 0.0, 1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """High-resolution output, ``scale`` times the input's height and width."""
        out = self.tail(self.body(self.relu(self.head(x))))
        if self.residual:
            # channel k*s*s + i*s + j of the shuffle input lands at sub-pixel (i, j) of channel k
            out = out + torch.repeat_interleave(x, self.scale * self.scale, dim=1)
        return self.upsample(out)
