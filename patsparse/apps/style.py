"""Style transfer: a photo in, the same photo painted in one fixed style out.

**The style** is scikit-image's ``immunohistochemistry`` photo (stained tissue: a dense
texture of blue nuclei on brown and cream), resized to :data:`STYLE_SIZE` pixels a side; a
user's picture can replace it (``StyleTransferApp(style=...)``). It is one of the colour
*training* photos, never a held-out one.

**Losses** come from a fixed random conv feature network
(:mod:`patsparse.apps.features`, nothing pre-trained): the content loss compares a deep
feature map of the output with the content photo's, the style loss the Gram matrices of
every stage with the style picture's; both are relative (1.0 = as far off as nothing at
all). ``pairs`` makes the content crop its own target and ``loss`` closes over the
style's Gram matrices: ``content_weight * content + style_weight * style``.

**Metrics** on held-out photos: the style loss (headline) and the content loss, both lower
is better. **Baseline**: the content photo itself: zero content loss, and the style loss
the model must cut.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from patsparse.apps.base import App, AppTrainConfig, Metric, checked_crops
from patsparse.apps.features import FeatureConfig, PerceptualLoss
from patsparse.apps.photos import load_photo, to_float_rgb
from patsparse.core.errors import DataError
from patsparse.models.style_transfer import StyleTransferNet

STYLE_PHOTO = "immunohistochemistry"
"""The built-in photo whose style the shipped model paints in."""
STYLE_SIZE = 256
"""The style picture's longer side after resizing (sets the texture's scale)."""


@dataclass(frozen=True)
class StyleConfig:
    """Loss weights and the feature network (one home for the defaults)."""

    content_weight: float = 1.0
    style_weight: float = 4.0
    features: FeatureConfig = field(default_factory=FeatureConfig)

    def __post_init__(self) -> None:
        if not self.content_weight >= 0 or not self.style_weight > 0:
            raise ValueError(
                "StyleConfig needs content_weight >= 0 and style_weight > 0, got "
                f"{self.content_weight} and {self.style_weight}"
            )


def _to_tensor(photo: np.ndarray) -> torch.Tensor:
    a = np.asarray(photo, dtype=np.float32)
    if a.ndim != 3 or a.shape[2] != 3:
        raise DataError(
            f"a photo must be float RGB (H, W, 3), got shape {a.shape}",
            fix="load it with patsparse.apps.photos.read_image",
        )
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None]


def style_picture(photo: np.ndarray | None = None, *, size: int = STYLE_SIZE) -> np.ndarray:
    """The style picture: ``photo`` (default :data:`STYLE_PHOTO`) with its longer side
    resized to ``size`` (area-averaged), float RGB."""
    a = load_photo(STYLE_PHOTO) if photo is None else to_float_rgb(photo)
    if min(a.shape[:2]) < 16:
        raise DataError(
            f"the style picture is {a.shape[1]}x{a.shape[0]} pixels; its texture needs more",
            fix="use a style picture at least 16 pixels a side",
        )
    scale = size / max(a.shape[:2])
    hw = (max(16, round(a.shape[0] * scale)), max(16, round(a.shape[1] * scale)))
    t = nn.functional.interpolate(_to_tensor(a), size=hw, mode="area" if scale < 1 else "bilinear")
    return t[0].permute(1, 2, 0).clamp(0.0, 1.0).numpy()


class StyleTransferApp(App):
    """Johnson-like feed-forward style transfer
    (:class:`~patsparse.models.style_transfer.StyleTransferNet`) in one fixed style."""

    name: ClassVar[str] = "style"
    title: ClassVar[str] = "Style transfer"
    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("style_loss", "rel", "lower"),
        Metric("content_loss", "rel", "lower"),
    )
    schemes: ClassVar[tuple[str, ...]] = ("column", "block-pattern")
    train_defaults: ClassVar[AppTrainConfig] = AppTrainConfig(
        steps=600, batch_size=4, patch=96, lr=2e-3, pairs=2048
    )
    color_only: ClassVar[bool] = True
    widths: ClassVar[tuple[int, int, int]] = (16, 32, 64)
    blocks: ClassVar[int] = 4

    def __init__(
        self, *, style: np.ndarray | None = None, config: StyleConfig | None = None
    ) -> None:
        """``style``: a float RGB style picture (default :data:`STYLE_PHOTO`), resized by
        :func:`style_picture`."""
        self.config = config or StyleConfig()
        self._style_photo = style
        self._criterion: PerceptualLoss | None = None

    @property
    def style(self) -> np.ndarray:
        """The style picture the model learns (resized)."""
        return style_picture(self._style_photo)

    @property
    def criterion(self) -> PerceptualLoss:
        """The content/style losses against this app's style (built on first use)."""
        if self._criterion is None:
            self._criterion = PerceptualLoss(_to_tensor(self.style), self.config.features)
        return self._criterion

    def build(self) -> nn.Module:
        return StyleTransferNet(widths=self.widths, blocks=self.blocks)

    def pairs(self, crops: np.ndarray) -> TensorDataset:
        a = checked_crops(crops, multiple=StyleTransferNet.multiple, app="style-transfer")
        x = torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).contiguous()
        return TensorDataset(x, x)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``content_weight * content_loss + style_weight * style_loss`` (target = content)."""
        content, style = self.criterion.parts(output, target)
        return self.config.content_weight * content + self.config.style_weight * style

    def to_input(self, photo: np.ndarray) -> torch.Tensor:
        x = _to_tensor(photo)
        m = StyleTransferNet.multiple
        pad_h, pad_w = -x.shape[2] % m, -x.shape[3] % m
        if pad_h or pad_w:
            mode = "reflect" if min(x.shape[2:]) > max(pad_h, pad_w) else "replicate"
            x = nn.functional.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        return x

    def to_picture(self, output: torch.Tensor, photo: np.ndarray) -> np.ndarray:
        h, w = _to_tensor(photo).shape[2:]
        if (
            output.dim() != 4
            or output.shape[:2] != (1, 3)
            or output.shape[2] < h
            or output.shape[3] < w
        ):
            raise DataError(
                f"a style-transfer output must be (1, 3, >={h}, >={w}) for this photo, got "
                f"{tuple(output.shape)}",
                fix="pass the model's output for to_input(photo)",
            )
        pic = output[0, :, :h, :w].detach().clamp(0.0, 1.0).permute(1, 2, 0)
        return np.ascontiguousarray(pic.cpu().numpy(), dtype=np.float32)

    def baseline_picture(self, photo: np.ndarray) -> np.ndarray:
        return np.array(_to_tensor(photo)[0].permute(1, 2, 0).numpy())

    @torch.no_grad()
    def score(self, picture: np.ndarray, photo: np.ndarray) -> dict[str, float]:
        pic, ref = _to_tensor(picture), _to_tensor(photo)
        if pic.shape != ref.shape:
            raise DataError(
                f"picture {tuple(pic.shape[2:])} and photo {tuple(ref.shape[2:])} differ in size",
                fix="score the picture made from this photo",
            )
        content, style = self.criterion.parts(pic, ref)
        return {"style_loss": float(style), "content_loss": float(content)}
