"""Random small CNNs for the whole-model property test, as specs that render as PyTorch code.

A :class:`ModelSpec` is a chain of layer specs (convs of any size, dilation, stride and
groups; batch / instance / group norm; ReLU / hard-swish / sigmoid; pools; upsampling; pixel
shuffle; reflection padding; residual blocks; two-branch concats; a linear head) plus the
pruning applied to it (:class:`PruneSpec`, one-shot magnitude pruning with a scheme and
rate). :func:`render` writes it as a self-contained PyTorch script and :func:`build` execs
that very source, so the code a failing case prints is the model that was tested.
:func:`model_specs` is the hypothesis strategy (tiny models: inputs up to 16 px, at most 16
channels, so that hundreds compile in minutes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from hypothesis import strategies as st
from torch import nn

#: the largest channel count and spatial size the generator makes
MAX_CHANNELS = 16
MAX_SIZE = 16

Shape = tuple[int, int, int]  # (channels, height, width)


@dataclass(frozen=True)
class Conv:
    out: int
    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    bias: bool = True

    def shape(self, s: Shape) -> Shape:
        span = self.dilation * (self.kernel - 1) + 1
        return (
            self.out,
            (s[1] + 2 * self.padding - span) // self.stride + 1,
            (s[2] + 2 * self.padding - span) // self.stride + 1,
        )

    def module(self, s: Shape) -> str:
        return (
            f"nn.Conv2d({s[0]}, {self.out}, {self.kernel}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
            f"bias={self.bias})"
        )


@dataclass(frozen=True)
class Norm:
    kind: Literal["batch", "instance", "group"]
    groups: int = 1

    def shape(self, s: Shape) -> Shape:
        return s

    def module(self, s: Shape) -> str:
        if self.kind == "batch":
            return f"nn.BatchNorm2d({s[0]})"
        if self.kind == "instance":
            return f"nn.InstanceNorm2d({s[0]}, affine=True)"
        return f"nn.GroupNorm({self.groups}, {s[0]})"


@dataclass(frozen=True)
class Act:
    kind: Literal["relu", "hardswish", "sigmoid"]

    def shape(self, s: Shape) -> Shape:
        return s

    def module(self, s: Shape) -> str:
        return {"relu": "nn.ReLU()", "hardswish": "nn.Hardswish()", "sigmoid": "nn.Sigmoid()"}[
            self.kind
        ]


@dataclass(frozen=True)
class Pool:
    kind: Literal["max", "avg"]
    kernel: int
    stride: int

    def shape(self, s: Shape) -> Shape:
        return (
            s[0],
            (s[1] - self.kernel) // self.stride + 1,
            (s[2] - self.kernel) // self.stride + 1,
        )

    def module(self, s: Shape) -> str:
        cls = "MaxPool2d" if self.kind == "max" else "AvgPool2d"
        return f"nn.{cls}({self.kernel}, stride={self.stride})"


@dataclass(frozen=True)
class Upsample:
    mode: Literal["nearest", "bilinear"]

    def shape(self, s: Shape) -> Shape:
        return (s[0], 2 * s[1], 2 * s[2])

    def module(self, s: Shape) -> str:
        extra = ", align_corners=False" if self.mode == "bilinear" else ""
        return f"nn.Upsample(scale_factor=2, mode={self.mode!r}{extra})"


@dataclass(frozen=True)
class PixelShuffle:
    def shape(self, s: Shape) -> Shape:
        return (s[0] // 4, 2 * s[1], 2 * s[2])

    def module(self, s: Shape) -> str:
        return "nn.PixelShuffle(2)"


@dataclass(frozen=True)
class ReflectPad:
    pad: int

    def shape(self, s: Shape) -> Shape:
        return (s[0], s[1] + 2 * self.pad, s[2] + 2 * self.pad)

    def module(self, s: Shape) -> str:
        return f"nn.ReflectionPad2d({self.pad})"


@dataclass(frozen=True)
class Residual:
    """``x + body(x)``: the body keeps the shape."""

    body: tuple[Layer, ...]

    def shape(self, s: Shape) -> Shape:
        return s


@dataclass(frozen=True)
class Concat:
    """``cat([left(x), right(x)], dim=1)``: both branches keep the spatial size."""

    left: tuple[Layer, ...]
    right: tuple[Layer, ...]

    def shape(self, s: Shape) -> Shape:
        return (chain_shape(self.left, s)[0] + chain_shape(self.right, s)[0], s[1], s[2])


Layer = Conv | Norm | Act | Pool | Upsample | PixelShuffle | ReflectPad | Residual | Concat


@dataclass(frozen=True)
class PruneSpec:
    """One-shot magnitude pruning: ``scheme`` at ``compression`` (``scheme_from_options``),
    ``fallback`` for the layers the scheme cannot take."""

    scheme: str
    compression: float
    fallback: str | None = None
    skip_first_conv: bool = False


@dataclass(frozen=True)
class ModelSpec:
    """A model: ``layers`` on a ``(1, *in_shape)`` input, then (``head``) a global average
    pool and a linear layer to ``head`` features; pruned with ``prune``; weights from
    ``seed``."""

    in_shape: Shape
    layers: tuple[Layer, ...]
    head: int | None
    prune: PruneSpec | None
    seed: int = 0

    @property
    def out_shape(self) -> tuple[int, ...]:
        if self.head is not None:
            return (1, self.head)
        return (1, *chain_shape(self.layers, self.in_shape))


def chain_shape(layers: tuple[Layer, ...], s: Shape) -> Shape:
    for layer in layers:
        s = layer.shape(s)
    return s


# ---------------------------------------------------------------------------------- render


def _render_chain(
    layers: tuple[Layer, ...], s: Shape, var: str, prefix: str, init: list[str], fwd: list[str]
) -> Shape:
    """Append the module definitions and forward lines of ``layers`` applied to ``var``."""
    for i, layer in enumerate(layers):
        name = f"{prefix}{i}"
        if isinstance(layer, Residual):
            fwd.append(f"{name} = {var}")
            _render_chain(layer.body, s, name, f"{name}_", init, fwd)
            fwd.append(f"{var} = {var} + {name}")
        elif isinstance(layer, Concat):
            fwd += [f"{name}a = {var}", f"{name}b = {var}"]
            _render_chain(layer.left, s, f"{name}a", f"{name}a", init, fwd)
            _render_chain(layer.right, s, f"{name}b", f"{name}b", init, fwd)
            fwd.append(f"{var} = torch.cat([{name}a, {name}b], dim=1)")
        else:
            init.append(f"self.{name} = {layer.module(s)}")
            fwd.append(f"{var} = self.{name}({var})")
        s = layer.shape(s)
    return s


def render(spec: ModelSpec) -> str:
    """The model as a self-contained PyTorch script: ``Model``, ``build()`` (seeded weights,
    random BatchNorm statistics, the pruning) and the example input ``x``."""
    init: list[str] = []
    fwd: list[str] = []
    s = _render_chain(spec.layers, spec.in_shape, "x", "l", init, fwd)
    if spec.head is not None:
        init.append(f"self.head = nn.Linear({s[0]}, {spec.head})")
        fwd += ["x = x.mean(dim=(2, 3))", "x = self.head(x)"]
    lines = [
        "import torch",
        "from torch import nn",
        "",
        "from patsparse.pruning import MagnitudePruner",
        "from patsparse.schemes import PruningPlan, scheme_from_options",
        "",
        "",
        "class Model(nn.Module):",
        "    def __init__(self):",
        "        super().__init__()",
        *[f"        {line}" for line in init],
        "",
        "    def forward(self, x):",
        *[f"        {line}" for line in fwd],
        "        return x",
        "",
        "",
        "def build():",
        f"    torch.manual_seed({spec.seed})",
        "    model = Model().eval()",
        "    for m in model.modules():",
        "        if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)):",
        "            nn.init.uniform_(m.weight, 0.5, 1.5)",
        "            nn.init.uniform_(m.bias, -0.5, 0.5)",
        "        if isinstance(m, nn.BatchNorm2d):",
        "            m.running_mean.uniform_(-0.5, 0.5)",
        "            m.running_var.uniform_(0.5, 2.0)",
    ]
    p = spec.prune
    if p is not None:
        fallback = (
            f"scheme_from_options({p.fallback!r}, {p.compression!r}, fixed_rate='ignore')"
            if p.fallback
            else "None"
        )
        lines += [
            "    plan = PruningPlan(",
            f"        default=scheme_from_options({p.scheme!r}, {p.compression!r}, "
            "fixed_rate='ignore'),",
            f"        fallback={fallback},",
            f"        skip_first_conv={p.skip_first_conv},",
            "        skip_last_linear=False,",
            "    )",
            "    pruner = MagnitudePruner(plan)",
            "    pruner.prepare(model)",
            "    pruner.step()",
            "    pruner.squash_mask()",
        ]
    lines += [
        "    return model.eval()",
        "",
        "",
        f"x = torch.randn(1, {', '.join(map(str, spec.in_shape))}, "
        "generator=torch.Generator().manual_seed(0))",
        "",
    ]
    return "\n".join(lines)


def build(spec: ModelSpec) -> tuple[nn.Module, torch.Tensor]:
    """The model and input that :func:`render`'s script defines (by running that script)."""
    namespace: dict[str, Any] = {}
    exec(compile(render(spec), f"<random model {spec.seed}>", "exec"), namespace)
    return namespace["build"](), namespace["x"]


class Models(nn.Module):
    """Several models on one input: one export, one compile (the per-build overhead is paid
    once); returns every model's output."""

    def __init__(self, models: list[nn.Module]) -> None:
        super().__init__()
        self.models = nn.ModuleList(models)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(m(x) for m in self.models)


# ------------------------------------------------------------------------------- strategies


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def _conv(
    draw: st.DrawFn,
    s: Shape,
    *,
    keep_size: bool = False,
    out: int | None = None,
) -> Conv:
    """A conv valid on ``s``; ``keep_size``: stride 1 and 'same' padding (odd kernel);
    ``out``: that many output channels."""
    c, h, w = s
    dilation = draw(st.sampled_from([1, 1, 2, 3]))
    if keep_size:
        kernel = draw(st.sampled_from([1, 3, 3, 5, 7, 9]))
        stride, padding = 1, dilation * (kernel - 1) // 2
    else:
        kernel = draw(st.integers(1, 9))
        stride = draw(st.sampled_from([1, 1, 2]))
        padding = draw(st.integers(0, dilation * (kernel - 1) // 2 + 1))
        while dilation * (kernel - 1) + 1 > min(h, w) + 2 * padding:
            if dilation > 1:
                dilation -= 1
            else:
                kernel -= 1
    groups_kind = draw(st.sampled_from(["dense", "dense", "depthwise", "grouped"]))
    if out is None:
        out = draw(st.integers(1, MAX_CHANNELS))
    groups = 1
    if groups_kind == "depthwise" and out % c == 0:
        groups = c
    elif groups_kind == "grouped":
        common = [g for g in _divisors(math.gcd(c, out)) if g > 1]
        groups = draw(st.sampled_from(common)) if common else 1
    return Conv(out, kernel, stride, padding, dilation, groups, draw(st.booleans()))


@st.composite
def _norm(draw: st.DrawFn, s: Shape) -> Norm:
    kind = draw(st.sampled_from(["batch", "batch", "instance", "group"]))
    # instance/group statistics over a single value are 0/0 in float32 rounding: skip them
    if kind != "batch" and s[1] * s[2] < 4:
        kind = "batch"
    groups = draw(st.sampled_from(_divisors(s[0]))) if kind == "group" else 1
    return Norm(kind, groups)  # type: ignore[arg-type]


#: Hard-swish and residual adds after grouped convs and pools found two ScheduleLeftovers
#: build failures ("Buffer T_add_intermediate / pool_avg_intermediate is used before its
#: definition"), e.g. nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.Hardswish())
#: on 1x8x12x12; fixed in 840c62d (inline_all reverse-inlines only a sole consumer).
ACTIVATIONS = ("relu", "hardswish", "sigmoid")


@st.composite
def _act(draw: st.DrawFn) -> Act:
    return Act(draw(st.sampled_from(ACTIVATIONS)))  # type: ignore[arg-type]


@st.composite
def _same_shape_chain(draw: st.DrawFn, s: Shape, *, out: int | None, depth: int) -> tuple:
    """Layers keeping the spatial size; the last conv maps to ``out`` channels if given."""
    layers: list[Layer] = []
    cur = s
    for _ in range(draw(st.integers(0, depth))):
        kind = draw(st.sampled_from(["conv", "norm", "act"]))
        layer: Layer
        if kind == "conv":
            layer = draw(_conv(cur, keep_size=True, out=out if out is not None else cur[0]))
        elif kind == "norm":
            layer = draw(_norm(cur))
        else:
            layer = draw(_act())
        layers.append(layer)
        cur = layer.shape(cur)
    if out is not None and cur[0] != out:
        layers.append(draw(_conv(cur, keep_size=True, out=out)))
    elif out is None and cur[0] != s[0]:
        layers.append(draw(_conv(cur, keep_size=True, out=s[0])))
    return tuple(layers)


@st.composite
def _layer(draw: st.DrawFn, s: Shape) -> Layer:
    c, h, w = s
    kinds = ["conv", "conv", "conv", "norm", "act", "act", "residual", "concat"]
    if min(h, w) >= 2:
        kinds.append("pool")
    if max(h, w) <= MAX_SIZE // 2:
        kinds.append("upsample")
        if c % 4 == 0:  # rare conditions: weighted up
            kinds += ["shuffle"] * 4
    if min(h, w) >= 2 and max(h, w) <= MAX_SIZE - 2:
        kinds.append("pad")
    kind = draw(st.sampled_from(kinds))
    if kind == "conv":
        return draw(_conv(s))
    if kind == "norm":
        return draw(_norm(s))
    if kind == "act":
        return draw(_act())
    if kind == "pool":
        kernel = draw(st.integers(2, min(3, h, w)))
        return Pool(draw(st.sampled_from(["max", "avg"])), kernel, draw(st.integers(1, kernel)))
    if kind == "upsample":
        return Upsample(draw(st.sampled_from(["nearest", "bilinear"])))
    if kind == "shuffle":
        return PixelShuffle()
    if kind == "pad":
        return ReflectPad(draw(st.integers(1, min(h, w) - 1)))
    if kind == "residual":
        body = draw(_same_shape_chain(s, out=None, depth=3))
        return Residual(body or (draw(_conv(s, keep_size=True, out=c)),))
    left_out = draw(st.integers(1, MAX_CHANNELS // 2))
    right_out = draw(st.integers(1, MAX_CHANNELS // 2))
    return Concat(
        draw(_same_shape_chain(s, out=left_out, depth=2)),
        draw(_same_shape_chain(s, out=right_out, depth=2)),
    )


PRUNE_SCHEMES = (
    "pattern",
    "connectivity",
    "pattern+connectivity",
    "block-pattern",
    "filter",
    "channel",
    "column",
    "block",
    "unstructured",
)


@st.composite
def prune_specs(draw: st.DrawFn) -> PruneSpec | None:
    if draw(st.integers(0, 9)) == 0:
        return None  # dense
    scheme = draw(st.sampled_from(PRUNE_SCHEMES))
    # the pattern schemes keep at most 4 of 9 weights (compression >= 2.25)
    rates = [2.5, 4.0, 8.0] if "pattern" in scheme else [1.5, 2.0, 4.0, 8.0]
    return PruneSpec(
        scheme=scheme,
        compression=draw(st.sampled_from(rates)),
        fallback=draw(st.sampled_from([None, "connectivity", "block", "filter"])),
        skip_first_conv=draw(st.booleans()),
    )


@st.composite
def model_specs(
    draw: st.DrawFn, in_shape: Shape | None = None, *, max_layers: int = 5
) -> ModelSpec:
    """A random :class:`ModelSpec` (on ``in_shape`` if given)."""
    if in_shape is None:
        in_shape = (
            draw(st.integers(1, 4)),
            draw(st.integers(5, MAX_SIZE)),
            draw(st.integers(5, MAX_SIZE)),
        )
    layers: list[Layer] = []
    s = in_shape
    for _ in range(draw(st.integers(1, max_layers))):
        layer = draw(_layer(s))
        nxt = layer.shape(s)
        if nxt[0] > MAX_CHANNELS or max(nxt[1:]) > MAX_SIZE or min(nxt[1:]) < 1:
            continue
        layers.append(layer)
        s = nxt
    if not layers:  # every draw overflowed: one 1x1 conv
        layers.append(Conv(s[0], 1))
    head = draw(st.sampled_from([None, None, 3, 10]))
    return ModelSpec(in_shape, tuple(layers), head, draw(prune_specs()), draw(st.integers(0, 9999)))


@st.composite
def model_batches(draw: st.DrawFn, *, size: int) -> list[ModelSpec]:
    """``size`` models on one input shape (each shrinks on its own)."""
    in_shape = (
        draw(st.integers(1, 4)),
        draw(st.integers(5, MAX_SIZE)),
        draw(st.integers(5, MAX_SIZE)),
    )
    return draw(st.lists(model_specs(in_shape), min_size=size, max_size=size))
