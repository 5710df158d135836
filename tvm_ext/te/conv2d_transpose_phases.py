"""A stride-``s`` transposed conv as ``s*s`` phase convs over the low-resolution input.

TVM legalises ``conv2d_transpose`` by dilating the input with ``s - 1`` zeros between pixels
and running a dense conv over it: ``s*s`` times the multiply-adds, most of them by zero. Each
output pixel ``o = s*i + ph`` (per axis) takes only the taps ``k = r + s*t`` with
``r = (ph + p) % s``, reading input pixel ``i + (ph + p) // s - t`` (``p`` the leading
padding). So the layer is ``s*s`` ordinary convs with ``ceil(k/s)`` taps per axis, one per
output phase, stacked here as the channels of one conv (``q = (ph_h*s_w + ph_w)*C_out + co``),
then interleaved into the full-resolution map (a pixel-shuffle-like copy). Taps past the
kernel (``k`` not a multiple of ``s``) get zero weights.

:func:`phase_weight` lays out the weights (numpy, at compile time); :func:`phase_conv` and
:func:`interleave_phases` are the two TE computes (two functions, so the phase conv is a
plain reduction the ``conv`` leftover rule tiles, and the interleave an injective copy that
the following bias add fuses into).
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

    @property
    def taps(self) -> int:
        """Taps per phase (``ceil(kernel / stride)``)."""
        return -(-self.kernel // self.stride)

    @property
    def size_phase(self) -> int:
        """Output pixels per phase (``ceil(size_out / stride)``)."""
        return -(-self.size_out // self.stride)

    @property
    def pad_lo(self) -> int:
        """Zeros before the input so that every tap index is at least 0."""
        return max(0, self.taps - 1 - self.pad // self.stride)

    @property
    def size_padded(self) -> int:
        shift_max = (self.stride - 1 + self.pad) // self.stride
        return self.pad_lo + max(self.size_in, self.size_phase + shift_max)


def phase_weight(weight: np.ndarray, h: PhaseAxis, w: PhaseAxis) -> np.ndarray:
    """``(C_in, C_out, kh, kw)`` transposed-conv weights as ``(s_h*s_w*C_out, C_in, t_h, t_w)``
    phase-conv weights (zeros where a phase has fewer taps)."""
    c_in, c_out = weight.shape[:2]
    out = np.zeros((h.stride * w.stride * c_out, c_in, h.taps, w.taps), weight.dtype)
    for ph in range(h.stride):
        for pw in range(w.stride):
            base = (ph * w.stride + pw) * c_out
            for th in range(h.taps):
                kh = (ph + h.pad) % h.stride + h.stride * th
                for tw in range(w.taps):
                    kw = (pw + w.pad) % w.stride + w.stride * tw
                    if kh < h.kernel and kw < w.kernel:
                        out[base : base + c_out, :, th, tw] = weight[:, :, kh, kw].T
    return out


def phase_conv(x: te.Tensor, kernel: te.Tensor, h: PhaseAxis, w: PhaseAxis) -> te.Tensor:
    """The phase convs: ``(N, s_h*s_w*C_out, ceil(H_out/s_h), ceil(W_out/s_w))``."""
    n, c_in, size_h, size_w = (int(d) for d in x.shape)
    phases_out, _, t_h, t_w = (int(d) for d in kernel.shape)
    c_out = phases_out // (h.stride * w.stride)
    padded = te.compute(
        (n, c_in, h.size_padded, w.size_padded),
        lambda b, c, y, z: tirx.if_then_else(
            tirx.all(y >= h.pad_lo, y < h.pad_lo + size_h, z >= w.pad_lo, z < w.pad_lo + size_w),
            x[b, c, y - h.pad_lo, z - w.pad_lo],
            tirx.const(0.0, x.dtype),
        ),
        name="phase_pad",
    )
    ci = te.reduce_axis((0, c_in), name="ci")
    th = te.reduce_axis((0, t_h), name="th")
    tw = te.reduce_axis((0, t_w), name="tw")

    def body(b, q, i, j):  # type: ignore[no-untyped-def]
        shift_h = (q // (w.stride * c_out) + h.pad) // h.stride + h.pad_lo
        shift_w = ((q // c_out) % w.stride + w.pad) // w.stride + w.pad_lo
        return te.sum(
            padded[b, ci, i + shift_h - th, j + shift_w - tw] * kernel[q, ci, th, tw],
            axis=[ci, th, tw],
        )

    return te.compute((n, phases_out, h.size_phase, w.size_phase), body, name="phase_conv")


def interleave_phases(y: te.Tensor, h: PhaseAxis, w: PhaseAxis) -> te.Tensor:
    """The phase convs' output as the full-resolution ``(N, C_out, H_out, W_out)`` map."""
    n, phases_out = int(y.shape[0]), int(y.shape[1])
    c_out = phases_out // (h.stride * w.stride)
    return te.compute(
        (n, c_out, h.size_out, w.size_out),
        lambda b, co, oy, ox: y[
            b,
            ((oy % h.stride) * w.stride + ox % w.stride) * c_out + co,
            oy // h.stride,
            ox // w.stride,
        ],
        name="phase_interleave",
    )
