"""What the chained norm kernel computes: an instance or group norm reading a block conv's
chained output in place, with the affine, a residual add and a ReLU fused, writing the next
layer's input.

The input is the conv's :class:`~tvm_ext.te.conv_spec.BlockedActivation` (its rows of lanes,
in its filter order): the norm is per channel (per group of channels), so it runs in that
order, its gamma and beta permuted to the positions at compile time, every statistic a
vector of lanes. Stages:

- ``nm_stats``: sums of ``v`` and ``v * v`` over chunks of the map's rows, per position
  (the chunks run in parallel; TVM's own legalisation takes the same one-pass ``E[v^2] -
  E[v]^2`` variance);
- ``nm_moments`` (chunks summed), ``nm_group`` (a group norm: the sums of the group's
  positions, through a table), ``nm_affine``: per position ``scale = gamma / sqrt(var +
  eps)`` and ``shift = beta - mean * scale``;
- ``nm_out``: ``v * scale + shift``, the residual added and ReLU (either order), written
  either as a chained buffer for the next block-layout conv (:class:`NormOutput`: the same
  rows of lanes with a border of zeros, of the map mirrored as ``torch.nn.ReflectionPad2d``
  or of its edge, and optionally nearest-upsampled: the consumer's pad and upsampling
  become index arithmetic here, and the consumer reads the buffer in place) or as NCHW
  (gathered through ``inverse``). An upsampled output with a residual first stores the
  values at the input's resolution (``nm_value``), each computed once.

Positions no channel maps to (the lanes filling the last row) get gamma = beta = 0 (zeros
out, without a residual) and are never read. ``tvm_ext.passes.ChainConvLayouts`` builds
these kernels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tvm_ext._compat import te, tirx
from tvm_ext.te.conv_spec import PAD_MODES, BlockedActivation

STATS_BLOCK, MOMENTS_BLOCK, GROUP_BLOCK = "nm_stats", "nm_moments", "nm_group"
AFFINE_BLOCK, VALUE_BLOCK, OUT_BLOCK = "nm_affine", "nm_value", "nm_out"
#: at most this many chunks of rows per map in ``nm_stats`` (a divisor of the height): with
#: one row of lanes (16 channels) the chunks are what runs in parallel
STAT_CHUNKS = 8


@dataclass(frozen=True)
class NormOutput:
    """A chained output: ``(N, rows, H * upsample + 2 * border, W * upsample + 2 * border,
    lanes)``, the border filled by ``pad_mode`` (:data:`~tvm_ext.te.conv_spec.PAD_MODES`)."""

    border: int = 0
    pad_mode: str = "zeros"
    upsample: int = 1

    def __post_init__(self) -> None:
        if self.border < 0:
            raise ValueError(f"border must be >= 0, got {self.border}")
        if self.pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {self.pad_mode!r}")
        if not isinstance(self.upsample, int) or self.upsample < 1:
            raise ValueError(f"upsample must be an int >= 1, got {self.upsample!r}")


@dataclass(frozen=True)
class ChainedNorm:
    """One chained norm kernel.

    ``in_shape``: the logical NCHW input; ``in_layout``: how it is stored. ``group_size``:
    channels per group (1: an instance norm; more: a group norm, whose groups are given by a
    ``(positions, group_size)`` table of positions). ``residual``: a tensor added after the
    affine, NCHW (``residual_layout`` None) or chained, read through a per-position index.
    ``out``: :class:`NormOutput`, or ``None`` for NCHW.
    """

    in_shape: tuple[int, int, int, int]
    in_layout: BlockedActivation
    epsilon: float
    group_size: int = 1
    relu: bool = False
    residual: bool = False
    residual_layout: BlockedActivation | None = None
    out: NormOutput | None = None
    #: ReLU, then the residual add (default: the add, then ReLU)
    relu_first: bool = False

    def __post_init__(self) -> None:
        if self.group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {self.group_size}")
        if self.residual_layout is not None and not self.residual:
            raise ValueError("residual_layout given without a residual")
        if self.out is not None and self.out.pad_mode == "reflect":
            _, _, h, w = self.in_shape
            s, b = self.out.upsample, self.out.border
            if b >= h * s or b >= w * s:
                raise ValueError(
                    f"a mirrored border of {b} needs a map larger than it, got "
                    f"{h * s}x{w * s} (as torch.nn.ReflectionPad2d requires)"
                )

    @property
    def positions(self) -> int:
        return self.in_layout.rows * self.in_layout.lanes

    def out_shape(self) -> tuple[int, ...]:
        n, c, h, w = self.in_shape
        if self.out is None:
            return (n, c, h, w)
        s = self.out.upsample
        return BlockedActivation(self.in_layout.rows, self.in_layout.lanes, self.out.border).shape(
            n, h * s, w * s
        )


def stat_chunks(height: int) -> int:
    """Chunks of rows ``nm_stats`` sums separately: the largest divisor of ``height`` up to
    :data:`STAT_CHUNKS`."""
    return max(d for d in range(1, min(height, STAT_CHUNKS) + 1) if height % d == 0)


def norm_placeholders(spec: ChainedNorm, dtype: str = "float32") -> list[te.Tensor]:
    """Inputs in call order: ``x, gamma, beta[, members][, residual, residual_index][,
    inverse]``."""
    n, c, h, w = spec.in_shape
    lay, p = spec.in_layout, spec.positions
    out = [
        te.placeholder(lay.shape(n, h, w), dtype, name="x"),
        te.placeholder((p,), dtype, name="gamma"),
        te.placeholder((p,), dtype, name="beta"),
    ]
    if spec.group_size > 1:
        out.append(te.placeholder((p, spec.group_size), "int32", name="members"))
    if spec.residual:
        rl = spec.residual_layout
        r_shape = (n, c, h, w) if rl is None else rl.shape(n, h, w)
        out.append(te.placeholder(r_shape, dtype, name="residual"))
        out.append(te.placeholder((p,), "int32", name="residual_index"))
    if spec.out is None:
        out.append(te.placeholder((c,), "int32", name="inverse"))
    return out


def _mirror(i: Any, size: int, mode: str) -> Any:
    """Index ``i`` of a padded axis (``-border <= i < size + border``) into the map."""
    if mode == "reflect":  # -1 reads 1, size reads size - 2: branch-free
        return (size - 1) - te.abs((size - 1) - te.abs(i))
    return te.max(te.min(i, size - 1), 0)  # edge; zeros use it as a safe index too


def norm_compute(inputs: Sequence[te.Tensor], spec: ChainedNorm) -> te.Tensor:
    """The kernel's output (:meth:`ChainedNorm.out_shape`) from :func:`norm_placeholders`."""
    items = list(inputs)
    x, gamma, beta = items.pop(0), items.pop(0), items.pop(0)
    members = items.pop(0) if spec.group_size > 1 else None
    residual, res_index = (items.pop(0), items.pop(0)) if spec.residual else (None, None)
    inverse = items.pop(0) if spec.out is None else None
    dtype = str(x.dtype)
    n, c, h, w = spec.in_shape
    lanes, b, p = spec.in_layout.lanes, spec.in_layout.border, spec.positions
    chunks = stat_chunks(h)
    rows_per = h // chunks
    zero = tirx.const(0.0, dtype)

    ry = te.reduce_axis((0, rows_per), name="ry")
    rx = te.reduce_axis((0, w), name="rx")

    def stats(a: Any, row: Any, k: Any, j: Any, lane: Any) -> Any:
        v = x[a, row, k * rows_per + ry + b, rx + b, lane]
        return te.sum(tirx.Select(j == 0, v, v * v), axis=[ry, rx])

    part = te.compute((n, spec.in_layout.rows, chunks, 2, lanes), stats, name=STATS_BLOCK)
    rk = te.reduce_axis((0, chunks), name="rk")
    total = te.compute(
        (n, 2, p),
        lambda a, j, q: te.sum(part[a, q // lanes, rk, j, q % lanes], axis=rk),
        name=MOMENTS_BLOCK,
    )
    if members is not None:
        rm = te.reduce_axis((0, spec.group_size), name="rm")
        per_pos = total
        total = te.compute(
            (n, 2, p),
            lambda a, j, q: te.sum(per_pos[a, j, members[q, rm]], axis=rm),
            name=GROUP_BLOCK,
        )
    count = float(spec.group_size * h * w)

    def affine(a: Any, j: Any, q: Any) -> Any:
        mean = total[a, 0, q] / count
        var = te.max(total[a, 1, q] / count - mean * mean, zero)
        scale = gamma[q] / te.sqrt(var + tirx.const(spec.epsilon, dtype))
        return tirx.Select(j == 0, scale, beta[q] - mean * scale)

    coef = te.compute((n, 2, p), affine, name=AFFINE_BLOCK)
    rl = spec.residual_layout

    def value(a: Any, q: Any, y: Any, z: Any) -> Any:
        v = x[a, q // lanes, y + b, z + b, q % lanes] * coef[a, 0, q] + coef[a, 1, q]
        if spec.relu and spec.relu_first:
            v = te.max(v, zero)
        if residual is not None and res_index is not None:
            r = res_index[q]
            if rl is None:
                v = v + residual[a, r, y, z]
            else:
                v = v + residual[a, r // rl.lanes, y + rl.border, z + rl.border, r % rl.lanes]
        return te.max(v, zero) if spec.relu and not spec.relu_first else v

    if spec.out is None:
        assert inverse is not None
        return te.compute(
            (n, c, h, w), lambda a, ch, y, z: value(a, inverse[ch], y, z), name=OUT_BLOCK
        )
    o = spec.out
    s, ob = o.upsample, o.border
    hs, ws = h * s, w * s
    read = value
    if s > 1 and residual is not None:  # each value once, not once per upsampled pixel
        rows = spec.in_layout.rows
        stored = te.compute(
            (n, rows, h, w, lanes),
            lambda a, row, y, z, lane: value(a, row * lanes + lane, y, z),
            name=VALUE_BLOCK,
        )

        def stored_value(a: Any, q: Any, y: Any, z: Any) -> Any:
            return stored[a, q // lanes, y, z, q % lanes]

        read = stored_value

    def chained(a: Any, row: Any, yb: Any, zb: Any, lane: Any) -> Any:
        y, z = _mirror(yb - ob, hs, o.pad_mode), _mirror(zb - ob, ws, o.pad_mode)
        v = read(a, row * lanes + lane, y // s, z // s)
        if o.pad_mode != "zeros" or ob == 0:
            return v
        inside = te.all(yb >= ob, yb < hs + ob, zb >= ob, zb < ws + ob)
        return te.if_then_else(inside, v, zero)

    return te.compute(spec.out_shape(), chained, name=OUT_BLOCK)


def norm_te(spec: ChainedNorm) -> list[te.Tensor]:
    """Placeholders and output, for ``te.create_prim_func``."""
    ins = norm_placeholders(spec)
    return [*ins, norm_compute(ins, spec)]
