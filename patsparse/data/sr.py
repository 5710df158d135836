"""Super-resolution patches from scikit-image's bundled photos (no download needed).

Each photo is converted to luma Y in [0, 1] and cut into overlapping high-resolution patches;
the low-resolution input is the patch downsampled by ``scale`` with antialiased bicubic
interpolation. Train and test patches come from *different* photos (see
:func:`split_sr_images`), so test PSNR measures generalisation. Pairs with
:class:`patsparse.models.SRNet`.
"""

from __future__ import annotations

import difflib
import math

import numpy as np
import torch
import torch.nn.functional as F
from skimage import data as skdata
from torch.utils.data import TensorDataset

from patsparse.core.errors import UnknownNameError

SR_IMAGES: tuple[str, ...] = (
    "camera",
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "coins",
    "moon",
    "immunohistochemistry",
)
"""Default photos: all ship inside the scikit-image wheel."""

_AVAILABLE: tuple[str, ...] = (
    *SR_IMAGES,
    "page",
    "text",
    "grass",
    "gravel",
    "brick",
    "clock",
    "colorwheel",
    "hubble_deep_field",
    "retina",
    "cat",
)

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)  # ITU-R BT.601


def load_luma(name: str) -> np.ndarray:
    """The scikit-image photo ``name`` as float32 luma Y in [0, 1], shape ``(H, W)``."""
    if name not in _AVAILABLE:
        close = difflib.get_close_matches(str(name), _AVAILABLE, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(
            f"Unknown scikit-image photo {name!r}; use one of {', '.join(_AVAILABLE)}.{hint}"
        )
    img = np.asarray(getattr(skdata, name)(), dtype=np.float64) / 255.0
    if img.ndim == 3:
        img = img[..., :3] @ _LUMA
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def split_sr_images(
    images: tuple[str, ...] = SR_IMAGES, *, test_fraction: float = 0.2, seed: int = 0
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Which photos are train and which are held out for test.

    ``max(1, round(test_fraction * len(images)))`` photos, chosen by a ``seed``-ed permutation,
    are held out; both tuples keep the order of ``images``. Needs at least two photos.
    """
    if len(images) < 2:
        raise ValueError(f"need at least 2 images to split train/test by image, got {images!r}")
    if len(set(images)) != len(images):
        raise ValueError(f"images must be distinct, got {images!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = min(len(images) - 1, max(1, round(test_fraction * len(images))))
    perm = np.random.default_rng(seed).permutation(len(images))
    held = set(perm[:n_test].tolist())
    train = tuple(n for i, n in enumerate(images) if i not in held)
    test = tuple(n for i, n in enumerate(images) if i in held)
    return train, test


def extract_patches(img: np.ndarray, *, patch: int, stride: int) -> torch.Tensor:
    """All ``patch x patch`` crops of a 2-D image on a ``stride`` grid, ``(N, 1, patch, patch)``.

    Crops start at ``0, stride, 2*stride, ...`` while they fit (row-major order).
    """
    t = torch.as_tensor(img, dtype=torch.float32)
    if t.shape[0] < patch or t.shape[1] < patch:
        return torch.empty(0, 1, patch, patch)
    p = t.unfold(0, patch, stride).unfold(1, patch, stride)  # (nh, nw, patch, patch)
    return p.reshape(-1, 1, patch, patch).contiguous()


def downsample(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Antialiased bicubic downsampling of ``(N, C, H, W)`` by ``scale``, clamped to [0, 1]."""
    h, w = hr.shape[-2] // scale, hr.shape[-1] // scale
    lr = F.interpolate(hr, size=(h, w), mode="bicubic", antialias=True, align_corners=False)
    return lr.clamp_(0.0, 1.0)


def _pairs(names: tuple[str, ...], *, scale: int, patch: int, stride: int) -> TensorDataset:
    hrs = [extract_patches(load_luma(n), patch=patch, stride=stride) for n in names]
    hr = torch.cat(hrs) if hrs else torch.empty(0, 1, patch, patch)
    return TensorDataset(downsample(hr, scale), hr)


def load_sr_patches(
    *,
    scale: int = 2,
    patch: int = 32,
    stride: int = 16,
    images: tuple[str, ...] = SR_IMAGES,
    seed: int = 0,
    test_fraction: float = 0.2,
) -> tuple[TensorDataset, TensorDataset]:
    """``(train, test)`` datasets of ``(low_res, high_res)`` luma patch pairs.

    ``high_res`` is float32 ``(1, patch, patch)`` in [0, 1]; ``low_res`` is
    ``(1, patch // scale, patch // scale)``, its antialiased bicubic downsampling. Test patches
    come only from the photos :func:`split_sr_images` holds out (with the same ``images``,
    ``test_fraction`` and ``seed``), train patches only from the rest. Patches within a set are
    in image order, then row-major; shuffle in the loader.
    """
    if scale < 1 or patch < 1 or stride < 1:
        raise ValueError(
            f"scale, patch and stride must be >= 1, got scale={scale}, patch={patch}, "
            f"stride={stride}"
        )
    if patch % scale:
        raise ValueError(
            f"patch ({patch}) must be a multiple of scale ({scale}); try patch="
            f"{math.ceil(patch / scale) * scale}"
        )
    train_names, test_names = split_sr_images(images, test_fraction=test_fraction, seed=seed)
    kw = {"scale": scale, "patch": patch, "stride": stride}
    return _pairs(train_names, **kw), _pairs(test_names, **kw)
