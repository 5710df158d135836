"""The one API every pruning scheme follows.

A scheme is a frozen dataclass holding its options; ``scheme.mask(weight)`` returns the
boolean support of the Euclidean projection of ``weight`` onto the scheme's constraint set
(so ``weight * mask`` is the closest weight tensor with that structure), and
``scheme.project(weight)`` returns that tensor. ADMM's Z-update, one-shot magnitude pruning
and the hard-pruning step all call the same ``mask``.

``density`` is always the fraction of the layer's weights a scheme keeps (compression rate
= 1 / density), whatever structure it prunes.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from patsparse.core.errors import InvalidRateError, UnknownNameError, UnsupportedLayerError

_REGISTRY: dict[str, type[Scheme]] = {}


def check_density(density: float, *, scheme: str, maximum: float = 1.0) -> None:
    """Raise :class:`InvalidRateError` unless ``0 < density <= maximum``."""
    if not isinstance(density, int | float) or isinstance(density, bool):
        raise InvalidRateError(f"{scheme}: density must be a number, got {density!r}")
    if not (0.0 < float(density) <= maximum + 1e-9) or math.isnan(float(density)):
        extra = f"; this scheme keeps at most {maximum:.4g} of the weights" if maximum < 1.0 else ""
        raise InvalidRateError(
            f"{scheme}: density {density!r} is outside (0, {maximum:.4g}]{extra}. density is "
            f"the fraction of weights kept: 0.125 means 8x compression "
            f"(density = 1 / compression)."
        )


def keep_count(density: float, total: int) -> int:
    """Units to keep out of ``total`` at ``density`` (at least one)."""
    return max(1, min(total, round(density * total)))


def topk_mask(scores: torch.Tensor, k: int, *, dim: int = -1) -> torch.Tensor:
    """Boolean mask of the ``k`` largest entries of ``scores`` along ``dim``.

    Ties break towards the lower index, so the result is deterministic.
    """
    n = scores.shape[dim]
    k = max(0, min(k, n))
    # Stable: sort descending on (score, -index) by sorting the negated scores stably.
    order = torch.sort(-scores, dim=dim, stable=True).indices
    keep = torch.zeros_like(scores, dtype=torch.bool)
    keep.scatter_(dim, order.narrow(dim, 0, k), True)
    return keep


class Scheme(ABC):
    """Base class: subclasses are frozen dataclasses registered under ``name``."""

    name: ClassVar[str]
    #: weight ranks the scheme can prune: 4 = conv (K, C, kh, kw), 2 = linear (out, in)
    ranks: ClassVar[tuple[int, ...]] = (2, 4)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            _REGISTRY[cls.name] = cls

    # -- the API --------------------------------------------------------------------------
    def unsupported_reason(self, shape: tuple[int, ...]) -> str | None:
        """Why this scheme cannot prune a weight of ``shape`` (``None`` when it can)."""
        if len(shape) not in self.ranks:
            kinds = {2: "linear (out, in)", 4: "conv (K, C, kh, kw)"}
            wanted = " or ".join(kinds[r] for r in self.ranks)
            return f"{self.name} prunes {wanted} weights, got shape {shape}"
        return None

    def check(self, weight: torch.Tensor) -> None:
        """Raise :class:`UnsupportedLayerError` if this scheme cannot prune ``weight``."""
        reason = self.unsupported_reason(tuple(weight.shape))
        if reason is not None:
            raise UnsupportedLayerError(reason)

    @abstractmethod
    def _mask(self, weight: torch.Tensor) -> torch.Tensor:
        """Support of the Euclidean projection (weight already checked, detached)."""

    def mask(self, weight: torch.Tensor) -> torch.Tensor:
        """Boolean mask of the weights the projection of ``weight`` keeps."""
        self.check(weight)
        with torch.no_grad():
            return self._mask(weight.detach().float())

    def project(self, weight: torch.Tensor) -> torch.Tensor:
        """The closest tensor to ``weight`` (Frobenius norm) with this scheme's structure."""
        return weight * self.mask(weight).to(weight.dtype)

    @property
    def target_density(self) -> float:
        """Fraction of weights this scheme keeps by construction."""
        return float(getattr(self, "density", 1.0))

    @property
    def compression(self) -> float:
        return 1.0 / self.target_density

    # -- serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scheme": self.name}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if hasattr(value, "to_dict") else value
        return out

    def describe(self) -> str:
        parts = [
            f"{k}={v['name'] if isinstance(v, dict) and 'name' in v else v}"
            for k, v in self.to_dict().items()
            if k != "scheme"
        ]
        return f"{self.name}({', '.join(parts)})"


def scheme_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def scheme_class(name: str) -> type[Scheme]:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(
            f"unknown pruning scheme {name!r}; choose one of {', '.join(_REGISTRY)}.{hint}"
        ) from None


def make_scheme(name: str, **options: Any) -> Scheme:
    """Build a scheme by name, e.g. ``make_scheme("pattern+connectivity", density=0.125)``."""
    cls = scheme_class(name)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(
            f"scheme {name!r} has no option(s) {unknown}; its options are {sorted(known)}"
        )
    return cls(**options)


def scheme_from_dict(data: dict[str, Any]) -> Scheme:
    """Inverse of :meth:`Scheme.to_dict`."""
    if not isinstance(data, dict) or "scheme" not in data:
        raise UnknownNameError(f"a scheme dict needs a 'scheme' key, got {data!r}")
    opts = {k: v for k, v in data.items() if k != "scheme"}
    return make_scheme(str(data["scheme"]), **opts)
