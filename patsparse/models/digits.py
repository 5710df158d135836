"""A small CNN for the 8x8 scikit-learn digits: the fast end-to-end test model.

Three 3x3 convolutions (the layers pattern pruning acts on) and one linear classifier; small
enough to train to >95% accuracy on CPU in seconds.
"""

from __future__ import annotations

import torch
from torch import nn

from patsparse.models._common import init_weights


class DigitsCNN(nn.Module):
    """``conv-BN-ReLU x2, maxpool, conv-BN-ReLU, maxpool, linear`` for ``(N, 1, 8, 8)`` input.

    Module names: ``features.0`` / ``features.3`` / ``features.7`` are the 3x3 convolutions,
    ``features.1`` / ``.4`` / ``.8`` their batch norms, ``classifier`` the final ``Linear``.
    """

    def __init__(self, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        if num_classes < 1 or width < 1:
            raise ValueError(
                f"DigitsCNN needs num_classes >= 1 and width >= 1, got num_classes={num_classes}, "
                f"width={width}"
            )
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1, bias=False),  # 0
            nn.BatchNorm2d(w),  # 1
            nn.ReLU(inplace=True),  # 2
            nn.Conv2d(w, 2 * w, 3, padding=1, bias=False),  # 3
            nn.BatchNorm2d(2 * w),  # 4
            nn.ReLU(inplace=True),  # 5
            nn.MaxPool2d(2),  # 6: 8x8 -> 4x4
            nn.Conv2d(2 * w, 2 * w, 3, padding=1, bias=False),  # 7
            nn.BatchNorm2d(2 * w),  # 8
            nn.ReLU(inplace=True),  # 9
            nn.MaxPool2d(2),  # 10: 4x4 -> 2x2
        )
        self.classifier = nn.Linear(2 * w * 4, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(N, num_classes)``."""
        return self.classifier(torch.flatten(self.features(x), 1))
