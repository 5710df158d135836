"""Per-layer pruning configuration: which scheme (and rate) each layer of a model gets.

A :class:`PruningPlan` has a default scheme, per-layer overrides, skip rules and a fallback
for layers the default cannot prune (e.g. 1x1 convs and linear layers under a pattern
scheme). :meth:`PruningPlan.resolve` turns it into one :class:`LayerDecision` per prunable
layer (``nn.Conv2d`` and ``nn.Linear``), each saying which scheme applies or why none does.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from patsparse.core.errors import UnknownLayerError, UnsupportedLayerError
from patsparse.schemes.base import Scheme, scheme_from_dict

PLAN_VERSION = 1


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Conv2d and Linear modules by qualified name, in module order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}


@dataclass(frozen=True)
class LayerDecision:
    """What a plan does to one layer: ``scheme`` is ``None`` when the layer stays dense."""

    name: str
    kind: str
    shape: tuple[int, ...]
    scheme: Scheme | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "shape": list(self.shape),
            "scheme": self.scheme.to_dict() if self.scheme else None,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class PruningPlan:
    """Model-wide pruning configuration.

    ``layers`` maps layer names to a scheme or ``None`` (keep dense) and wins over every
    other rule. ``fallback`` prunes layers the ``default`` scheme cannot take (``None``:
    they stay dense and the report says why).
    """

    default: Scheme | None
    layers: Mapping[str, Scheme | None] = field(default_factory=dict)
    skip_first_conv: bool = True
    skip_last_linear: bool = True
    fallback: Scheme | None = None
    version: int = PLAN_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", MappingProxyType(dict(self.layers)))

    def resolve(self, model: nn.Module) -> dict[str, LayerDecision]:
        """One decision per Conv2d/Linear layer; raises on unknown names or impossible overrides."""
        layers = prunable_layers(model)
        unknown = [n for n in self.layers if n not in layers]
        if unknown:
            hints = []
            for n in unknown:
                close = difflib.get_close_matches(n, list(layers), n=1)
                hints.append(f"{n!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise UnknownLayerError(
                f"pruning plan names layer(s) the model does not have: {', '.join(hints)}. "
                f"Prunable layers are: {', '.join(layers) or '(none)'}"
            )
        convs = [n for n, m in layers.items() if isinstance(m, nn.Conv2d)]
        linears = [n for n, m in layers.items() if isinstance(m, nn.Linear)]
        first_conv = convs[0] if convs else None
        last_linear = linears[-1] if linears else None
        out: dict[str, LayerDecision] = {}
        for name, module in layers.items():
            shape = tuple(module_weight(module).shape)
            kind = _kind(module)
            if name in self.layers:
                scheme = self.layers[name]
                if scheme is not None:
                    reason = scheme.unsupported_reason(shape)
                    if reason is not None:
                        raise UnsupportedLayerError(f"layer {name!r}: {reason}")
                out[name] = LayerDecision(
                    name, kind, shape, scheme, "per-layer setting" if scheme else "set dense"
                )
                continue
            if self.skip_first_conv and name == first_conv:
                out[name] = LayerDecision(name, kind, shape, None, "first conv (skip_first_conv)")
                continue
            if self.skip_last_linear and name == last_linear:
                out[name] = LayerDecision(name, kind, shape, None, "last linear (skip_last_linear)")
                continue
            out[name] = self._default_for(name, kind, shape)
        return out

    def _default_for(self, name: str, kind: str, shape: tuple[int, ...]) -> LayerDecision:
        if self.default is None:
            return LayerDecision(name, kind, shape, None, "no default scheme")
        why = self.default.unsupported_reason(shape)
        if why is None:
            return LayerDecision(name, kind, shape, self.default, "default")
        if self.fallback is not None and self.fallback.unsupported_reason(shape) is None:
            return LayerDecision(name, kind, shape, self.fallback, f"fallback ({why})")
        return LayerDecision(name, kind, shape, None, f"left dense: {why}")

    # -- serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "default": self.default.to_dict() if self.default else None,
            "layers": {n: (s.to_dict() if s else None) for n, s in self.layers.items()},
            "skip_first_conv": self.skip_first_conv,
            "skip_last_linear": self.skip_last_linear,
            "fallback": self.fallback.to_dict() if self.fallback else None,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PruningPlan:
        version = int(data.get("version", PLAN_VERSION))
        if version > PLAN_VERSION:
            raise ValueError(
                f"pruning plan version {version} is newer than this patsparse understands "
                f"({PLAN_VERSION}); upgrade patsparse"
            )

        def opt(d: Any) -> Scheme | None:
            return scheme_from_dict(d) if d else None

        return cls(
            default=opt(data.get("default")),
            layers={n: opt(s) for n, s in dict(data.get("layers", {})).items()},
            skip_first_conv=bool(data.get("skip_first_conv", True)),
            skip_last_linear=bool(data.get("skip_last_linear", True)),
            fallback=opt(data.get("fallback")),
            version=version,
        )

    @classmethod
    def from_json(cls, text: str) -> PruningPlan:
        return cls.from_dict(json.loads(text))


def _kind(module: nn.Module) -> str:
    if isinstance(module, nn.Linear):
        return "linear"
    assert isinstance(module, nn.Conv2d)
    kh, kw = module.kernel_size
    if module.groups > 1:
        return "depthwise" if module.groups == module.in_channels else "grouped conv"
    return f"conv{kh}x{kw}"


def module_weight(module: nn.Module) -> torch.Tensor:
    """The (possibly masked) weight tensor of a Conv2d/Linear module."""
    w = module.weight
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"{type(module).__name__} has no weight tensor")
    return w
