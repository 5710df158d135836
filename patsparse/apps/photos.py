"""Real photos for the applications: shipped inside installed packages, or a user's folder.

Nothing is downloaded. The built-in set is scikit-image's offline photos plus matplotlib's
``grace_hopper.jpg``; a fixed subset is held out for evaluation (never trained on). A
user's folder (``--data-root``) replaces the built-in set: its images are split the same
way, by name, so the held-out photos are stable across runs.

Every photo is float32 RGB ``(H, W, 3)`` in ``[0, 1]`` (grey photos are repeated into the
three channels).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from patsparse.core.errors import DataError, UnknownNameError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data as skdata

        return np.asarray(getattr(skdata, name)())

    return load


def _motorcycle(side: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data as skdata

        return np.asarray(skdata.stereo_motorcycle()[side])

    return load


def _grace_hopper() -> np.ndarray:
    from matplotlib import cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        return np.asarray(im.convert("RGB"))


_COLOR_LOADERS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "hubble_deep_field": _skimage("hubble_deep_field"),
    "immunohistochemistry": _skimage("immunohistochemistry"),
    "retina": _skimage("retina"),
    "rocket": _skimage("rocket"),
    "motorcycle_left": _motorcycle(0),
    "motorcycle_right": _motorcycle(1),
    "grace_hopper": _grace_hopper,
}
_GREY_LOADERS: dict[str, Callable[[], np.ndarray]] = {
    n: _skimage(n)
    for n in ("camera", "moon", "brick", "grass", "gravel", "coins", "clock", "page", "text")
}

BUILTIN_PHOTOS: tuple[str, ...] = (*_COLOR_LOADERS, *_GREY_LOADERS)
"""Every photo :func:`load_photo` knows (scikit-image's offline photos + Grace Hopper)."""

COLOR_PHOTOS: tuple[str, ...] = tuple(_COLOR_LOADERS)
"""The colour photos (colorization and style transfer train only on these)."""

HELD_OUT: tuple[str, ...] = ("chelsea", "coffee", "grace_hopper", "camera")
"""Built-in photos never trained on: every quality figure is measured on these."""


def to_float_rgb(img: np.ndarray) -> np.ndarray:
    """Any uint8/float/bool grey, RGB or RGBA array as float32 RGB ``(H, W, 3)`` in [0, 1]."""
    a = np.asarray(img)
    if a.dtype == bool:
        a = a.astype(np.float32)
    elif np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float32) / float(np.iinfo(a.dtype).max)
    else:
        a = a.astype(np.float32)
        if a.max(initial=0.0) > 1.0:
            a = a / 255.0
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise DataError(
            f"an image must be (H, W), (H, W, 3) or (H, W, 4); got shape {a.shape}",
            fix="pass a grey, RGB or RGBA picture",
        )
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(np.clip(a[..., :3], 0.0, 1.0), dtype=np.float32)


def load_photo(name: str) -> np.ndarray:
    """The built-in photo ``name`` as float32 RGB ``(H, W, 3)`` in [0, 1]."""
    loader = _COLOR_LOADERS.get(name) or _GREY_LOADERS.get(name)
    if loader is None:
        close = difflib.get_close_matches(str(name), BUILTIN_PHOTOS, n=1)
        raise UnknownNameError(
            f"unknown built-in photo {name!r}" + (f"; did you mean {close[0]!r}?" if close else ""),
            fix=f"use one of {', '.join(BUILTIN_PHOTOS)}, or pass a folder of your own images",
        )
    return to_float_rgb(loader())


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """An image file as float32 RGB ``(H, W, 3)`` in [0, 1]; :class:`DataError` if unreadable."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise DataError(f"image {str(p)!r} does not exist", fix="check the path")
    try:
        with Image.open(p) as im:
            return to_float_rgb(np.asarray(im.convert("RGB")))
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(
            f"cannot read {str(p)!r} as an image ({exc})",
            fix=f"pass a picture ending in one of {', '.join(IMAGE_SUFFIXES)}",
        ) from None


def write_image(path: str | os.PathLike[str], img: np.ndarray) -> Path:
    """Save float RGB in [0, 1] (or grey) as an 8-bit PNG/JPEG at ``path``; returns it."""
    from PIL import Image

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    a = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
    Image.fromarray((a * 255.0 + 0.5).astype(np.uint8)).save(p)
    return p


def image_files(root: str | os.PathLike[str]) -> list[Path]:
    """The image files in folder ``root`` (recursively), sorted by path."""
    r = Path(root)
    if not r.is_dir():
        raise DataError(
            f"image folder {str(r)!r} does not exist or is not a folder",
            fix="pass --data-root a folder holding your photos (png, jpg, ...)",
        )
    files = sorted(p for p in r.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(
            f"image folder {str(r)!r} holds no images",
            fix=f"put photos ending in one of {', '.join(IMAGE_SUFFIXES)} in it",
        )
    return files


@dataclass(frozen=True)
class PhotoSet:
    """Named photos split into training and held-out evaluation photos."""

    train: dict[str, np.ndarray]
    held_out: dict[str, np.ndarray]
    source: str

    def __post_init__(self) -> None:
        if not self.train or not self.held_out:
            raise DataError(
                f"{self.source}: need at least one training and one held-out photo, got "
                f"{len(self.train)} and {len(self.held_out)}",
                fix="use at least two photos",
            )
        overlap = set(self.train) & set(self.held_out)
        if overlap:
            raise DataError(f"{self.source}: photos {sorted(overlap)} are in both splits")


def builtin_photos(*, color_only: bool = False) -> PhotoSet:
    """The built-in photos, :data:`HELD_OUT` held out (grey ones dropped if ``color_only``)."""
    names = COLOR_PHOTOS if color_only else BUILTIN_PHOTOS
    return PhotoSet(
        train={n: load_photo(n) for n in names if n not in HELD_OUT},
        held_out={n: load_photo(n) for n in names if n in HELD_OUT},
        source="built-in photos (scikit-image, matplotlib)",
    )


def folder_photos(root: str | os.PathLike[str], *, held_out_fraction: float = 0.2) -> PhotoSet:
    """A user's folder: every ``round(1 / held_out_fraction)``-th image (by sorted path)
    held out, at least one; names are paths relative to ``root``."""
    if not 0.0 < held_out_fraction < 1.0:
        raise ValueError(f"held_out_fraction must be in (0, 1), got {held_out_fraction}")
    files = image_files(root)
    if len(files) < 2:
        raise DataError(
            f"image folder {str(root)!r} holds one image; training and evaluation need two",
            fix="add more photos",
        )
    every = max(2, round(1.0 / held_out_fraction))
    names = [str(f.relative_to(root)) for f in files]
    held = {n for i, n in enumerate(names) if i % every == every - 1} or {names[-1]}
    return PhotoSet(
        train={n: read_image(f) for n, f in zip(names, files, strict=True) if n not in held},
        held_out={n: read_image(f) for n, f in zip(names, files, strict=True) if n in held},
        source=f"folder {str(root)!r}",
    )


def photo_set(
    data_root: str | os.PathLike[str] | None = None, *, color_only: bool = False
) -> PhotoSet:
    """A user's folder when ``data_root`` is given, else the built-in photos."""
    if data_root is not None:
        return folder_photos(data_root)
    return builtin_photos(color_only=color_only)


def random_crops(
    images: dict[str, np.ndarray] | list[np.ndarray],
    *,
    size: int,
    count: int,
    seed: int,
    flip: bool = True,
) -> np.ndarray:
    """``count`` random ``size x size`` crops, float32 ``(count, size, size, 3)``.

    Photos are drawn in proportion to their area; ``flip`` adds random horizontal flips.
    Photos smaller than ``size`` are skipped (:class:`DataError` if none is big enough).
    """
    imgs = [a for a in (images.values() if isinstance(images, dict) else images)]
    imgs = [a for a in imgs if a.shape[0] >= size and a.shape[1] >= size]
    if not imgs:
        raise DataError(
            f"no photo is at least {size}x{size} pixels", fix="use a smaller patch size"
        )
    rng = np.random.default_rng(seed)
    area = np.array([a.shape[0] * a.shape[1] for a in imgs], dtype=np.float64)
    which = rng.choice(len(imgs), size=count, p=area / area.sum())
    out = np.empty((count, size, size, 3), dtype=np.float32)
    for k, i in enumerate(which):
        a = imgs[i]
        y = int(rng.integers(0, a.shape[0] - size + 1))
        x = int(rng.integers(0, a.shape[1] - size + 1))
        crop = a[y : y + size, x : x + size]
        out[k] = crop[:, ::-1] if flip and rng.random() < 0.5 else crop
    return out


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    """The central ``size x size`` crop (the whole image's shorter side if smaller)."""
    s = min(size, img.shape[0], img.shape[1])
    y, x = (img.shape[0] - s) // 2, (img.shape[1] - s) // 2
    return img[y : y + s, x : x + s]
