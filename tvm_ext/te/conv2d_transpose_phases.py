"""A stride-``s`` transposed conv as ``s*s`` phase convs over the low-resolution input.

TVM legalises ``conv2d_transpose`` by dilating the input with ``s - 1`` zeros between pixels
and running a dense conv over it: ``s*s`` times the multiply-adds, most of them by zero. Each
output pixel ``o = s*i + ph`` (per axis) takes only the taps ``k = r + s*t`` with
``r = (ph + p) % s``, reading input pixel ``i + (ph + p) // s - t`` (``p`` the leading
padding). So the layer is ``s*s`` ordinary convs over the zero-padded input, phase ``ph``
with ``ceil((k - r) / s)`` taps per axis (a 3x3 kernel at stride 2: 2x2, 2x1, 1x2 and 1x1
taps, 9 in all), then an interleave of their outputs into the full-resolution map.

:func:`phase_weight` lays out one phase's weights (numpy, at compile time);
:func:`pad_input`, :func:`phase_conv` and :func:`interleave_phases` are the TE computes
(separate functions: the pad and the interleave are injective copies, each phase conv a
plain reduction the ``conv`` leftover rule tiles).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tvm_ext._compat import te, tirx


@dataclass(frozen=True)
class PhaseAxis:
    """One spatial axis of the transposed conv: what each output phase reads."""

    stride: int
    kernel: int
    pad: int  # leading padding of the transposed conv
    size_in: int
    size_out: int

    def first_tap(self, phase: int) -> int:
        """The kernel tap of the phase's first input pixel (``r``)."""
        return (phase + self.pad) % self.stride

    def shift(self, phase: int) -> int:
        """Input pixel of the phase's output ``i``, first tap, minus ``i`` (``c``)."""
        return (phase + self.pad) // self.stride

    def taps(self, phase: int) -> int:
        """Taps of the phase (``ceil((kernel - r) / stride)``; 0 where the kernel is
        shorter than the stride and the phase gets none)."""
        return max(0, -(-(self.kernel - self.first_tap(phase)) // self.stride))

    @property
    def size_phase(self) -> int:
        """Output pixels per phase (``ceil(size_out / stride)``)."""
        return -(-self.size_out // self.stride)

    @property
    def pad_lo(self) -> int:
        """Zeros before the input so that every tap's input index is at least 0."""
        return max(0, *(self.taps(q) - 1 - self.shift(q) for q in range(self.stride)))

    @property
    def size_padded(self) -> int:
        shift_max = max(self.shift(q) for q in range(self.stride))
        return self.pad_lo + max(self.size_in, self.size_phase + shift_max)


def phase_weight(weight: np.ndarray, h: PhaseAxis, w: PhaseAxis, ph: int, pw: int) -> np.ndarray:
    """The ``(C_out, C_in, taps_h, taps_w)`` conv weights of output phase ``(ph, pw)`` from
    ``(C_in, C_out, kh, kw)`` transposed-conv weights."""
    rows = [h.first_tap(ph) + h.stride * t for t in range(h.taps(ph))]
    cols = [w.first_tap(pw) + w.stride * t for t in range(w.taps(pw))]
    return np.ascontiguousarray(weight[:, :, rows][:, :, :, cols].transpose(1, 0, 2, 3))


def pad_input(x: te.Tensor, h: PhaseAxis, w: PhaseAxis) -> te.Tensor:
    """``x`` with the zeros every phase's taps reach (:attr:`PhaseAxis.pad_lo` before)."""
    n, c_in, size_h, size_w = (int(d) for d in x.shape)
    return te.compute(
        (n, c_in, h.size_padded, w.size_padded),
        lambda b, c, y, z: tirx.if_then_else(
            tirx.all(y >= h.pad_lo, y < h.pad_lo + size_h, z >= w.pad_lo, z < w.pad_lo + size_w),
            x[b, c, y - h.pad_lo, z - w.pad_lo],
            tirx.const(0.0, x.dtype),
        ),
        name="phase_pad",
    )


def phase_conv(
    padded: te.Tensor, kernel: te.Tensor, h: PhaseAxis, w: PhaseAxis, ph: int, pw: int
) -> te.Tensor:
    """Output phase ``(ph, pw)``: ``(N, C_out, ceil(H_out/s_h), ceil(W_out/s_w))``."""
    n, c_in = int(padded.shape[0]), int(padded.shape[1])
    c_out, _, t_h, t_w = (int(d) for d in kernel.shape)
    ci = te.reduce_axis((0, c_in), name="ci")
    th = te.reduce_axis((0, t_h), name="th")
    tw = te.reduce_axis((0, t_w), name="tw")
    top = h.shift(ph) + h.pad_lo
    left = w.shift(pw) + w.pad_lo
    return te.compute(
        (n, c_out, h.size_phase, w.size_phase),
        lambda b, co, i, j: te.sum(
            padded[b, ci, i + top - th, j + left - tw] * kernel[co, ci, th, tw],
            axis=[ci, th, tw],
        ),
        name="phase_conv",
    )


def interleave_phases(phases: list[te.Tensor], h: PhaseAxis, w: PhaseAxis) -> te.Tensor:
    """The phase convs' outputs (row-major over ``(ph, pw)``) as the full-resolution
    ``(N, C_out, H_out, W_out)`` map."""
    n, c_out = int(phases[0].shape[0]), int(phases[0].shape[1])

    def body(b, co, oy, ox):  # type: ignore[no-untyped-def]
        i, j = oy // h.stride, ox // w.stride
        value = phases[-1][b, co, i, j]
        for index in range(len(phases) - 2, -1, -1):
            ph, pw = divmod(index, w.stride)
            value = tirx.if_then_else(
                tirx.all(oy % h.stride == ph, ox % w.stride == pw),
                phases[index][b, co, i, j],
                value,
            )
        return value

    return te.compute((n, c_out, h.size_out, w.size_out), body, name="phase_interleave")
