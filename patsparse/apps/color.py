"""Colorization: a grey picture's lightness in, its two chroma channels out.

**Colour space: YCbCr (BT.601, full range, as JPEG).** Lightness is Y, chroma is (Cb, Cr)
in [-0.5, 0.5]. It is *linear* in RGB, so (1) the photo's own lightness is recombined with
the predicted chroma exactly (``to_picture``), (2) the training set's mean chroma — the
baseline — is the plain mean of Cb and Cr, and (3) the conversion is one 3x3 matrix, no
gamut tables (Lab would weight chroma errors more perceptually, at the cost of a non-linear
conversion and out-of-gamut clipping on the way back).

**Loss: L1 on chroma plus a saturation term.** Plain MSE is minimised by the conditional
*mean* chroma; where the hue is uncertain (a shirt may be red or blue) the mean is grey, so
MSE-trained colorizers are sepia-grey. L1 is minimised by the per-channel median (less
grey, same argument weaker), and the saturation term ``| ‖ĉ‖ - ‖c‖ |`` compares only the
chroma *magnitudes*: any hue with the right saturation scores zero, so the network is paid
for committing to *a* colour instead of averaging to grey, and costs nothing where the hue
is known. (Zhang, Isola and Efros's class rebalancing, ECCV 2016, attacks the same
problem with a classification over quantised chroma; it needs far more data than ships
with scikit-image.)

**Metrics** on held-out photos: chroma PSNR (dB over Cb/Cr, peak 1; higher is better) and
the colourfulness error: the absolute difference of Hasler and Süsstrunk's colourfulness
(2003, on 0–255 RGB) between the output and the photo (lower is better; a grey or uniformly
tinted picture scores the photo's whole colourfulness). **Baseline**: the photo's own
lightness with the training set's mean chroma everywhere (:func:`mean_chroma`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from patsparse.apps.base import App, AppTrainConfig, Metric, checked_crops
from patsparse.apps.photos import builtin_photos
from patsparse.core.errors import DataError
from patsparse.models.colorization import ColorizationNet

#: RGB -> YCbCr (BT.601 full range), rows Y, Cb, Cr
RGB_TO_YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
    dtype=np.float32,
)
YCBCR_TO_RGB = np.linalg.inv(RGB_TO_YCBCR).astype(np.float32)

SATURATION_WEIGHT = 0.5
"""Weight of the saturation term against the L1 chroma term in :meth:`ColorizationApp.loss`."""


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """Float RGB ``(..., 3)`` in [0, 1] to YCbCr ``(..., 3)``: Y in [0, 1], Cb/Cr in ±0.5."""
    return np.asarray(rgb, dtype=np.float32) @ RGB_TO_YCBCR.T


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """The inverse of :func:`rgb_to_ycbcr`, clipped to [0, 1]."""
    return np.clip(np.asarray(ycc, dtype=np.float32) @ YCBCR_TO_RGB.T, 0.0, 1.0)


def mean_chroma(photos: Mapping[str, np.ndarray]) -> tuple[float, float]:
    """The mean (Cb, Cr) over every pixel of ``photos`` (the baseline's constant chroma)."""
    if not photos:
        raise DataError("no photos to take the mean chroma of", fix="pass the training photos")
    total = np.zeros(2, dtype=np.float64)
    count = 0
    for p in photos.values():
        c = rgb_to_ycbcr(p)[..., 1:].reshape(-1, 2)
        total += c.sum(0, dtype=np.float64)
        count += len(c)
    cb, cr = total / count
    return float(cb), float(cr)


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler and Süsstrunk's colourfulness of a float RGB picture, on the 0–255 scale
    (about 0 grey, 33 moderately, 60 quite, over 80 highly colourful)."""
    a = np.asarray(rgb, dtype=np.float64) * 255.0
    rg = a[..., 0] - a[..., 1]
    yb = 0.5 * (a[..., 0] + a[..., 1]) - a[..., 2]
    spread = np.hypot(rg.std(), yb.std())
    mean = np.hypot(rg.mean(), yb.mean())
    return float(spread + 0.3 * mean)


def _check_photo(photo: np.ndarray) -> np.ndarray:
    a = np.asarray(photo, dtype=np.float32)
    if a.ndim != 3 or a.shape[2] != 3:
        raise DataError(
            f"a photo must be float RGB (H, W, 3), got shape {a.shape}",
            fix="load it with patsparse.apps.photos.read_image",
        )
    return a


class ColorizationApp(App):
    """Iizuka-like colorization (:class:`~patsparse.models.colorization.ColorizationNet`)."""

    name: ClassVar[str] = "color"
    title: ClassVar[str] = "Colorization"
    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("colorfulness_err", "H&S", "lower"),
        Metric("chroma_psnr", "dB", "higher"),
    )
    #: block-pattern first: at the same quality as per-kernel pattern+connectivity (the paper's
    #: scheme for it; colourfulness error 16.9 vs 17.4, chroma PSNR 19.30 vs 19.29 dB) it runs
    #: 6.9x PyTorch dense at 256² against 3.5x (BENCHMARKS.md, Table 1)
    schemes: ClassVar[tuple[str, ...]] = ("block-pattern", "pattern+connectivity")
    train_defaults: ClassVar[AppTrainConfig] = AppTrainConfig(
        steps=600, batch_size=16, patch=64, lr=2e-3, pairs=4096
    )
    color_only: ClassVar[bool] = True
    width: ClassVar[int] = 16
    """The shipped model's first-layer width (16/32/64 channels)."""

    def __init__(self, *, chroma: tuple[float, float] | None = None) -> None:
        """``chroma``: the baseline's constant (Cb, Cr); default the mean over the built-in
        colour training photos (pass ``mean_chroma(photo_set.train)`` for a user's folder)."""
        self._chroma = chroma

    @property
    def chroma(self) -> tuple[float, float]:
        """The baseline's constant chroma: the training photos' mean (Cb, Cr)."""
        if self._chroma is None:
            self._chroma = mean_chroma(builtin_photos(color_only=True).train)
        return self._chroma

    def build(self) -> nn.Module:
        return ColorizationNet(width=self.width)

    def pairs(self, crops: np.ndarray) -> TensorDataset:
        a = checked_crops(crops, multiple=ColorizationNet.multiple, app="colorization")
        ycc = torch.from_numpy(rgb_to_ycbcr(a)).permute(0, 3, 1, 2).contiguous()
        return TensorDataset(ycc[:, :1] - 0.5, ycc[:, 1:].contiguous())

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean L1 chroma error + :data:`SATURATION_WEIGHT` x the mean saturation error."""
        l1 = (output - target).abs().mean()
        sat_out = (output.pow(2).sum(1) + 1e-6).sqrt()
        sat_target = (target.pow(2).sum(1) + 1e-6).sqrt()
        return l1 + SATURATION_WEIGHT * (sat_out - sat_target).abs().mean()

    def to_input(self, photo: np.ndarray) -> torch.Tensor:
        a = _check_photo(photo)
        y = torch.from_numpy(np.ascontiguousarray(rgb_to_ycbcr(a)[..., 0]))[None, None] - 0.5
        m = ColorizationNet.multiple
        pad_h, pad_w = -a.shape[0] % m, -a.shape[1] % m
        if pad_h or pad_w:
            mode = "reflect" if min(a.shape[:2]) > max(pad_h, pad_w) else "replicate"
            y = nn.functional.pad(y, (0, pad_w, 0, pad_h), mode=mode)
        return y

    def to_picture(self, output: torch.Tensor, photo: np.ndarray) -> np.ndarray:
        a = _check_photo(photo)
        h, w = a.shape[:2]
        if (
            output.dim() != 4
            or output.shape[:2] != (1, 2)
            or output.shape[2] < h
            or output.shape[3] < w
        ):
            raise DataError(
                f"a colorization output must be (1, 2, >={h}, >={w}) for this photo, got "
                f"{tuple(output.shape)}",
                fix="pass the model's output for to_input(photo)",
            )
        chroma = output[0, :, :h, :w].detach().permute(1, 2, 0).cpu().numpy()
        ycc = rgb_to_ycbcr(a)
        ycc[..., 1:] = chroma
        return ycbcr_to_rgb(ycc)

    def baseline_picture(self, photo: np.ndarray) -> np.ndarray:
        ycc = rgb_to_ycbcr(_check_photo(photo))
        ycc[..., 1:] = np.asarray(self.chroma, dtype=np.float32)
        return ycbcr_to_rgb(ycc)

    def score(self, picture: np.ndarray, photo: np.ndarray) -> dict[str, float]:
        pic, ref = _check_photo(picture), _check_photo(photo)
        if pic.shape != ref.shape:
            raise DataError(
                f"picture {pic.shape} and photo {ref.shape} differ in size",
                fix="score the picture made from this photo",
            )
        diff = rgb_to_ycbcr(pic)[..., 1:] - rgb_to_ycbcr(ref)[..., 1:]
        mse = max(float(np.mean(diff.astype(np.float64) ** 2)), 1e-10)
        return {
            "chroma_psnr": 10.0 * float(np.log10(1.0 / mse)),
            "colorfulness_err": abs(colorfulness(pic) - colorfulness(ref)),
        }

    def grey_input(self, photo: np.ndarray) -> np.ndarray:
        """The model's view of ``photo``: its lightness as a grey RGB picture (for figures)."""
        y = rgb_to_ycbcr(_check_photo(photo))[..., 0]
        return np.repeat(np.clip(y, 0.0, 1.0)[..., None], 3, axis=2)
