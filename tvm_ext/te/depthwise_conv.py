"""TE compute of a depthwise 3x3 convolution (``groups == channels``, one filter per channel)
with a fused epilogue (bias, residual, ReLU / ReLU6 or any clip).

Two ways to vectorise, picked per layer by :func:`plan_depthwise` (both NCHW in and out;
:mod:`tvm_ext.schedules.depthwise` schedules them):

- ``rows`` (stride 1, output rows of 14 or more): each channel on its own, vectorised over
  the output width. Stages ``dw_pad`` (the channel's zero-padded plane, its rows rounded up
  to whole vectors) and ``dw_conv`` (taps unrolled,
  epilogue included, written straight to the output). The taps are Python constants (the
  union of the layer's kept taps: all 9 when dense, the shared pattern when every channel
  keeps the same one), or, where channels keep different patterns, a fixed number of slots
  per channel whose tap offsets come from two ``int32`` tables (``dy``, ``dx``; a
  pattern-pruned layer computes 4 taps instead of 9).
- ``channels`` (strided convs, narrow rows): blocks of ``lanes`` channels vectorised over
  the block's channels (NCHWc inside the kernel). ``dw_pack`` transposes the
  zero-padded input to ``(N, C / lanes, H, W, lanes)`` once, ``dw_conv`` reads every tap as
  one whole vector whatever the stride (the union of kept taps unrolled), ``dw_epilogue``
  writes NCHW. A strided conv read along the width would need strided vector loads.

Inputs in call order: ``x, w[, dy, dx][, bias][, residual]`` (:func:`depthwise_arguments`
gives the constant ``w``, ``dy``, ``dx`` for a weight; :func:`depthwise_weight` the inverse).

Chained (:class:`DepthwiseChain`, built by ``tvm_ext.passes.ChainConvLayouts``): the
``channels`` kernel reads its input as the block conv before it wrote it
(:class:`~tvm_ext.te.conv_spec.BlockedActivation`, that conv's rows of lanes in its filter
order: the depthwise conv is per channel, so it runs in the same order, its weights permuted
at compile time), optionally clipped as it is read (the ReLU6 between them), and writes its
output in the same rows of lanes with a zero border for the next conv: no transpose in,
no gather out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from tvm_ext._compat import te, tirx
from tvm_ext.te.conv_spec import BlockedActivation

PAD_BLOCK, PACK_BLOCK = "dw_pad", "dw_pack"
CONV_BLOCK, EPILOGUE_BLOCK = "dw_conv", "dw_epilogue"
#: annotations of the ``dw_conv`` block for the schedule: the conv's ``[stride_h, stride_w]``,
#: and 1 where tap offsets come from the ``dy``/``dx`` tables
STRIDE_ATTR, TABLE_ATTR = "patsparse.depthwise_stride", "patsparse.depthwise_table"

Strategy = Literal["rows", "channels"]
STRATEGIES: tuple[str, ...] = ("auto", "rows", "channels")

#: Cost of one table-driven tap (offsets read from ``dy``/``dx``) relative to a constant one
#: on the ``rows`` kernel: measured 1.0-1.4x from 14x14 to 112x112 (x86 AVX-512), so a
#: pattern-pruned layer (4 slots x 1.4 < 9 taps) runs its own patterns, a dense one does not.
TABLE_TAP_COST = 1.4


@dataclass(frozen=True)
class DepthwiseEpilogue:
    """What runs after the conv: ``+ bias[c]``, ``+ residual``, then ``clip`` (``(0, inf)``
    for ReLU, ``(0, 6)`` for ReLU6; ``None``: no activation)."""

    bias: bool = False
    residual: bool = False
    clip: tuple[float, float] | None = None


@dataclass(frozen=True)
class DepthwisePlan:
    """How one depthwise 3x3 conv is computed.

    ``taps``: the kernel taps ``(dy, dx)`` computed for every channel (Python constants), or
    ``None`` with ``slots`` taps per channel read from the ``dy``/``dx`` tables. ``lanes``:
    the block of channels (``channels``) or the pad stage's width unit (``rows``).
    """

    in_shape: tuple[int, int, int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]
    strategy: Strategy
    lanes: int
    taps: tuple[tuple[int, int], ...] | None
    slots: int

    @property
    def out_hw(self) -> tuple[int, int]:
        _, _, h, w = self.in_shape
        pt, pl, pb, pr = self.padding
        sh, sw = self.stride
        return (h + pt + pb - 3) // sh + 1, (w + pl + pr - 3) // sw + 1

    @property
    def padded_hw(self) -> tuple[int, int]:
        _, _, h, w = self.in_shape
        pt, pl, pb, pr = self.padding
        return h + pt + pb, w + pl + pr

    @property
    def blocks(self) -> int:
        """Channel blocks of the ``channels`` kernel (the last one padded with zero lanes)."""
        return -(-self.in_shape[1] // self.lanes)

    @property
    def table(self) -> bool:
        """Tap offsets read from ``dy``/``dx`` (channels keep different patterns)."""
        return self.taps is None


@dataclass(frozen=True)
class DepthwiseChain:
    """How a chained ``channels`` kernel stores its activations. ``in_layout``: the input as a
    chained buffer read in place (its border covers the padding; ``None``: NCHW, padded by
    ``dw_pack``); ``in_clip``: a clip (containing 0, so the border stays zero) applied to the
    input as it is read; the output is ``(N, blocks, OH + 2 * out_border, OW + 2 * out_border,
    lanes)`` with a zero border. The plan's channels are then positions (``blocks * lanes``
    with a chained input) and ``bias`` has one value per position."""

    in_layout: BlockedActivation | None = None
    in_clip: tuple[float, float] | None = None
    out_border: int = 0

    def __post_init__(self) -> None:
        if self.in_clip is not None and not self.in_clip[0] <= 0.0 <= self.in_clip[1]:
            raise ValueError(f"in_clip {self.in_clip} must contain 0 (the border stays zero)")
        if self.out_border < 0:
            raise ValueError(f"out_border must be >= 0, got {self.out_border}")


def kept_taps(weight: np.ndarray) -> list[tuple[int, int]]:
    """The taps ``(dy, dx)`` that some channel of a ``(C, 1, 3, 3)`` weight keeps."""
    keep = (weight.reshape(-1, 3, 3) != 0).any(axis=0)
    return [(int(r), int(s)) for r, s in zip(*np.nonzero(keep), strict=True)]


#: narrowest output row the ``rows`` kernel takes in ``auto`` (below, its row is vectors of
#: 4 + 2 + 1 lanes: the ``channels`` kernel measured 1.2-1.6x faster at 7x7)
ROWS_MIN_WIDTH = 14


def plan_depthwise(
    weight: np.ndarray,
    in_shape: tuple[int, int, int, int],
    stride: tuple[int, int],
    padding: tuple[int, int, int, int],
    *,
    lanes: int = 16,
    strategy: str = "auto",
) -> DepthwisePlan:
    """The plan for a ``(C, 1, 3, 3)`` weight. On ``rows`` a layer whose channels keep
    different taps reads them from tables when that is estimated cheaper than the union of
    kept taps (:data:`TABLE_TAP_COST`); ``channels`` computes the union.

    ``auto``: ``rows`` at stride 1 for output rows of :data:`ROWS_MIN_WIDTH` or more, else
    ``channels`` (measured on x86 AVX-512, ``benchmarks/depthwise.py``: ``rows`` 1.3-2x
    faster from 28x28 to 112x112 and a tie at 14x14 dense, 1.2-2x faster pruned; strided,
    ``channels`` up to 1.8x faster dense and a tie pruned, as ``rows`` reads strided
    vectors)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    union = kept_taps(weight)
    per_channel = int((weight.reshape(weight.shape[0], 9) != 0).sum(axis=1).max())
    plan = DepthwisePlan(in_shape, stride, padding, "rows", lanes, tuple(union), len(union))
    rows = strategy == "rows" or (
        strategy == "auto" and tuple(stride) == (1, 1) and plan.out_hw[1] >= ROWS_MIN_WIDTH
    )
    if not rows:
        return dataclasses.replace(plan, strategy="channels")
    if per_channel * TABLE_TAP_COST < len(union):
        return dataclasses.replace(plan, taps=None, slots=per_channel)
    return plan


def depthwise_arguments(plan: DepthwisePlan, weight: np.ndarray) -> list[np.ndarray]:
    """The constant inputs after ``x``: the weights (``rows``: ``(C, slots)``; ``channels``:
    ``(C / lanes, slots, lanes)``, zero lanes past ``C``) and, for a table plan, each
    channel's tap rows ``dy`` and columns ``dx`` (``(C, slots)`` int32; unused slots: weight
    0 at tap (0, 0))."""
    c = weight.shape[0]
    w9 = weight.reshape(c, 3, 3).astype(np.float32)
    if plan.taps is not None:
        values = np.stack([w9[:, r, s] for r, s in plan.taps], axis=1).reshape(c, plan.slots)
        if plan.strategy == "rows":
            return [np.ascontiguousarray(values)]
        padded = np.zeros((plan.blocks * plan.lanes, plan.slots), np.float32)
        padded[:c] = values
        blocked = padded.reshape(plan.blocks, plan.lanes, plan.slots).transpose(0, 2, 1)
        return [np.ascontiguousarray(blocked)]
    values = np.zeros((c, plan.slots), np.float32)
    dy = np.zeros((c, plan.slots), np.int32)
    dx = np.zeros((c, plan.slots), np.int32)
    for ch in range(c):
        rows, cols = np.nonzero(w9[ch])
        n = len(rows)
        values[ch, :n] = w9[ch, rows, cols]
        dy[ch, :n], dx[ch, :n] = rows, cols
    return [values, dy, dx]


def depthwise_weight(plan: DepthwisePlan, arrays: Sequence[np.ndarray]) -> np.ndarray:
    """The ``(C, 1, 3, 3)`` weight behind :func:`depthwise_arguments` (its inverse)."""
    c = plan.in_shape[1]
    w9 = np.zeros((c, 3, 3), np.float32)
    if plan.taps is None:
        values, dy, dx = arrays
        for j in range(plan.slots):
            np.add.at(w9, (np.arange(c), dy[:, j], dx[:, j]), values[:, j])
    else:
        values = arrays[0]
        if plan.strategy == "channels":
            values = values.transpose(0, 2, 1).reshape(plan.blocks * plan.lanes, plan.slots)[:c]
        for j, (r, s) in enumerate(plan.taps):
            w9[:, r, s] = values[:, j]
    return w9.reshape(c, 1, 3, 3)


def depthwise_placeholders(
    plan: DepthwisePlan,
    epilogue: DepthwiseEpilogue,
    *,
    dtype: str = "float32",
    chain: DepthwiseChain | None = None,
) -> list[te.Tensor]:
    """Inputs in call order: ``x, w[, dy, dx][, bias][, residual]``."""
    n, c, h, wd = plan.in_shape
    oh, ow = plan.out_hw
    w_shape = (c, plan.slots) if plan.strategy == "rows" else (plan.blocks, plan.slots, plan.lanes)
    x_shape: tuple[int, ...] = plan.in_shape
    if chain is not None:
        _check_chain(plan, epilogue, chain)
        if chain.in_layout is not None:
            x_shape = chain.in_layout.shape(n, h, wd)
    out = [te.placeholder(x_shape, dtype, name="x"), te.placeholder(w_shape, dtype, name="w")]
    if plan.table:
        out += [te.placeholder((c, plan.slots), "int32", name=name) for name in ("dy", "dx")]
    if epilogue.bias:
        bias_len = c if chain is None else plan.blocks * plan.lanes
        out.append(te.placeholder((bias_len,), dtype, name="bias"))
    if epilogue.residual:
        out.append(te.placeholder((n, c, oh, ow), dtype, name="residual"))
    return out


def _check_chain(plan: DepthwisePlan, epilogue: DepthwiseEpilogue, chain: DepthwiseChain) -> None:
    if plan.strategy != "channels":
        raise ValueError("a chained depthwise kernel uses the 'channels' strategy")
    if epilogue.residual:
        raise ValueError("a chained depthwise kernel fuses no residual")
    lay = chain.in_layout
    if lay is not None:
        if (lay.rows, lay.lanes) != (plan.blocks, plan.lanes):
            raise ValueError(
                f"chained input of {lay.rows} rows x {lay.lanes} lanes does not match the "
                f"plan's {plan.blocks} blocks x {plan.lanes} lanes"
            )
        if max(plan.padding) > lay.border:
            raise ValueError(
                f"padding {plan.padding} needs a border >= {max(plan.padding)}, "
                f"the chained input has {lay.border}"
            )


def depthwise_compute(
    inputs: Sequence[te.Tensor],
    plan: DepthwisePlan,
    epilogue: DepthwiseEpilogue,
    chain: DepthwiseChain | None = None,
) -> te.Tensor:
    """The kernel's output ``(N, C, OH, OW)`` (chained: :class:`DepthwiseChain`'s buffer) from
    inputs in :func:`depthwise_placeholders` order."""
    items = list(inputs)
    x, w = items.pop(0), items.pop(0)
    dy, dx = (items.pop(0), items.pop(0)) if plan.table else (None, None)
    bias = items.pop(0) if epilogue.bias else None
    residual = items.pop(0) if epilogue.residual else None
    dtype = str(x.dtype)

    def finish(acc: Any, n: Any, c: Any, y: Any, z: Any) -> Any:
        if bias is not None:
            acc = acc + bias[c]
        if residual is not None:
            acc = acc + residual[n, c, y, z]
        if epilogue.clip is not None:
            lo, hi = epilogue.clip
            acc = tirx.max(acc, tirx.const(lo, dtype))
            if np.isfinite(hi):
                acc = tirx.min(acc, tirx.const(hi, dtype))
        return acc

    if chain is not None:
        _check_chain(plan, epilogue, chain)
        return _chained(x, w, plan, chain, finish)
    if plan.strategy == "rows":
        return _rows(x, w, dy, dx, plan, finish)
    return _channels(x, w, plan, finish)


def depthwise_te(
    plan: DepthwisePlan, epilogue: DepthwiseEpilogue, chain: DepthwiseChain | None = None
) -> list[te.Tensor]:
    """Placeholders and output, for ``te.create_prim_func``."""
    ins = depthwise_placeholders(plan, epilogue, chain=chain)
    return [*ins, depthwise_compute(ins, plan, epilogue, chain)]


def _padded(x: te.Tensor, plan: DepthwisePlan, n: Any, c: Any, h: Any, w: Any) -> Any:
    """``x`` zero-padded by the plan's padding. Channels past the last (the lanes that fill
    the last block) read the last channel: their weights are zero, and a condition on the
    lane would keep the transpose from being vectorised."""
    _, channels, height, width = plan.in_shape
    pt, pl, _, _ = plan.padding
    if plan.strategy == "channels" and channels % plan.lanes:
        c = tirx.min(c, channels - 1)
    inside = tirx.all(h >= pt, h < height + pt, w >= pl, w < width + pl)
    return tirx.if_then_else(inside, x[n, c, h - pt, w - pl], tirx.const(0.0, x.dtype))


def _rows(
    x: te.Tensor,
    w: te.Tensor,
    dy: te.Tensor | None,
    dx: te.Tensor | None,
    plan: DepthwisePlan,
    finish: Any,
) -> te.Tensor:
    n, c, _, _ = plan.in_shape
    hp, wp = plan.padded_hw
    oh, ow = plan.out_hw
    sh, sw = plan.stride
    pitch = -(-wp // plan.lanes) * plan.lanes  # whole vectors: the pad stage vectorises
    xp = te.compute(
        (n, c, hp, pitch), lambda i, ch, h, col: _padded(x, plan, i, ch, h, col), name=PAD_BLOCK
    )

    def conv(i: Any, ch: Any, y: Any, z: Any) -> Any:
        acc = None
        for j in range(plan.slots):
            if plan.taps is not None:
                r, s = plan.taps[j]
            else:
                assert dy is not None and dx is not None
                r, s = dy[ch, j], dx[ch, j]
            term = xp[i, ch, y * sh + r, z * sw + s] * w[ch, j]
            acc = term if acc is None else acc + term
        if acc is None:  # no kept tap: the epilogue alone
            acc = tirx.const(0.0, x.dtype)
        return finish(acc, i, ch, y, z)

    attrs = {STRIDE_ATTR: [sh, sw], TABLE_ATTR: int(plan.table)}
    return te.compute((n, c, oh, ow), conv, name=CONV_BLOCK, attrs=attrs)


def _channels(
    x: te.Tensor, w: te.Tensor, plan: DepthwisePlan, finish: Any, packed: te.Tensor | None = None
) -> te.Tensor:
    n, c, _, _ = plan.in_shape
    oh, ow = plan.out_hw
    out = _blocked_conv(x, w, plan, packed)
    lanes = plan.lanes
    return te.compute(
        (n, c, oh, ow),
        lambda i, ch, y, z: finish(out[i, ch // lanes, y, z, ch % lanes], i, ch, y, z),
        name=EPILOGUE_BLOCK,
    )


def _blocked_conv(
    x: te.Tensor, w: te.Tensor, plan: DepthwisePlan, packed: te.Tensor | None
) -> te.Tensor:
    """``dw_pack`` (unless given) and ``dw_conv``: ``(N, blocks, OH, OW, lanes)``."""
    n = plan.in_shape[0]
    hp, wp = plan.padded_hw
    oh, ow = plan.out_hw
    sh, sw = plan.stride
    lanes, taps = plan.lanes, plan.taps or ()
    if packed is None:
        packed = te.compute(
            (n, plan.blocks, hp, wp, lanes),
            lambda i, b, h, col, lane: _padded(x, plan, i, b * lanes + lane, h, col),
            name=PACK_BLOCK,
        )

    def conv(i: Any, b: Any, y: Any, z: Any, lane: Any) -> Any:
        acc = None
        for j, (r, s) in enumerate(taps):
            term = packed[i, b, y * sh + r, z * sw + s, lane] * w[b, j, lane]
            acc = term if acc is None else acc + term
        return acc if acc is not None else tirx.const(0.0, x.dtype)

    return te.compute(
        (n, plan.blocks, oh, ow, lanes), conv, name=CONV_BLOCK, attrs={STRIDE_ATTR: [sh, sw]}
    )


def _chained(
    x: te.Tensor, w: te.Tensor, plan: DepthwisePlan, chain: DepthwiseChain, finish: Any
) -> te.Tensor:
    """The ``channels`` kernel on a chained input and/or writing a chained output."""
    n = plan.in_shape[0]
    hp, wp = plan.padded_hw
    oh, ow = plan.out_hw
    pt, pl, _, _ = plan.padding
    lanes, lay, clip = plan.lanes, chain.in_layout, chain.in_clip

    def clipped(v: Any) -> Any:
        if clip is None:
            return v
        v = tirx.max(v, tirx.const(clip[0], x.dtype))
        return tirx.min(v, tirx.const(clip[1], x.dtype)) if np.isfinite(clip[1]) else v

    if lay is not None:
        oy, ox = lay.border - pt, lay.border - pl
        # a copy of the task's band (clipped): the chained border is the zero padding
        packed = te.compute(
            (n, plan.blocks, hp, wp, lanes),
            lambda i, b, y, z, lane: clipped(x[i, b, y + oy, z + ox, lane]),
            name=PACK_BLOCK,
        )
    else:
        packed = te.compute(
            (n, plan.blocks, hp, wp, lanes),
            lambda i, b, y, z, lane: clipped(_padded(x, plan, i, b * lanes + lane, y, z)),
            name=PACK_BLOCK,
        )
    conv = _blocked_conv(x, w, plan, packed)
    bo = chain.out_border

    def body(i: Any, b: Any, yb: Any, zb: Any, lane: Any) -> Any:
        # clamped indices keep the conv region of border pixels inside the conv (what
        # compute_at needs); the border itself is a zero
        y = te.max(te.min(yb - bo, oh - 1), 0)
        z = te.max(te.min(zb - bo, ow - 1), 0)
        value = finish(conv[i, b, y, z, lane], i, b * lanes + lane, y, z)
        inside = te.all(yb >= bo, yb < oh + bo, zb >= bo, zb < ow + bo)
        return te.if_then_else(inside, value, tirx.const(0.0, x.dtype))

    shape = BlockedActivation(plan.blocks, lanes, bo).shape(n, oh, ow)
    return te.compute(shape, body, name=EPILOGUE_BLOCK)
