"""The NPS search space: per prunable layer, one choice of pruning scheme and rate.

A :class:`SearchSpace` is built from a model and a :class:`SpaceConfig` (scheme names from
:func:`patsparse.schemes.scheme_names` plus ``"dense"``, and a compression grid). Each
searchable layer gets the :class:`Choice` list its weight shape supports (pattern schemes
only on 3x3 convs, rates a scheme cannot reach are dropped). A *configuration* maps every
searchable layer to one choice label (``"dense"``, ``"pattern"``, ``"filter@2"``,
``"pattern+connectivity@8"``); :meth:`SearchSpace.plan` turns it into a
:class:`~patsparse.schemes.PruningPlan`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from torch import nn

from patsparse.core.errors import InvalidRateError, SearchConfigError
from patsparse.schemes.base import Scheme, scheme_class
from patsparse.schemes.options import DEFAULT_LIBRARY, has_rate, scheme_from_options
from patsparse.schemes.plan import PruningPlan, module_weight, prunable_layers

SPACE_VERSION = 1
DENSE = "dense"
#: schemes searched by default (the paper's candidates that our compiler accelerates)
DEFAULT_SCHEMES: tuple[str, ...] = (
    DENSE,
    "pattern",
    "pattern+connectivity",
    "block-pattern",
    "connectivity",
    "filter",
    "column",
    "block",
)
DEFAULT_COMPRESSIONS: tuple[float, ...] = (2.0, 3.0, 4.0, 6.0, 8.0)


@dataclass(frozen=True)
class Choice:
    """One option for one layer: a scheme name (or ``dense``) and its compression rate.

    ``compression`` is ``None`` for ``dense`` and for schemes with a fixed rate (``pattern``).
    """

    scheme: str
    compression: float | None = None

    @property
    def label(self) -> str:
        if self.compression is None:
            return self.scheme
        return f"{self.scheme}@{self.compression:g}"

    @classmethod
    def parse(cls, label: str) -> Choice:
        """Inverse of :attr:`label`; checks the scheme name (typed error if unknown)."""
        scheme, sep, rate = str(label).partition("@")
        if scheme != DENSE:
            scheme_class(scheme)  # raises UnknownNameError naming the valid schemes
        if not sep:
            return cls(scheme)
        try:
            value = float(rate)
        except ValueError:
            raise SearchConfigError(
                f"choice {label!r}: rate {rate!r} is not a number; write SCHEME@COMPRESSION, "
                "e.g. filter@2"
            ) from None
        return cls(scheme, value)

    def make(self, *, library: str, block_size: int | None) -> Scheme | None:
        """The scheme object (``None`` for dense; see
        :func:`~patsparse.schemes.options.scheme_from_options`)."""
        if self.scheme == DENSE:
            return None
        return scheme_from_options(
            self.scheme, self.compression, library=library, block_size=block_size
        )


@dataclass(frozen=True)
class SpaceConfig:
    """Which schemes and rates the search may pick (one place for the defaults)."""

    schemes: tuple[str, ...] = DEFAULT_SCHEMES
    compressions: tuple[float, ...] = DEFAULT_COMPRESSIONS
    library: str = DEFAULT_LIBRARY
    block_size: int | None = None
    skip_first_conv: bool = True
    skip_last_linear: bool = True
    version: int = SPACE_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "schemes", tuple(self.schemes))
        object.__setattr__(self, "compressions", tuple(float(c) for c in self.compressions))
        if not self.schemes:
            raise SearchConfigError("the search space needs at least one scheme, e.g. dense")
        for name in self.schemes:
            if name != DENSE:
                scheme_class(name)  # UnknownNameError with the valid names
        if len(set(self.schemes)) != len(self.schemes):
            raise SearchConfigError(f"schemes listed twice in {self.schemes}")
        bad = [c for c in self.compressions if not (c > 1.0 and math.isfinite(c))]
        if bad:
            raise InvalidRateError(
                f"compression rates must be finite and > 1 (2 means half the weights kept), "
                f"got {bad}"
            )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["schemes"], d["compressions"] = list(self.schemes), list(self.compressions)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpaceConfig:
        data = dict(data)
        version = int(data.pop("version", SPACE_VERSION))
        if version > SPACE_VERSION:
            raise SearchConfigError(f"space config version {version} is newer than supported")
        data["schemes"] = tuple(data.get("schemes", DEFAULT_SCHEMES))
        data["compressions"] = tuple(data.get("compressions", DEFAULT_COMPRESSIONS))
        return cls(**data)


@dataclass(frozen=True)
class SearchSpace:
    """Per searchable layer, the ordered choices; other prunable layers stay dense."""

    layers: Mapping[str, tuple[Choice, ...]]
    config: SpaceConfig = field(default_factory=SpaceConfig)
    fixed: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", MappingProxyType(dict(self.layers)))
        object.__setattr__(self, "fixed", MappingProxyType(dict(self.fixed)))
        if not self.layers:
            raise SearchConfigError(
                "no layer to search: every prunable layer is skipped (first conv / last "
                "linear) or no listed scheme supports it; add schemes or set "
                "skip_first_conv=False"
            )

    @classmethod
    def from_model(cls, model: nn.Module, config: SpaceConfig | None = None) -> SearchSpace:
        """Enumerate each prunable layer's supported choices under ``config``."""
        cfg = config or SpaceConfig()
        layers = prunable_layers(model)
        convs = [n for n, m in layers.items() if isinstance(m, nn.Conv2d)]
        linears = [n for n, m in layers.items() if isinstance(m, nn.Linear)]
        choices: dict[str, tuple[Choice, ...]] = {}
        fixed: dict[str, str] = {}
        for name, module in layers.items():
            if cfg.skip_first_conv and convs and name == convs[0]:
                fixed[name] = "first conv (skip_first_conv)"
                continue
            if cfg.skip_last_linear and linears and name == linears[-1]:
                fixed[name] = "last linear (skip_last_linear)"
                continue
            shape = tuple(module_weight(module).shape)
            options = _layer_choices(shape, cfg)
            if len(options) <= 1:
                fixed[name] = "no scheme in the space supports shape " + "x".join(map(str, shape))
                continue
            choices[name] = options
        return cls(choices, cfg, fixed)

    # -- configurations -------------------------------------------------------------------
    @staticmethod
    def param_name(layer: str) -> str:
        """The optuna parameter holding ``layer``'s choice."""
        return f"layer:{layer}"

    def labels(self, layer: str) -> tuple[str, ...]:
        return tuple(c.label for c in self.layers[layer])

    @property
    def size(self) -> int:
        """Number of distinct configurations."""
        return math.prod(len(c) for c in self.layers.values())

    def check(self, config: Mapping[str, str]) -> dict[str, str]:
        """``config`` as a complete, validated ``{layer: label}`` dict (typed errors)."""
        unknown = sorted(set(config) - set(self.layers))
        if unknown:
            raise SearchConfigError(
                f"configuration names layer(s) outside the search space: {unknown}; "
                f"searchable layers: {list(self.layers)}"
            )
        out: dict[str, str] = {}
        for layer in self.layers:
            if layer not in config:
                raise SearchConfigError(f"configuration has no choice for layer {layer!r}")
            label = str(config[layer])
            if label not in self.labels(layer):
                Choice.parse(label)  # unknown scheme -> UnknownNameError
                raise SearchConfigError(
                    f"layer {layer!r}: {label!r} is not in the search space; choose one of "
                    f"{', '.join(self.labels(layer))}"
                )
            out[layer] = label
        return out

    def from_params(self, params: Mapping[str, Any]) -> dict[str, str]:
        """A configuration from optuna trial params (``layer:NAME`` keys)."""
        return self.check({layer: params[self.param_name(layer)] for layer in self.layers})

    def to_params(self, config: Mapping[str, str]) -> dict[str, str]:
        return {self.param_name(layer): label for layer, label in self.check(config).items()}

    def plan(self, config: Mapping[str, str]) -> PruningPlan:
        """The pruning plan of a configuration (unsearched layers stay dense)."""
        cfg = self.check(config)
        layers = {
            layer: Choice.parse(label).make(
                library=self.config.library, block_size=self.config.block_size
            )
            for layer, label in cfg.items()
        }
        layers.update(dict.fromkeys(self.fixed))
        return PruningPlan(
            default=None,
            layers=layers,
            skip_first_conv=self.config.skip_first_conv,
            skip_last_linear=self.config.skip_last_linear,
        )

    def uniform(self, label: str) -> dict[str, str]:
        """Every searchable layer set to ``label`` (layers that cannot take it raise)."""
        return self.check(dict.fromkeys(self.layers, label))

    def dense(self) -> dict[str, str]:
        return self.check(dict.fromkeys(self.layers, DENSE)) if self._all_have(DENSE) else {}

    def extremes(self) -> list[dict[str, str]]:
        """Per scheme, every layer at that scheme's highest compression (where supported;
        other layers take their most compressed choice): probes of the fastest corner."""
        out: list[dict[str, str]] = []
        for scheme in self.config.schemes:
            if scheme == DENSE:
                continue
            cfg: dict[str, str] = {}
            for layer, options in self.layers.items():
                own = [c for c in options if c.scheme == scheme]
                pool = own or [c for c in options if c.scheme != DENSE] or list(options)
                cfg[layer] = max(pool, key=_compression_of).label
            if cfg not in out:
                out.append(cfg)
        return out

    def ladder(self, config: Mapping[str, str]) -> list[dict[str, str]]:
        """Below a uniform configuration, the same scheme on every layer at each lower rate
        all layers offer, most compressed first (``[]`` for a mixed or fixed-rate one)."""
        labels = set(self.check(config).values())
        if len(labels) != 1:
            return []
        top = Choice.parse(next(iter(labels)))
        if top.compression is None:
            return []
        common = set.intersection(*(set(self.labels(n)) for n in self.layers))
        rates = sorted(
            {
                c.compression
                for c in map(Choice.parse, common)
                if c.scheme == top.scheme
                and c.compression is not None
                and c.compression < top.compression
            },
            reverse=True,
        )
        return [self.uniform(Choice(top.scheme, r).label) for r in rates]

    def key(self, config: Mapping[str, str]) -> str:
        """Canonical text of a configuration (with library/block size): a cache key."""
        return json.dumps(
            {
                "layers": self.check(config),
                "library": self.config.library,
                "block_size": self.config.block_size,
            },
            sort_keys=True,
        )

    def _all_have(self, label: str) -> bool:
        return all(label in self.labels(layer) for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "layers": {n: list(self.labels(n)) for n in self.layers},
            "fixed": dict(self.fixed),
            "size": self.size,
        }


def _compression_of(choice: Choice) -> float:
    if choice.scheme == DENSE:
        return 1.0
    if choice.compression is not None:
        return choice.compression
    return 2.25  # pattern: 4 of 9 weights


def _layer_choices(shape: tuple[int, ...], cfg: SpaceConfig) -> tuple[Choice, ...]:
    out: list[Choice] = []
    for name in cfg.schemes:
        if name == DENSE:
            out.append(Choice(DENSE))
            continue
        rates: tuple[float | None, ...] = cfg.compressions if has_rate(name) else (None,)
        for rate in rates:
            choice = Choice(name, rate)
            try:
                scheme = choice.make(library=cfg.library, block_size=cfg.block_size)
            except (InvalidRateError, ValueError):
                continue  # e.g. pattern+connectivity cannot keep more than 4/9
            assert scheme is not None
            if scheme.unsupported_reason(shape) is None:
                out.append(choice)
    return tuple(out)
