"""Relax pass: a strided transposed conv becomes phase convs over the low-resolution input.

TVM 0.27 legalises ``relax.nn.conv2d_transpose`` as a dense conv over the input dilated with
zeros (``stride**2`` times the work, 20x slower than PyTorch for ``ConvTranspose2d(64, 32,
4, 2, 1)`` at 64x64 on two threads). This pass rewrites each one with a constant weight into
a zero pad of the input, the ``stride**2`` phase convs of
:mod:`tvm_ext.te.conv2d_transpose_phases` (each with only its own taps, scheduled by the
``conv`` rule of :mod:`tvm_ext.schedules.leftovers`) and an interleave (one injective
function the bias add fuses into). Where it belongs: before legalisation on
CPU targets; :func:`tvm_ext.pipeline.backend_passes` places it. Transposed convs it does not
take (grouped, dilated, non-NCHW, a weight that is not a constant, stride 1) stay as they
were; :attr:`Conv2DTransposeAsPhases.records` says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm_ext._compat import IRConstant, relax, tvm
from tvm_ext.relax_match import dtype_of, is_op, static_shape
from tvm_ext.te.conv2d_transpose_phases import (
    PhaseAxis,
    interleave_phases,
    pad_input,
    phase_conv,
    phase_weight,
)


@dataclass(frozen=True)
class TransposedConvRecord:
    """What the pass did with one ``conv2d_transpose``."""

    shape: tuple[int, ...]  # the weight's (C_in, C_out, kh, kw)
    rewritten: bool
    reason: str


def _plan(call: relax.Call) -> tuple[PhaseAxis, PhaseAxis] | str:
    """The two axes of an eligible transposed conv, or why it is not taken."""
    attrs = call.attrs
    x, w = call.args
    if not isinstance(w, IRConstant):
        return "weight is not a constant"
    xs, ws, out = static_shape(x), static_shape(w), static_shape(call)
    if xs is None or ws is None or out is None or len(xs) != 4:
        return "shapes are not static NCHW"
    if dtype_of(x) != "float32" or dtype_of(w) != "float32" or dtype_of(call) != "float32":
        return "only float32 is handled"
    if (str(attrs.data_layout), str(attrs.kernel_layout)) != ("NCHW", "IOHW"):
        return f"layout {attrs.data_layout}/{attrs.kernel_layout} (NCHW/IOHW only)"
    if str(attrs.out_layout or "NCHW") != "NCHW":
        return f"output layout {attrs.out_layout}"
    if int(attrs.groups) != 1 or any(int(d) != 1 for d in attrs.dilation):
        return "grouped or dilated"
    strides = [int(s) for s in attrs.strides]
    if max(strides) < 2:
        return "stride 1 (an ordinary conv)"
    pad = [int(p) for p in attrs.padding]
    h, w = (
        PhaseAxis(strides[d], int(ws[2 + d]), pad[d], int(xs[2 + d]), int(out[2 + d]))
        for d in range(2)
    )
    if any(a.taps(q) == 0 for a in (h, w) for q in range(a.stride)):
        return "a kernel shorter than its stride (output phases without taps)"
    return h, w


@relax.expr_functor.mutator
class _Rewriter(relax.expr_functor.PyExprMutator):
    def __init__(self, mod: tvm.IRModule) -> None:
        super().__init__(mod)
        self.mod_ = mod
        self.records: list[TransposedConvRecord] = []

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        if not is_op(call, "relax.nn.conv2d_transpose"):
            return super().visit_call_(call)
        plan = _plan(call)
        shape = tuple(static_shape(call.args[1]) or ())
        if isinstance(plan, str):
            self.records.append(TransposedConvRecord(shape, False, plan))
            return super().visit_call_(call)
        h, w = plan
        weight = call.args[1].value.numpy()
        x = self.visit_expr(call.args[0])
        padded = self.builder_.emit(
            self.builder_.call_te(
                lambda a: pad_input(a, h, w), x, primfunc_name_hint="conv2d_transpose_pad"
            )
        )
        phases = []
        for ph in range(h.stride):
            for pw in range(w.stride):
                kernel = relax.const(phase_weight(weight, h, w, ph, pw))
                phases.append(
                    self.builder_.emit(
                        self.builder_.call_te(
                            lambda a, k, ph=ph, pw=pw: phase_conv(a, k, h, w, ph, pw),
                            padded,
                            kernel,
                            primfunc_name_hint=f"conv2d_transpose_phase{ph}{pw}",
                        )
                    )
                )
        self.records.append(TransposedConvRecord(shape, True, "rewritten"))
        return self.builder_.call_te(
            lambda ys: interleave_phases(ys, h, w),
            phases,
            primfunc_name_hint="conv2d_transpose_interleave",
        )

    def run(self) -> tvm.IRModule:
        for gv, func in self.mod_.functions_items():
            if isinstance(func, relax.Function):
                self.builder_.update_func(gv, self.visit_expr(func))
        return self.builder_.get()


@tvm.transform.module_pass(opt_level=0, name="Conv2DTransposeAsPhases")
class Conv2DTransposeAsPhases:
    """Rewrite eligible transposed convs as phase convs (see the module docstring)."""

    def __init__(self) -> None:
        self.records: list[TransposedConvRecord] = []

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        rewriter = _Rewriter(mod)
        out = rewriter.run()
        self.records = rewriter.records
        return out
