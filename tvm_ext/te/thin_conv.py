"""A thin pruned conv (fewer output channels than half a vector) over its kept columns only.

A conv's weight seen as a GEMM has one column per (input channel, tap). Block, column and
unstructured pruning leave many columns zero in every filter of a thin conv (3 output
channels of a style-transfer or colorization tail), but the ``conv`` leftover rule that runs
thin convs (vectorised over output pixels) multiplies all of them. Here the reduction runs
over the kept columns only: ``out[n, o, y, x] = sum_k w[o, k] * in[n, chan[k], y * sh +
dy[k], x * sw + dx[k]]``, the column tables (:func:`kept_columns`) passed as constant int32
arrays, so the inner loop is still one contiguous input row per column (vectorised over
``x`` by the ``conv`` rule) and a zero column costs nothing.

The input stage reads a reflection / replication / zero pad and a nearest upsampling
in place of their own functions (:func:`tvm_ext.te.conv_stages.padded_read`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tvm_ext._compat import te
from tvm_ext.te.conv_spec import ConvGeometry
from tvm_ext.te.conv_stages import padded_read


@dataclass(frozen=True)
class KeptColumns:
    """The columns of a conv weight that some filter keeps: ``weight`` ``(K, columns)``, and
    per column its input channel and (dilated) tap offset into the padded input."""

    weight: np.ndarray
    channel: np.ndarray
    dy: np.ndarray
    dx: np.ndarray

    @property
    def count(self) -> int:
        return int(self.channel.shape[0])

    def arrays(self) -> list[np.ndarray]:
        """The kernel's constant arguments after the input, in :func:`thin_conv`'s order."""
        return [self.weight, self.channel, self.dy, self.dx]


def kept_columns(weight: np.ndarray, geometry: ConvGeometry) -> KeptColumns:
    """The (channel, tap) columns non-zero in some filter of ``weight`` (K, C, kh, kw), taps
    outer, channels inner."""
    w = np.asarray(weight, dtype=np.float32)
    _, c, kh, kw = (int(d) for d in w.shape)
    kept = (w != 0).any(axis=0)  # (C, kh, kw)
    cols = [
        (ch, ty, tx) for ty in range(kh) for tx in range(kw) for ch in range(c) if kept[ch, ty, tx]
    ]
    if not cols:
        cols = [(0, 0, 0)]  # an all-zero weight: one zero column keeps the shapes valid
    ch_arr = np.array([col[0] for col in cols], dtype=np.int32)
    taps = [geometry.dilate((col[1], col[2])) for col in cols]
    return KeptColumns(
        weight=np.ascontiguousarray(np.stack([w[:, ch, ty, tx] for ch, ty, tx in cols], axis=1)),
        channel=ch_arr,
        dy=np.array([t[0] for t in taps], dtype=np.int32),
        dx=np.array([t[1] for t in taps], dtype=np.int32),
    )


def thin_conv(
    x: te.Tensor,
    weight: te.Tensor,
    channel: te.Tensor,
    dy: te.Tensor,
    dx: te.Tensor,
    geometry: ConvGeometry,
) -> te.Tensor:
    """``(N, K, H_out, W_out)``: the conv over the kept columns of :func:`kept_columns`
    (``x`` the stored NCHW input: before the pad / upsampling ``geometry`` absorbs)."""
    n, c, h, w = geometry.in_shape
    pt, pl, pb, pr = geometry.padding
    if any(geometry.padding) or geometry.absorbs:
        xp = te.compute((n, c, h + pt + pb, w + pl + pr), padded_read(x, geometry), name="thin_pad")
    else:
        xp = x
    k_out, columns = (int(d) for d in weight.shape)
    oh, ow = geometry.out_hw
    sh, sw = geometry.stride
    col = te.reduce_axis((0, columns), name="col")
    return te.compute(
        (n, k_out, oh, ow),
        lambda a, o, i, j: te.sum(
            weight[o, col] * xp[a, channel[col], i * sh + dy[col], j * sw + dx[col]], axis=col
        ),
        name="thin_conv",
    )
