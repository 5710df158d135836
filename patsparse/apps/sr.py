"""Super resolution: a WDSR-like network upscales the luma, bicubic upscales the chroma.

Why luma only: the eye resolves detail in brightness, far less in colour (what JPEG's
chroma subsampling relies on), and SR papers score the Y channel; one input and one output
channel instead of three keep the whole budget for the trunk that makes the detail, and the
grey training photos (camera, brick, text, ...) train it as well as colour ones.

Training and evaluation pairs are made the usual way: a high-resolution photo is the target
and its bicubic downscale (antialiased, as MATLAB's ``imresize``) the input. ``quality`` and
``baseline`` degrade each held-out photo that way, upscale it (the model; plain bicubic) and
score the result against the photo: PSNR and SSIM on Y, skipping a ``scale``-pixel border.
``to_input`` / ``to_picture`` / ``baseline_picture`` upscale the photo they are given (what
``patsparse app run`` does to a user's picture).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from patsparse.apps.base import App, AppTrainConfig, Metric, checked_crops
from patsparse.apps.metrics import psnr, shave, ssim
from patsparse.core.errors import DataError
from patsparse.models.wdsr import WDSR

#: BT.601 full-range (JPEG) RGB -> YCbCr rows, on [0, 1] values (Cb, Cr centred at 0.5)
_RGB_TO_YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
    dtype=np.float32,
)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR).astype(np.float32)


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """Float RGB ``(..., 3)`` in [0, 1] as YCbCr ``(..., 3)`` (BT.601 full range)."""
    ycc = np.asarray(rgb, dtype=np.float32) @ _RGB_TO_YCBCR.T
    ycc[..., 1:] += 0.5
    return ycc


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """The inverse of :func:`rgb_to_ycbcr`, clipped to [0, 1]."""
    a = np.array(ycc, dtype=np.float32, copy=True)
    a[..., 1:] -= 0.5
    return np.clip(a @ _YCBCR_TO_RGB.T, 0.0, 1.0)


def _nchw(img: np.ndarray) -> torch.Tensor:
    a = np.asarray(img, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None]


def _hwc(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t[0].detach().numpy().transpose(1, 2, 0))


def bicubic(img: np.ndarray, scale: float) -> np.ndarray:
    """``img`` (H, W, C) resized by ``scale`` with bicubic interpolation (antialiased when
    shrinking), clipped to [0, 1]."""
    t = _nchw(img)
    size = (round(img.shape[0] * scale), round(img.shape[1] * scale))
    out = F.interpolate(t, size=size, mode="bicubic", align_corners=False, antialias=scale < 1)
    return np.clip(_hwc(out), 0.0, 1.0)


class SuperResolution(App):
    """x``scale`` super resolution of photos (luma by :class:`WDSR`, chroma bicubic)."""

    name: ClassVar[str] = "sr"
    title: ClassVar[str] = "super resolution x2"
    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("psnr", "dB", "higher"),
        Metric("ssim", "", "higher"),
    )
    schemes: ClassVar[tuple[str, ...]] = ("pattern+connectivity", "block-pattern")
    train_defaults: ClassVar[AppTrainConfig] = AppTrainConfig(
        steps=4000, batch_size=16, patch=48, lr=2e-3, seed=0, pairs=8192
    )

    def __init__(self, scale: int = 2) -> None:
        if scale not in (2, 3, 4):
            raise ValueError(f"super resolution scales by 2, 3 or 4, got {scale}")
        self.scale = scale

    def build(self) -> nn.Module:
        return WDSR(self.scale)

    # -- pairs and loss ------------------------------------------------------------------

    def degrade(self, photo: np.ndarray) -> np.ndarray:
        """The low-resolution input of a high-resolution photo: cropped to a multiple of
        ``scale``, bicubic-downscaled (antialiased)."""
        hr = self.fit_to_scale(photo)
        return bicubic(hr, 1.0 / self.scale)

    def fit_to_scale(self, photo: np.ndarray) -> np.ndarray:
        """``photo`` cropped (bottom, right) to a multiple of ``scale`` pixels."""
        s = self.scale
        h, w = (photo.shape[0] // s) * s, (photo.shape[1] // s) * s
        if h < 2 * s or w < 2 * s:
            raise DataError(
                f"a {photo.shape[0]}x{photo.shape[1]} photo is too small to degrade by {s}",
                fix="use photos of at least 16x16 pixels",
            )
        return photo[:h, :w]

    def pairs(self, crops: np.ndarray) -> TensorDataset:
        crops = checked_crops(crops, multiple=self.scale, app="super-resolution")
        y = torch.from_numpy(np.ascontiguousarray(rgb_to_ycbcr(crops)[..., :1])).permute(0, 3, 1, 2)
        lr = F.interpolate(
            y, scale_factor=1.0 / self.scale, mode="bicubic", align_corners=False, antialias=True
        ).clamp(0.0, 1.0)
        return TensorDataset(lr.contiguous(), y.contiguous())

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(output, target)  # L1, as WDSR/EDSR: sharper than L2 at equal PSNR

    # -- pictures ------------------------------------------------------------------------

    def to_input(self, photo: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(rgb_to_ycbcr(photo)[..., 0]))[None, None]

    def to_picture(self, output: torch.Tensor, photo: np.ndarray) -> np.ndarray:
        luma = np.clip(output[0, 0].detach().numpy(), 0.0, 1.0)
        chroma = bicubic(rgb_to_ycbcr(photo), float(self.scale))[..., 1:]
        if chroma.shape[:2] != luma.shape:
            raise DataError(
                f"the model's output {luma.shape} is not {self.scale}x the photo {photo.shape[:2]}",
                fix="run the model built for this app's scale",
            )
        return ycbcr_to_rgb(np.concatenate([luma[..., None], chroma], axis=-1))

    def baseline_picture(self, photo: np.ndarray) -> np.ndarray:
        return bicubic(photo, float(self.scale))

    def score(self, picture: np.ndarray, photo: np.ndarray) -> dict[str, float]:
        ref = rgb_to_ycbcr(self.fit_to_scale(photo))[..., 0]
        out = rgb_to_ycbcr(picture)[..., 0]
        ref, out = shave(ref, self.scale), shave(out, self.scale)
        return {"psnr": psnr(out, ref), "ssim": ssim(out, ref)}

    # -- evaluation: degrade, upscale, compare with the photo --------------------------------

    def source(self, photo: np.ndarray) -> np.ndarray:
        """Scored against a photo, the model upscales the photo degraded (:meth:`degrade`)."""
        return self.degrade(photo)


class SuperResolutionX4(SuperResolution):
    """x4 super resolution (``patsparse app ... sr4``): the same network with a x4 tail and
    skip, trained on 96² crops (the low-resolution input stays 24², as x2's 48² crops)."""

    name: ClassVar[str] = "sr4"
    title: ClassVar[str] = "super resolution x4"
    train_defaults: ClassVar[AppTrainConfig] = dataclasses.replace(
        SuperResolution.train_defaults, patch=96
    )

    def __init__(self) -> None:
        super().__init__(4)
