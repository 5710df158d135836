"""ResNet-18 (BasicBlock) and ResNet-50 (Bottleneck) for CIFAR-10 and ImageNet input.

Written from scratch; the ImageNet variants match torchvision's ``resnet18`` / ``resnet50``
(v1.5: stride on the bottleneck's 3x3 conv) in structure and parameter count. The residual add
is a plain ``out = out + identity`` then ReLU so :func:`torch.export.export` traces it cleanly.
"""

from __future__ import annotations

import torch
from torch import nn

from patsparse.models._common import check_variant, init_weights, resolve_classes


def _downsample(in_planes: int, out_planes: int, stride: int) -> nn.Sequential | None:
    """1x1 conv (with ``stride``) + BN projecting the identity, or ``None`` when shapes match."""
    if stride == 1 and in_planes == out_planes:
        return None
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_planes),
    )


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection (ResNet-18/34)."""

    expansion: int = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``relu(bn2(conv2(relu(bn1(conv1(x))))) + identity)``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand (x4), with a residual connection (ResNet-50)."""

    expansion: int = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``relu(bn3(conv3(...)) + identity)``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out + identity
        return self.relu(out)


class ResNet(nn.Module):
    """Stem, four stages ``layer1..layer4`` (64/128/256/512 planes), global pool, ``fc``.

    ``variant="cifar"``: 3x3 stride-1 stem, no max pool (``maxpool`` is an identity), for
    32x32 input. ``variant="imagenet"``: 7x7 stride-2 stem and 3x3 stride-2 max pool.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        *,
        variant: str = "cifar",
        num_classes: int | None = None,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self.variant = check_variant(variant, "ResNet")
        n = resolve_classes(num_classes, self.variant)
        self.in_planes = 64
        self.maxpool: nn.Module
        if self.variant == "cifar":
            self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, 64, layers[0], stride=1)
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, n)
        init_weights(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, *, stride: int
    ) -> nn.Sequential:
        """One stage: the first block strides (and projects), the rest keep the shape."""
        mods: list[nn.Module] = []
        for i in range(blocks):
            mods.append(block(self.in_planes, planes, stride if i == 0 else 1))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(N, num_classes)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(
    *, variant: str = "cifar", num_classes: int | None = None, zero_init_residual: bool = False
) -> ResNet:
    """ResNet-18: BasicBlocks ``(2, 2, 2, 2)``; 11.69M parameters for ImageNet."""
    return ResNet(
        BasicBlock,
        (2, 2, 2, 2),
        variant=variant,
        num_classes=num_classes,
        zero_init_residual=zero_init_residual,
    )


def resnet50(
    *, variant: str = "cifar", num_classes: int | None = None, zero_init_residual: bool = False
) -> ResNet:
    """ResNet-50: Bottlenecks ``(3, 4, 6, 3)``; 25.56M parameters for ImageNet."""
    return ResNet(
        Bottleneck,
        (3, 4, 6, 3),
        variant=variant,
        num_classes=num_classes,
        zero_init_residual=zero_init_residual,
    )
