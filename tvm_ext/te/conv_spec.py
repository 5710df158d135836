"""What one pattern-sparse conv kernel computes: input geometry, how activations are stored
(NCHW or chained), and the epilogue fused after the convolution."""

from __future__ import annotations

from dataclasses import dataclass

from tvm_ext.layout import SparseConvLayout

#: how a conv's padding is filled (:attr:`ConvGeometry.pad_mode`): zeros, the input mirrored
#: without repeating its edge (``torch.nn.ReflectionPad2d``), or its edge repeated
#: (``torch.nn.ReplicationPad2d``)
PAD_MODES = ("zeros", "reflect", "replicate")


@dataclass(frozen=True)
class BlockedActivation:
    """A chained activation: ``(N, rows, H + 2 * border, W + 2 * border, lanes)``.

    Channel ``c`` of the logical NCHW tensor lives at position ``p = inverse[c]`` of the layer
    that wrote it, i.e. at ``[:, p // lanes, border + y, border + x, p % lanes]``. The border
    holds what the readers' padding needs: zeros (a conv or depthwise writer), or the map
    mirrored / its edge (a chained norm before convs that absorbed a reflection /
    replication pad). Positions no channel maps to (padding filters) are never read.
    """

    rows: int
    lanes: int
    border: int

    def shape(self, n: int, h: int, w: int) -> tuple[int, int, int, int, int]:
        """The buffer shape for a logical ``(n, *, h, w)`` tensor."""
        b = self.border
        return (n, self.rows, h + 2 * b, w + 2 * b, self.lanes)


@dataclass(frozen=True)
class ConvGeometry:
    """Input shape, stride, padding (top, left, bottom, right) and dilation of an NCHW conv.

    ``in_shape`` is always the logical NCHW shape; ``in_layout`` says how the input is stored
    (``None``: NCHW, padded by the ``ps_pad`` stage; else a chained buffer whose border covers
    the padding, read in place). Kernel tap ``(dy, dx)`` reads the padded input
    ``(dy * dh, dx * dw)`` from the output pixel's corner (:meth:`dilate`).

    Absorbed neighbours (NCHW input only, read by the ``ps_pad`` stage): ``pad_mode`` fills
    the padding with zeros, the mirrored or the replicated input (a reflection / replication
    pad before the conv); ``upsample`` ``s > 1`` means the stored input is the logical one
    before a nearest upsampling by ``s`` (:meth:`source_shape`; logical pixel ``(y, x)`` is
    stored pixel ``(y // s, x // s)``), so the upsampled tensor is never written.
    """

    in_shape: tuple[int, int, int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]
    kernel: tuple[int, int] = (3, 3)
    in_layout: BlockedActivation | None = None
    dilation: tuple[int, int] = (1, 1)
    pad_mode: str = "zeros"
    upsample: int = 1

    def __post_init__(self) -> None:
        if self.pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {self.pad_mode!r}")
        if not isinstance(self.upsample, int) or self.upsample < 1:
            raise ValueError(f"upsample must be an int >= 1, got {self.upsample!r}")
        if self.in_layout is not None and (self.pad_mode != "zeros" or self.upsample > 1):
            raise ValueError(
                "a chained input is read in place: its writer filled the border and did any "
                "upsampling; use an NCHW input (in_layout=None) for pad_mode / upsample"
            )
        _, _, h, w = self.in_shape
        s = self.upsample
        if h % s or w % s:
            raise ValueError(
                f"input {h}x{w} is not a nearest upsampling by {s}: both sides must be "
                "multiples of the factor"
            )
        pt, pl, pb, pr = self.padding
        if self.pad_mode == "reflect" and (max(pt, pb) >= h or max(pl, pr) >= w):
            raise ValueError(
                f"reflection padding {self.padding} must be smaller than the input {h}x{w} "
                "(as torch.nn.ReflectionPad2d requires)"
            )

    @property
    def source_shape(self) -> tuple[int, int, int, int]:
        """Shape of the stored NCHW input: ``in_shape`` before the nearest upsampling."""
        n, c, h, w = self.in_shape
        return n, c, h // self.upsample, w // self.upsample

    @property
    def absorbs(self) -> bool:
        """The ``ps_pad`` stage does more than zero padding (mode or upsampling)."""
        return self.pad_mode != "zeros" or self.upsample > 1

    @property
    def span(self) -> tuple[int, int]:
        """Rows and columns of padded input one output pixel reads (the dilated kernel)."""
        (kh, kw), (dh, dw) = self.kernel, self.dilation
        return dh * (kh - 1) + 1, dw * (kw - 1) + 1

    @property
    def out_hw(self) -> tuple[int, int]:
        _, _, h, w = self.in_shape
        pt, pl, pb, pr = self.padding
        sh, sw = self.stride
        rh, rw = self.span
        return (h + pt + pb - rh) // sh + 1, (w + pl + pr - rw) // sw + 1

    def dilate(self, tap: tuple[int, int]) -> tuple[int, int]:
        """Kernel tap ``(dy, dx)`` as an offset into the padded input: times the dilation."""
        return tap[0] * self.dilation[0], tap[1] * self.dilation[1]


@dataclass(frozen=True)
class Epilogue:
    """What the kernel fuses after the convolution, and how it writes the output.

    ``out_border``: ``None`` writes NCHW (the filter reorder undone); an int writes the
    chained layout with this zero border: rows and lanes of the conv's own layout, or with
    ``planar`` one row per output channel in the original order (lanes 1: NCHW with a border,
    the filter reorder undone).
    ``pool``: a max pool with window = stride = ``pool`` after ReLU (1: none).
    ``residual_layout``: how the residual is stored (``None``: NCHW).
    """

    bias: bool = False
    residual: bool = False
    relu: bool = False
    out_border: int | None = None
    planar: bool = False
    pool: int = 1
    residual_layout: BlockedActivation | None = None

    @property
    def chained(self) -> bool:
        """The output keeps the conv's own rows of lanes (no gather, no ``inverse``)."""
        return self.out_border is not None and not self.planar

    @property
    def residual_index(self) -> bool:
        """The residual is read through an index array (output or residual is chained)."""
        return self.residual and (self.chained or self.residual_layout is not None)

    def out_activation(self, layout: SparseConvLayout) -> BlockedActivation | None:
        """How the output is stored (``None``: NCHW)."""
        if self.out_border is None:
            return None
        if self.planar:
            return BlockedActivation(layout.shape[0], 1, self.out_border)
        return BlockedActivation(layout.rows, layout.block, self.out_border)

    def out_shape(
        self, n: int, k: int, oh: int, ow: int, layout: SparseConvLayout
    ) -> tuple[int, ...]:
        """Shape of the output buffer for a conv with ``(n, k, oh, ow)`` output."""
        ph, pw = (oh - self.pool) // self.pool + 1, (ow - self.pool) // self.pool + 1
        act = self.out_activation(layout)
        return (n, k, ph, pw) if act is None else act.shape(n, ph, pw)
