"""VGG-16 with batch norm, for CIFAR-10 (32x32) and ImageNet (224x224) input.

Thirteen 3x3 convolutions, the classic pattern-pruning benchmark. Written from scratch; the
ImageNet variant matches torchvision's ``vgg16_bn`` layer for layer, parameter names included
(138.37M parameters).
"""

from __future__ import annotations

import torch
from torch import nn

from patsparse.models._common import check_variant, init_weights, resolve_classes

VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip
"""Output channels of each 3x3 conv; ``"M"`` is a 2x2 max pool."""


def make_vgg_features(
    cfg: tuple[int | str, ...], *, in_channels: int = 3, batch_norm: bool = True
) -> nn.Sequential:
    """The convolutional trunk: ``conv3x3[-BN]-ReLU`` per int in ``cfg``, max pool per ``"M"``.

    Convs keep their bias even before batch norm, as torchvision's ``vgg16_bn`` does, so
    parameter names and counts match it.
    """
    layers: list[nn.Module] = []
    c = in_channels
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        out = int(v)
        layers.append(nn.Conv2d(c, out, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out))
        layers.append(nn.ReLU(inplace=True))
        c = out
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """VGG-16(-BN): ``features`` (the conv trunk), then ``avgpool`` and ``classifier``.

    ``variant="cifar"``: 32x32 input, the trunk ends at 1x1x512, ``avgpool`` is an identity and
    ``classifier`` a single ``Linear(512, num_classes)``.
    ``variant="imagenet"``: 224x224 input, ``AdaptiveAvgPool2d(7)`` and the three-layer
    ``25088 -> 4096 -> 4096 -> num_classes`` classifier with ReLU and dropout.
    """

    def __init__(
        self,
        *,
        variant: str = "cifar",
        num_classes: int | None = None,
        batch_norm: bool = True,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.variant = check_variant(variant, "VGG")
        n = resolve_classes(num_classes, self.variant)
        self.features = make_vgg_features(VGG16_CFG, batch_norm=batch_norm)
        self.avgpool: nn.Module
        self.classifier: nn.Module
        if self.variant == "cifar":
            self.avgpool = nn.Identity()
            self.classifier = nn.Linear(512, n)
        else:
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(512 * 7 * 7, 4096),
                nn.ReLU(inplace=True),
                nn.Dropout(p=dropout),
                nn.Linear(4096, 4096),
                nn.ReLU(inplace=True),
                nn.Dropout(p=dropout),
                nn.Linear(4096, n),
            )
        init_weights(self, linear_std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(N, num_classes)``."""
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def vgg16(
    *,
    variant: str = "cifar",
    num_classes: int | None = None,
    batch_norm: bool = True,
    dropout: float = 0.5,
) -> VGG:
    """VGG-16 with batch norm (``batch_norm=False`` for the plain version); see :class:`VGG`."""
    return VGG(variant=variant, num_classes=num_classes, batch_norm=batch_norm, dropout=dropout)
