"""MobileNet-V2 (inverted residuals, depthwise 3x3 convs, ReLU6) for CIFAR-10 and ImageNet.

Written from scratch; the ImageNet variant matches torchvision's ``mobilenet_v2`` (3.50M
parameters at ``width_mult=1``). The depthwise 3x3 convs (``groups == channels``) are the only
3x3 kernels apart from the stem, so pattern pruning here acts on one 3x3 filter per channel.
"""

from __future__ import annotations

import torch
from torch import nn

from patsparse.models._common import check_variant, init_weights, resolve_classes

# (expand ratio t, output channels c, repeats n, first stride s), as in the paper's Table 2.
INVERTED_RESIDUAL_CFG: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never dropping more than 10%."""
    lo = divisor if min_value is None else min_value
    new = max(lo, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


class ConvBNReLU6(nn.Sequential):
    """``Conv2d(bias=False) - BatchNorm2d - ReLU6`` as children ``0``, ``1``, ``2``."""

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
    ) -> None:
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(
                in_planes, out_planes, kernel_size, stride, padding, groups=groups, bias=False
            ),
            nn.BatchNorm2d(out_planes),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """1x1 expand (skipped when ``expand_ratio == 1``), depthwise 3x3, linear 1x1 project.

    Adds the input back (``x + conv(x)``) when stride is 1 and channels match.
    """

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual stride must be 1 or 2, got {stride}")
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(inp, hidden, kernel_size=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x + conv(x)`` with a residual, else ``conv(x)``."""
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """``features`` (stem, 17 inverted residuals, 1x1 conv to 1280), global pool, ``classifier``.

    ``variant="cifar"``: stride-1 stem and stride-1 second stage (32x32 input ends at 4x4).
    ``variant="imagenet"``: the paper's strides (224x224 input ends at 7x7).
    ``width_mult`` scales every channel count (rounded to multiples of 8).
    """

    def __init__(
        self,
        *,
        variant: str = "cifar",
        num_classes: int | None = None,
        width_mult: float = 1.0,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.variant = check_variant(variant, "MobileNetV2")
        n = resolve_classes(num_classes, self.variant)
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        cifar = self.variant == "cifar"
        in_ch = make_divisible(32 * width_mult)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [ConvBNReLU6(3, in_ch, stride=1 if cifar else 2)]
        for stage, (t, c, reps, s) in enumerate(INVERTED_RESIDUAL_CFG):
            out_ch = make_divisible(c * width_mult)
            first_stride = 1 if cifar and stage == 1 else s
            for i in range(reps):
                layers.append(InvertedResidual(in_ch, out_ch, first_stride if i == 0 else 1, t))
                in_ch = out_ch
        layers.append(ConvBNReLU6(in_ch, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, n))
        init_weights(self, linear_std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(N, num_classes)``."""
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v2(
    *,
    variant: str = "cifar",
    num_classes: int | None = None,
    width_mult: float = 1.0,
    dropout: float = 0.2,
) -> MobileNetV2:
    """MobileNet-V2; see :class:`MobileNetV2`."""
    return MobileNetV2(
        variant=variant, num_classes=num_classes, width_mult=width_mult, dropout=dropout
    )
