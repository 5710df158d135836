"""Helpers shared by the model definitions: variant checking and weight init."""

from __future__ import annotations

import difflib

import torch
from torch import nn

from patsparse.core.errors import DataError, UnknownNameError

VARIANTS: tuple[str, ...] = ("cifar", "imagenet")
"""Input-size variants: ``cifar`` (32x32, 10 classes) and ``imagenet`` (224x224, 1000)."""

DEFAULT_CLASSES: dict[str, int] = {"cifar": 10, "imagenet": 1000}


def check_variant(variant: str, model: str) -> str:
    """Return ``variant`` if valid, else raise :class:`UnknownNameError` naming the choices."""
    if variant in VARIANTS:
        return variant
    close = difflib.get_close_matches(str(variant), VARIANTS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownNameError(
        f"Unknown {model} variant {variant!r}; use one of {', '.join(map(repr, VARIANTS))}.{hint}"
    )


def resolve_classes(num_classes: int | None, variant: str) -> int:
    """``num_classes`` or the variant's default (10 for cifar, 1000 for imagenet)."""
    n = DEFAULT_CLASSES[variant] if num_classes is None else num_classes
    if n < 1:
        raise ValueError(f"num_classes must be >= 1, got {n}")
    return n


def init_weights(module: nn.Module, *, linear_std: float | None = None) -> None:
    """Kaiming-normal (fan_out) convs, unit/zero batch norms; linear layers normal(0, std).

    ``linear_std=None`` leaves linear layers at PyTorch's default init.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0.0, linear_std)
            nn.init.zeros_(m.bias)


def check_image_batch(
    x: torch.Tensor, *, channels: int, multiple: int, model: str, takes: str, app: str
) -> None:
    """:class:`DataError` unless ``x`` is ``(N, channels, H, W)`` with ``H`` and ``W``
    multiples of ``multiple`` (``takes`` names the input, ``app`` the class that prepares it)."""
    if x.dim() != 4 or x.shape[1] != channels:
        raise DataError(
            f"{model} takes {takes} (N, {channels}, H, W), got shape {tuple(x.shape)}",
            fix=f"pass the {takes} of a picture ({app}.to_input does it)",
        )
    if x.shape[2] % multiple or x.shape[3] % multiple:
        raise DataError(
            f"{model} needs sides that are multiples of {multiple}, got {tuple(x.shape[2:])}",
            fix=f"pad the picture ({app}.to_input pads by reflection)",
        )
