"""Model registry: build any patsparse model by name, and its default input shape.

The names are what the CLI, configs and the TVM side use; :data:`MODEL_NAMES` lists them.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from torch import nn

from patsparse.core.errors import UnknownNameError
from patsparse.models.digits import DigitsCNN
from patsparse.models.mobilenet import mobilenet_v2
from patsparse.models.resnet import resnet18, resnet50
from patsparse.models.sr import SRNet
from patsparse.models.vgg import vgg16


def _with_variant(fn: Callable[..., nn.Module], variant: str) -> Callable[..., nn.Module]:
    def build(**kwargs: Any) -> nn.Module:
        return fn(variant=variant, **kwargs)

    return build


_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "digits-cnn": DigitsCNN,
    "vgg16-cifar": _with_variant(vgg16, "cifar"),
    "vgg16-imagenet": _with_variant(vgg16, "imagenet"),
    "resnet18-cifar": _with_variant(resnet18, "cifar"),
    "resnet18-imagenet": _with_variant(resnet18, "imagenet"),
    "resnet50-cifar": _with_variant(resnet50, "cifar"),
    "resnet50-imagenet": _with_variant(resnet50, "imagenet"),
    "mobilenetv2-cifar": _with_variant(mobilenet_v2, "cifar"),
    "mobilenetv2-imagenet": _with_variant(mobilenet_v2, "imagenet"),
    "sr-net": SRNet,
}

_INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "digits-cnn": (1, 1, 8, 8),
    "sr-net": (1, 1, 32, 32),
    **{n: (1, 3, 32, 32) for n in _BUILDERS if n.endswith("-cifar")},
    **{n: (1, 3, 224, 224) for n in _BUILDERS if n.endswith("-imagenet")},
}

MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)
"""Every name :func:`build_model` accepts."""


def _check_name(name: str) -> str:
    if name in _BUILDERS:
        return name
    close = difflib.get_close_matches(str(name), MODEL_NAMES, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownNameError(
        f"Unknown model name {name!r}; valid names are {', '.join(MODEL_NAMES)}.{hint}"
    )


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """A freshly initialised model by registry name; ``kwargs`` go to its constructor.

    E.g. ``build_model("resnet18-cifar", num_classes=100)`` or
    ``build_model("sr-net", scale=3)``. The variant is fixed by the name.
    Raises :class:`UnknownNameError` for a name not in :data:`MODEL_NAMES`.
    """
    builder = _BUILDERS[_check_name(name)]
    if "variant" in kwargs:
        raise TypeError(
            f"build_model({name!r}) fixes the variant from the name; drop variant="
            f"{kwargs['variant']!r} and pick the matching name instead"
        )
    return builder(**kwargs)


def default_input_shape(name: str) -> tuple[int, ...]:
    """Batch-1 NCHW input shape the model ``name`` is meant for, e.g. ``(1, 3, 32, 32)``."""
    return _INPUT_SHAPES[_check_name(name)]
