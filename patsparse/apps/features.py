"""Content and style losses on a fixed *random* conv feature network (nothing pre-trained).

Style transfer's perceptual losses usually come from an ImageNet VGG, which cannot be
downloaded here. They do not need one: random, untrained conv filters already carry the
texture statistics a Gram-matrix style loss matches. Ustyuzhaninov, Brendel, Gatys and
Bethge, "What does it take to generate natural textures?" (ICLR 2017) synthesise textures
as well as with VGG from a single layer of random multi-scale filters; He, Wang and
Hopcroft, "A powerful generative model using random weights for the deep image
representation" (NeurIPS 2016) do style transfer with an untrained VGG. This module follows
both: a first layer of random filters at three scales (3x3, 5x5, 7x7), then random 3x3 conv
stages, each after a 2x2 average pool, so the Gram matrices see textures from 3 to ~60
pixels. The weights are drawn once from a seeded generator (He initialisation, zero bias)
and never trained: the same seed gives the same losses on any machine.

- :func:`gram`: ``F Fᵀ / (H W)`` per image, the style statistics of one layer;
- :class:`RandomFeatures`: the feature network (frozen);
- :class:`PerceptualLoss`: the content loss on one deep layer and the style loss on the
  Gram matrices of every layer, both *relative* (divided by the target's own energy), so
  1.0 means "as far as nothing at all" and the figures compare across photos.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from patsparse.core.errors import DataError


@dataclass(frozen=True)
class FeatureConfig:
    """The random feature network (one home for its defaults)."""

    widths: tuple[int, ...] = (24, 48, 96, 128)
    """Channels per stage; the first stage's are split over the three filter sizes."""
    seed: int = 1234
    content_layer: int = 2
    """The stage whose features the content loss compares (1/4 resolution)."""

    def __post_init__(self) -> None:
        if not self.widths or min(self.widths) < 3:
            raise ValueError(f"FeatureConfig.widths must be ints >= 3, got {self.widths}")
        if self.widths[0] % 3:
            raise ValueError(
                f"FeatureConfig.widths[0] must split over 3 filter sizes, got {self.widths[0]}"
            )
        if not 0 <= self.content_layer < len(self.widths):
            raise ValueError(
                f"FeatureConfig.content_layer must index widths (0..{len(self.widths) - 1}), "
                f"got {self.content_layer}"
            )


def gram(features: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` features to their ``(N, C, C)`` Gram matrices, divided by ``H W``."""
    n, c, h, w = features.shape
    f = features.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (h * w)


def _random_conv(cin: int, cout: int, kernel: int, gen: torch.Generator) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, padding_mode="reflect")
    std = (2.0 / (cin * kernel * kernel)) ** 0.5
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * std)
        if conv.bias is not None:
            conv.bias.zero_()
    conv.requires_grad_(False)
    return conv


class RandomFeatures(nn.Module):
    """Frozen random conv features of an RGB picture in [0, 1]: one map per stage."""

    def __init__(self, config: FeatureConfig | None = None) -> None:
        super().__init__()
        cfg = config or FeatureConfig()
        self.config = cfg
        gen = torch.Generator().manual_seed(cfg.seed)
        third = cfg.widths[0] // 3
        self.first = nn.ModuleList(_random_conv(3, third, k, gen) for k in (3, 5, 7))
        self.stages = nn.ModuleList(
            _random_conv(cin, cout, 3, gen)
            for cin, cout in zip(cfg.widths[:-1], cfg.widths[1:], strict=True)
        )
        self.eval()

    def train(self, mode: bool = True) -> RandomFeatures:
        return super().train(False)  # frozen: no mode changes anything, keep it in eval

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise DataError(
                f"RandomFeatures takes RGB (N, 3, H, W), got shape {tuple(x.shape)}",
                fix="pass RGB pictures in [0, 1]",
            )
        h = (x - 0.5) * 4.0  # roughly unit variance for [0, 1] pictures
        h = torch.relu(torch.cat([conv(h) for conv in self.first], 1))
        out = [h]
        for conv in self.stages:
            h = torch.relu(conv(nn.functional.avg_pool2d(h, 2)))
            out.append(h)
        return out


class PerceptualLoss(nn.Module):
    """Relative content and style losses against one fixed style picture.

    ``style_loss(y)``: mean over stages of ``‖G(y) - G(style)‖² / ‖G(style)‖²``;
    ``content_loss(y, c)``: ``‖F(y) - F(c)‖² / ‖F(c)‖²`` on the content stage. Both are 0
    for a perfect match and are averaged over the batch.
    """

    def __init__(self, style: torch.Tensor, config: FeatureConfig | None = None) -> None:
        super().__init__()
        self.features = RandomFeatures(config)
        if style.dim() == 3:
            style = style.unsqueeze(0)
        if style.dim() != 4 or style.shape[:2] != (1, 3):
            raise DataError(
                f"the style picture must be one RGB picture (3, H, W), got {tuple(style.shape)}",
                fix="pass a single RGB style picture",
            )
        with torch.no_grad():
            grams = [gram(f) for f in self.features(style)]
        for i, g in enumerate(grams):
            self.register_buffer(f"style_gram{i}", g, persistent=False)
        self._layers = len(grams)

    def style_grams(self) -> list[torch.Tensor]:
        return [getattr(self, f"style_gram{i}") for i in range(self._layers)]

    def parts(
        self, output: torch.Tensor, content: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(content_loss, style_loss)`` of a batch of outputs against their contents."""
        feats = self.features(output)
        k = self.features.config.content_layer
        with torch.no_grad():
            target = self.features(content)[k]
        return _relative(feats[k], target), self._style(feats)

    def style_loss(self, output: torch.Tensor) -> torch.Tensor:
        """The style loss alone (e.g. of a picture that has no content to keep)."""
        return self._style(self.features(output))

    def _style(self, feats: list[torch.Tensor]) -> torch.Tensor:
        grams = self.style_grams()
        return torch.stack(
            [
                _relative(gram(f), g.expand(len(f), -1, -1))
                for f, g in zip(feats, grams, strict=True)
            ]
        ).mean()


def _relative(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample ``‖x - t‖² / ‖t‖²``, averaged over the batch."""
    err = (x - target).flatten(1).pow(2).sum(1)
    energy = target.flatten(1).pow(2).sum(1).clamp_min(1e-12)
    return (err / energy).mean()
