"""ImageNet-style image folders (one subfolder per class) without torchvision.

Evaluation preprocessing only: resize the shorter side, center crop, normalise with the
ImageNet mean/std, as the ``*-imagenet`` models expect.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from patsparse.core.errors import DataError

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp")
"""Accepted file endings (case-insensitive); other files are skipped."""


def resize_shorter(img: Image.Image, size: int) -> Image.Image:
    """Resize (bilinear) so the shorter side is ``size``, keeping the aspect ratio."""
    w, h = img.size
    if min(w, h) == size:
        return img
    long_side = max(1, int(size * max(w, h) / min(w, h)))  # truncates, like torchvision
    new = (size, long_side) if w <= h else (long_side, size)
    return img.resize(new, Image.Resampling.BILINEAR)


def center_crop(img: Image.Image, size: int) -> Image.Image:
    """The central ``size x size`` crop (the image must be at least that big)."""
    w, h = img.size
    left = round((w - size) / 2)
    top = round((h - size) / 2)
    return img.crop((left, top, left + size, top + size))


def to_normalized_tensor(
    img: Image.Image,
    *,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> torch.Tensor:
    """RGB PIL image to float32 ``(3, H, W)``: scaled to [0, 1], then ``(x - mean) / std``."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    x = torch.from_numpy(arr).permute(2, 0, 1)
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    return ((x - m) / s).contiguous()


class ImageFolderDataset(Dataset[tuple[torch.Tensor, int]]):
    """``root/<class>/<image>`` folder; yields ``(image (3, size, size), class index)``.

    Classes are the sorted subfolder names (:attr:`classes`, :attr:`class_to_idx`); images are
    files ending in :data:`IMAGE_EXTENSIONS`, searched recursively under each class folder and
    sorted. Each image is opened with PIL, converted to RGB, resized so its shorter side is
    ``resize``, center-cropped to ``size`` and normalised with the ImageNet mean/std.
    Raises :class:`DataError` if ``root`` is missing, has no class folders or no images.
    """

    def __init__(self, root: str | os.PathLike[str], *, size: int = 224, resize: int = 256) -> None:
        if size < 1 or resize < size:
            raise ValueError(f"need 1 <= size <= resize, got size={size}, resize={resize}")
        self.root = Path(root).expanduser()
        self.size = size
        self.resize = resize
        if not self.root.is_dir():
            raise DataError(
                f"Image folder {str(self.root)!r} does not exist; pass a folder with one "
                f"subfolder per class (e.g. val/n01440764/*.JPEG)."
            )
        self.classes: list[str] = sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        if not self.classes:
            raise DataError(
                f"Image folder {str(self.root)!r} has no class subfolders; put each class's "
                f"images in its own subfolder (root/<class>/<image>)."
            )
        self.class_to_idx: dict[str, int] = {c: i for i, c in enumerate(self.classes)}
        self.samples: list[tuple[Path, int]] = []
        for cls in self.classes:
            files = sorted(
                p
                for p in (self.root / cls).rglob("*")
                if p.is_file()
                and p.suffix.lower() in IMAGE_EXTENSIONS
                and not p.name.startswith(".")
            )
            self.samples += [(p, self.class_to_idx[cls]) for p in files]
        if not self.samples:
            raise DataError(
                f"Image folder {str(self.root)!r} has class folders {self.classes[:5]} but no "
                f"images ending in {', '.join(IMAGE_EXTENSIONS)}; add images or fix the path."
            )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        try:
            with Image.open(path) as im:
                img = im.convert("RGB")
        except OSError as exc:
            raise DataError(
                f"Cannot read image {str(path)!r} ({exc}); remove or replace it."
            ) from exc
        img = center_crop(resize_shorter(img, self.resize), self.size)
        return to_normalized_tensor(img), label
