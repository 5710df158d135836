"""Datasets for training, pruning and evaluation, all without torchvision.

Bundled (no download): scikit-learn digits (:func:`load_digits_split`) and super-resolution
patches from scikit-image photos (:func:`load_sr_patches`). From disk: CIFAR-10's python
batches (:func:`load_cifar10`) and ImageNet-style folders (:class:`ImageFolderDataset`).
"""

from __future__ import annotations

from patsparse.data.cifar import CIFAR10_MEAN, CIFAR10_STD, load_cifar10
from patsparse.data.digits import DIGITS_MEAN, DIGITS_STD, load_digits_split, normalize_digits
from patsparse.data.imagefolder import IMAGENET_MEAN, IMAGENET_STD, ImageFolderDataset
from patsparse.data.loaders import make_loaders
from patsparse.data.sr import SR_IMAGES, load_luma, load_sr_patches, split_sr_images

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DIGITS_MEAN",
    "DIGITS_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SR_IMAGES",
    "ImageFolderDataset",
    "load_cifar10",
    "load_digits_split",
    "load_luma",
    "load_sr_patches",
    "make_loaders",
    "normalize_digits",
    "split_sr_images",
]
