"""Numpy reference operators that the rewriting passes verify their kernels against.

Plain and slow but obviously right: a conv is a sum of shifted input windows times the
kernel's taps, computed with BLAS (``tensordot``) one tap at a time. No torch, so
``tvm_ext`` stands alone.
"""

from __future__ import annotations

import numpy as np


def conv2d_nchw(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int, int, int] = (0, 0, 0, 0),
    dilation: tuple[int, int] = (1, 1),
    groups: int = 1,
    pad_mode: str = "zeros",
    upsample: int = 1,
) -> np.ndarray:
    """``(N, C, H, W) * (K, C/groups, R, S)`` cross-correlation, as ``torch.nn.functional.conv2d``.

    ``padding`` is (top, left, bottom, right), filled as :func:`pad_nchw` ``pad_mode`` does;
    ``upsample > 1``: ``x`` is first upsampled (:func:`upsample_nearest`), as a nearest
    ``torch.nn.Upsample`` before the conv.
    """
    n, c, _, _ = x.shape
    k, cg, r, s = weight.shape
    if c != cg * groups or k % groups:
        raise ValueError(
            f"conv2d_nchw: input has {c} channels, weight {tuple(weight.shape)} "
            f"with groups={groups}"
        )
    xp = pad_nchw(upsample_nearest(x.astype(np.float64), upsample), padding, pad_mode)
    sh, sw = stride
    dh, dw = dilation
    oh = (xp.shape[2] - dh * (r - 1) - 1) // sh + 1
    ow = (xp.shape[3] - dw * (s - 1) - 1) // sw + 1
    kg = k // groups
    out = np.zeros((n, k, oh, ow), np.float64)
    w64 = weight.astype(np.float64)
    for g in range(groups):
        xs = xp[:, g * cg : (g + 1) * cg]
        ws = w64[g * kg : (g + 1) * kg]
        for i in range(r):
            for j in range(s):
                win = xs[
                    :,
                    :,
                    i * dh : i * dh + sh * (oh - 1) + 1 : sh,
                    j * dw : j * dw + sw * (ow - 1) + 1 : sw,
                ]
                # (kg, cg) x (n, cg, oh, ow) -> (kg, n, oh, ow)
                out[:, g * kg : (g + 1) * kg] += np.tensordot(
                    ws[:, :, i, j], win, axes=([1], [1])
                ).transpose(1, 0, 2, 3)
    if bias is not None:
        out += bias.reshape(1, k, 1, 1)
    return out.astype(np.float32)


#: :func:`pad_nchw` modes -> numpy's names
_NUMPY_PAD = {"zeros": "constant", "reflect": "reflect", "replicate": "edge"}


def pad_nchw(x: np.ndarray, padding: tuple[int, int, int, int], mode: str = "zeros") -> np.ndarray:
    """``x`` padded by (top, left, bottom, right): zeros, the mirrored input without its edge
    (``reflect``, ``torch.nn.ReflectionPad2d``) or the edge repeated (``replicate``)."""
    if mode not in _NUMPY_PAD:
        raise ValueError(f"pad mode must be one of {tuple(_NUMPY_PAD)}, got {mode!r}")
    pt, pl, pb, pr = padding
    return np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), mode=_NUMPY_PAD[mode])  # type: ignore[call-overload]


def upsample_nearest(x: np.ndarray, factor: int) -> np.ndarray:
    """Nearest upsampling of an NCHW array by an integer ``factor`` (each pixel repeated
    ``factor`` x ``factor`` times, as ``torch.nn.Upsample(scale_factor=factor)``)."""
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"upsample factor must be an int >= 1, got {factor!r}")
    if factor == 1:
        return x
    return x.repeat(factor, axis=2).repeat(factor, axis=3)
