"""The conv rewriter shared by :class:`~tvm_ext.passes.PatternSparseConv2D` and
:class:`~tvm_ext.passes.BlockedConv2D`: finds eligible ``relax.nn.conv2d`` calls (the
reflection / replication / zero pad and nearest upsampling their input stage takes, the bias
add, residual add and ReLU their epilogue takes), builds each layer's kernel, schedules the new
PrimFuncs (:mod:`tvm_ext.schedules.dispatch`) and, with ``verify``, checks them against the
dense conv (:mod:`tvm_ext.verify`), leaving a mismatching layer dense. One
:class:`LayerRecord` per conv says what happened and why.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from patsparse.core.formats import (
    PatternSparseWeight,
    csr_nbytes,
    dense_nbytes,
    kernel_codes_np,
)
from patsparse.core.patterns import PatternLibrary
from tvm_ext._compat import IRConstant, relax, te, tvm
from tvm_ext.layout import (
    Rejection,
    SparseConvLayout,
    analyze_blocked_weight,
    analyze_conv_weight,
    blocked_macs_per_pixel,
)
from tvm_ext.relax_match import (
    bias_of,
    dtype_of,
    is_op,
    lookup,
    lookup_set,
    nearest_upsample_factor,
    spatial_pad,
    static_shape,
    used_vars,
)
from tvm_ext.schedules.dispatch import schedule_primfuncs
from tvm_ext.tap_layout import TAP_SKIP_RATIO, analyze_tap_sparse_weight, tap_layout_macs
from tvm_ext.targets import vector_lanes
from tvm_ext.te.block_plan import column_taps
from tvm_ext.te.conv_spec import ConvGeometry, Epilogue
from tvm_ext.te.flat_plan import flat_buckets
from tvm_ext.te.pattern_conv import layout_arguments, pattern_conv2d_compute
from tvm_ext.verify import BuiltLayer, failed_layers, verify_layer

FUNC_PREFIX = "pattern_sparse_conv2d"
#: a conv with fewer output channels than half a vector is left to the leftover schedule
#: (vectorised over output pixels) from this many output pixels: measured 2.6x faster than
#: the blocked kernel on a 9x9 32->3 conv at 256² (BENCHMARKS.md); small maps (a 4-filter
#: filter-pruned conv on 8x8 digits) were not measured and keep the blocked kernel
THIN_CONV_MIN_PIXELS = 64 * 64
#: what the rewriter looks for: 3x3 pattern-sparse convs, or any all-or-nothing-kernel conv
PATTERN_MODE, BLOCKED_MODE = "pattern", "blocked"
_PREFIXES = {PATTERN_MODE: FUNC_PREFIX, BLOCKED_MODE: "blocked_conv2d"}


def is_thin_conv(out_channels: int, out_pixels: int, lanes: int) -> bool:
    """A conv the blocked kernel leaves to ThinSparseConv2D / the leftover ``conv`` rule:
    fewer output channels than half a vector, on a map of at least
    :data:`THIN_CONV_MIN_PIXELS` output pixels."""
    return 2 * out_channels < lanes and out_pixels >= THIN_CONV_MIN_PIXELS


@dataclass(frozen=True)
class RewriteOptions:
    """What a conv-rewriting pass (:class:`PatternSparseConv2D`, ``BlockedConv2D``) does."""

    mode: str = PATTERN_MODE
    library: PatternLibrary | None = None
    block: int | None = None
    prefer_blocks: bool = True
    fuse_epilogue: bool = True
    #: absorb a reflection / replication / zero pad and a nearest upsampling before the conv
    #: into the kernel's ``ps_pad`` stage (:func:`_input_source`)
    fuse_input: bool = True
    #: blocked mode: single-tap columns where taps are zero across blocks
    #: (:mod:`tvm_ext.tap_layout`)
    skip_zero_taps: bool = True
    schedule: bool = True
    target: Any = None
    verify: bool = False
    tolerance: float = 1e-4
    #: per-kernel layers: cost of one multiply-add of the flat stages (padding included) in
    #: blocked ones, as
    #: ``((max input channels, cost), ...)`` (the first row whose bound holds; ``0``: no
    #: bound); a layer whose blocked layout (channel unions) needs fewer weighted
    #: multiply-adds is left to BlockedConv2D. ``None``: always per-kernel.
    per_kernel_cost: tuple[tuple[int, float], ...] | None = None
    #: multiplies ``per_kernel_cost`` on strided convs
    per_kernel_stride_factor: float = 1.0
    #: conv index -> reason: layers left dense (set after a failed verification)
    exclude: Mapping[int, str] = field(default_factory=dict)


#: Opaque op pattern: FuseOps leaves the (already scheduled, already fused) kernel alone.
OPAQUE = 8

#: PrimFunc attribute on block-layout kernels: what :class:`ChainConvLayouts` needs to rebuild
#: the kernel with chained layouts (JSON, see :func:`describe_conv`). That pass removes it
#: again (it would change the functions' structural hash, which keys the tuning logs).
CONV_ATTR = "patsparse.conv"


def describe_conv(geometry: ConvGeometry, layout: SparseConvLayout, epilogue: Epilogue) -> str:
    """The JSON of :data:`CONV_ATTR`: geometry, taps per pattern, fused epilogue."""
    return json.dumps(
        {
            "in_shape": list(geometry.in_shape),
            "stride": list(geometry.stride),
            "padding": list(geometry.padding),
            "kernel": list(geometry.kernel),
            "dilation": list(geometry.dilation),
            "pad_mode": geometry.pad_mode,
            "upsample": geometry.upsample,
            "shape": list(layout.shape),
            "block": layout.block,
            # per column of the merged block arrays (block_columns)
            "taps": [[list(t) for t in taps] for taps in column_taps(layout)],
            "bias": epilogue.bias,
            "residual": epilogue.residual,
            "relu": epilogue.relu,
        }
    )


@dataclass
class LayerRecord:
    """What the pass did with one conv2d (JSON-ready through :meth:`to_dict`)."""

    index: int
    var: str
    rewritten: bool
    reason: str
    weight_shape: tuple[int, ...] = ()
    input_shape: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    kind: str = ""
    block: int = 0
    function: str = ""
    fused: tuple[str, ...] = ()
    kept_kernels: int = 0
    kernels: int = 0
    pattern_histogram: dict[int, int] = field(default_factory=dict)
    storage_bytes: dict[str, int] = field(default_factory=dict)
    max_abs_error: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["pattern_histogram"] = {str(k): v for k, v in self.pattern_histogram.items()}
        for key in ("weight_shape", "input_shape", "stride", "padding", "dilation", "fused"):
            d[key] = list(d[key])
        return d


@dataclass(frozen=True)
class InputSource:
    """What a conv's kernel reads: the tensor before the pad / upsampling it absorbs, and how
    its ``ps_pad`` stage rebuilds the conv's input from it."""

    expr: relax.Expr
    geometry: ConvGeometry
    ops: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Chain:
    """A conv2d and the element-wise ops fused after it (original Relax objects)."""

    conv: relax.Call
    bias: Any | None
    residual: relax.Expr | None
    relu: bool
    ops: tuple[str, ...]


@relax.expr_functor.mutator
class _Rewriter(relax.expr_functor.PyExprMutator):
    """Rewrites the eligible convs of every Relax function of ``mod`` (:meth:`run`); records
    one :class:`LayerRecord` per conv and, per rewritten one, what verification needs."""

    def __init__(self, mod: tvm.IRModule, options: RewriteOptions) -> None:
        super().__init__(mod)
        self.mod_ = mod
        self.options = options
        self.records: list[LayerRecord] = []
        self.chains: dict[Any, _Chain] = {}
        self.absorbed: set[Any] = set()
        self.new_funcs: list[tvm.ir.GlobalVar] = []
        #: block-layout kernels: their :data:`CONV_ATTR`
        self.descriptions: dict[str, str] = {}
        self.conv_index: dict[Any, int] = {}
        self.var2val: Mapping[Any, Any] = {}
        self.layouts: dict[Any, SparseConvLayout | Rejection] = {}
        #: per rewritten conv index: what verification needs
        self.built: dict[int, BuiltLayer] = {}

    def run(self) -> tvm.IRModule:
        """The module with the eligible convs rewritten; the new PrimFuncs are marked opaque
        (block ones also described, :data:`CONV_ATTR`), not scheduled."""
        for gv, func in self.mod_.functions_items():
            if isinstance(func, relax.Function):
                self.chains, self.absorbed, self.conv_index = {}, set(), {}
                self._plan_chains(func)  # numbers the convs even if nothing is fused
                new = self.visit_expr(func)
                new = relax.analysis.remove_all_unused(new)
                self.builder_.update_func(gv, new)
        mod = self.builder_.get()
        for gv in self.new_funcs:
            func = mod[gv].with_attr("op_pattern", OPAQUE)
            if gv.name_hint in self.descriptions:
                func = func.with_attr(CONV_ATTR, self.descriptions[gv.name_hint])
            mod[gv] = func
        return mod

    # -- analysis of the original function --------------------------------------------
    def _plan_chains(self, func: relax.Function) -> None:
        """Number the convs; for each rewritable one, the element-wise ops its kernel absorbs
        (:data:`chains`, keyed by the last op's value)."""
        var2val = relax.analysis.get_var2val(func)
        self.var2val = var2val
        uses, users = _use_counts(func, var2val)
        claimed: set[Any] = set()
        for var, value in var2val.items():
            if not is_op(value, "relax.nn.conv2d"):
                continue
            self.conv_index[value] = len(self.conv_index)
            if not self.options.fuse_epilogue or not self._rewritable(value):
                continue
            chain, end, path = _follow_chain(var, value, var2val, uses, users, claimed)
            if chain is not None:
                self.chains[var2val[end]] = chain
                self.absorbed.add(value)
                claimed.update(path)

    def _layout(self, conv: relax.Call) -> SparseConvLayout | Rejection:
        """Eligibility and layout of a conv, computed once per conv."""
        cached = lookup(self.layouts, conv)
        if cached is not None:
            return cached
        index = lookup(self.conv_index, conv)
        reason = conv_eligibility(conv, self.options.mode) or self.options.exclude.get(index)
        result = Rejection(reason) if reason is not None else self._analyze(conv)
        self.layouts[conv] = result
        return result

    def _analyze(self, conv: relax.Call) -> SparseConvLayout | Rejection:
        """The layout of an eligible conv's weight in the options' mode."""
        weight = conv.args[1].value.numpy()
        if self.options.mode == BLOCKED_MODE:
            lanes = self.options.block or vector_lanes(self.options.target)
            pixels = int(np.prod(conv_geometry(conv, weight).out_hw))
            if is_thin_conv(int(weight.shape[0]), pixels, lanes):
                return Rejection(
                    f"thin conv: {weight.shape[0]} output channels would fill "
                    f"{weight.shape[0]} of {lanes} lanes; left to ThinSparseConv2D (pruned: "
                    "kept columns only) and the leftover conv schedule, vectorised over "
                    "output pixels"
                )
            whole = analyze_blocked_weight(weight, block=self.options.block)
            return _skip_zero_taps(weight, whole) if self.options.skip_zero_taps else whole
        result = analyze_conv_weight(
            weight,
            library=self.options.library,
            block=self.options.block,
            prefer_blocks=self.options.prefer_blocks,
        )
        if isinstance(result, SparseConvLayout) and result.kind == "kernel":
            strided = any(int(v) > 1 for v in conv.attrs.strides)
            result = self._cheaper_as_blocks(weight, result, strided=strided)
        return result

    def _cheaper_as_blocks(
        self, weight: np.ndarray, layout: SparseConvLayout, *, strided: bool
    ) -> SparseConvLayout | Rejection:
        """Keep a per-kernel layout unless the blocked kernel is estimated faster."""
        table = self.options.per_kernel_cost
        if table is None:
            return layout
        channels = int(weight.shape[1])
        cost = next((c for bound, c in table if not bound or channels <= bound), table[-1][1])
        if strided:
            cost *= self.options.per_kernel_stride_factor
        blocked = blocked_macs_per_pixel(weight, block=self.options.block)
        if blocked is None:
            return layout
        macs = flat_buckets(layout).macs_per_pixel()  # what the flat stages compute
        if blocked <= cost * macs:
            return Rejection(
                f"per-kernel patterns estimated slower than the blocked kernel over channel "
                f"unions ({macs} multiply-adds per pixel x cost {cost:g} "
                f">= {blocked}): left to BlockedConv2D (per_kernel_cost=None forces "
                "per-kernel code)"
            )
        return layout

    def _rewritable(self, conv: relax.Call) -> bool:
        return isinstance(self._layout(conv), SparseConvLayout)

    # -- rewriting --------------------------------------------------------------------
    def visit_call_(self, call: relax.Call) -> relax.Expr:
        chain = lookup(self.chains, call)
        if chain is not None:
            out = self._rewrite(chain.conv, chain)
            if out is not None:
                return out
            return super().visit_call_(call)
        if is_op(call, "relax.nn.conv2d"):
            if lookup_set(self.absorbed, call):
                # Emitted (and later removed as dead code) only if its chain end rewrites;
                # otherwise the chain end keeps using it.
                return super().visit_call_(call)
            out = self._rewrite(call, None)
            if out is not None:
                return out
        return super().visit_call_(call)

    def _record(self, conv: relax.Call, **kw: Any) -> LayerRecord:
        index = lookup(self.conv_index, conv)
        rec = LayerRecord(index=-1 if index is None else index, var="", **kw)
        # one record per conv even if visited twice (absorbed convs are revisited)
        self.records = [r for r in self.records if r.index != rec.index] + [rec]
        return rec

    def _rewrite(self, conv: relax.Call, chain: _Chain | None) -> relax.Expr | None:
        try:
            return self._try_rewrite(conv, chain)
        except Exception as exc:  # any failure leaves the layer as it was, with the reason
            self._record(
                conv,
                rewritten=False,
                reason=f"rewrite failed, layer left dense ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''})",
            )
            return None

    def _try_rewrite(self, conv: relax.Call, chain: _Chain | None) -> relax.Expr | None:
        index = lookup(self.conv_index, conv)
        mode = self.options.mode
        reason = conv_eligibility(conv, mode) or self.options.exclude.get(index)
        if reason is not None:
            self._record(conv, rewritten=False, reason=reason)
            return None
        weight = conv.args[1].value.numpy()
        layout = self._layout(conv)
        if isinstance(layout, Rejection):
            base = _shape_fields(weight, conv_geometry(conv, weight))
            self._record(conv, rewritten=False, reason=layout.reason, **base)
            return None
        source = self._input_source(conv, weight)
        geometry = source.geometry
        base = _shape_fields(weight, geometry)
        epilogue = _epilogue(chain)
        arrays = layout_arguments(layout, geometry)
        storage, histogram = _storage(weight, arrays, mode)
        name = f"{_PREFIXES[mode]}_{index}"
        out = self._emit_kernel(source.expr, arrays, chain, geometry, layout, epilogue, name)
        gv = out.args[0]
        self.new_funcs.append(gv)
        # ChainConvLayouts rebuilds described kernels from this geometry
        if layout.kind == "block":
            self.descriptions[gv.name_hint] = describe_conv(geometry, layout, epilogue)
        bias = chain.bias if chain is not None and chain.bias is not None else None
        self.built[index] = BuiltLayer(gv, weight, geometry, layout, epilogue, bias)
        self._record(
            conv,
            rewritten=True,
            reason="rewritten",
            kind=layout.kind,
            block=layout.block,
            function=gv.name_hint,
            fused=(*source.ops, "conv2d", *(chain.ops if chain else ())),
            kept_kernels=layout.kept_kernels,
            pattern_histogram=histogram,
            storage_bytes=storage,
            **base,
        )
        return out

    def _input_source(self, conv: relax.Call, weight: np.ndarray) -> InputSource:
        """The conv's input, or (``fuse_input``) the tensor before the pad and nearest
        upsampling that produce it: ``conv(pad(upsample(x)))`` reads ``x`` (a zero pad adds
        to the conv's own padding; a reflection / replication pad needs the conv unpadded).
        The absorbed ops stay in the module for their other users, if any."""
        plain = InputSource(conv.args[0], conv_geometry(conv, weight))
        if not self.options.fuse_input:
            return plain
        try:
            return absorb_input(conv.args[0], plain.geometry, self.var2val) or plain
        except ValueError:  # e.g. a reflection wider than the input: leave the ops outside
            return plain

    def _emit_kernel(
        self,
        x: relax.Expr,
        arrays: list[np.ndarray],
        chain: _Chain | None,
        geometry: ConvGeometry,
        layout: SparseConvLayout,
        epilogue: Epilogue,
        name: str,
    ) -> relax.Call:
        """``call_tir`` of the kernel on ``x``, its constant arrays and the chain's bias and
        residual."""
        consts = [relax.const(a) for a in arrays]
        extra = []
        if chain is not None and chain.bias is not None:
            extra.append(relax.const(chain.bias))
        if chain is not None and chain.residual is not None:
            extra.append(self.visit_expr(chain.residual))
        return self.builder_.call_te(
            _te_fn(geometry, layout, epilogue),
            self.visit_expr(x),
            *consts,
            *extra,
            primfunc_name_hint=name,
        )


def absorb_input(
    x: relax.Expr, geometry: ConvGeometry, var2val: Mapping[Any, Any]
) -> InputSource | None:
    """:meth:`_Rewriter._input_source` of a conv reading ``x`` with ``geometry``; None if
    nothing before it can be absorbed (raises ValueError where the geometry would be
    invalid)."""
    ops: list[str] = []
    value = _producer(x, var2val)
    padded = spatial_pad(value) if value is not None else None
    if value is not None and padded is not None:
        mode, widths = padded
        if mode != "zeros" and any(geometry.padding):
            return None  # mirrored then zero padding: two kinds of border
        x = value.args[0]
        geometry = dataclasses.replace(
            geometry,
            in_shape=static_shape(x),  # type: ignore[arg-type]
            padding=tuple(a + b for a, b in zip(geometry.padding, widths, strict=True)),  # type: ignore[arg-type]
            pad_mode=mode,
        )
        ops.append("zero_pad" if mode == "zeros" else f"{mode}_pad")
        value = _producer(x, var2val)
    factor = nearest_upsample_factor(value) if value is not None else None
    if value is not None and factor is not None:
        x = value.args[0]
        geometry = dataclasses.replace(geometry, upsample=factor)
        ops.insert(0, f"upsample_nearest{factor}")
    return InputSource(x, geometry, tuple(ops)) if ops else None


def _skip_zero_taps(
    weight: np.ndarray, whole: SparseConvLayout | Rejection
) -> SparseConvLayout | Rejection:
    """The whole-kernel blocked layout, or the single-tap one (:mod:`tvm_ext.tap_layout`)
    where taps that are zero across a block save enough multiply-adds."""
    if isinstance(whole, Rejection) or weight.shape[2] * weight.shape[3] == 1:
        return whole
    taps = analyze_tap_sparse_weight(weight, block=whole.block)
    if isinstance(taps, SparseConvLayout) and tap_layout_macs(taps) <= TAP_SKIP_RATIO * (
        tap_layout_macs(whole)
    ):
        return taps
    return whole


def _producer(x: relax.Expr, var2val: Mapping[Any, Any]) -> relax.Call | None:
    """The call bound to variable ``x`` in the function, None for anything else."""
    value = lookup(dict(var2val), x) if isinstance(x, relax.Var) else None
    return value if isinstance(value, relax.Call) else None


def _use_counts(
    func: relax.Function, var2val: Mapping[Any, Any]
) -> tuple[dict[Any, int], dict[Any, list[Any]]]:
    """How often each var is used (function outputs count 2: never absorbed), and which
    bindings use it."""
    uses: dict[Any, int] = {}
    for value in var2val.values():
        for v in used_vars(value):
            uses[v] = uses.get(v, 0) + 1
    for v in used_vars(func.body.body):
        uses[v] = uses.get(v, 0) + 2  # function outputs are never absorbed
    users: dict[Any, list[Any]] = {}
    for var, value in var2val.items():
        for v in used_vars(value):
            users.setdefault(v, []).append(var)
    return uses, users


def _follow_chain(
    var: Any,
    conv: relax.Call,
    var2val: Mapping[Any, Any],
    uses: Mapping[Any, int],
    users: Mapping[Any, list[Any]],
    claimed: set[Any],
) -> tuple[_Chain | None, Any, list[Any]]:
    """The single-use bias add, residual add and ReLU after conv ``var`` (in any order, ReLU
    last): ``(chain or None if there is none, its last var, the vars it absorbs)``."""
    cur, bias, residual, relu, ops, path = var, None, None, False, [], []
    while uses.get(cur, 0) == 1 and len(users.get(cur, [])) == 1 and not relu:
        nxt = users[cur][0]
        if lookup_set(claimed, nxt):
            break  # another conv's epilogue already ends here (e.g. two sparse branches)
        val = var2val[nxt]
        if is_op(val, "relax.nn.relu"):
            relu = True
            ops.append("relu")
        elif (
            is_op(val, "relax.add")
            and bias is None
            and residual is None
            and (bias_of(val, cur, static_shape(var)) is not None)
        ):
            bias = bias_of(val, cur, static_shape(var))
            ops.append("bias_add")
        elif is_op(val, "relax.add") and residual is None:
            other = val.args[1] if val.args[0].same_as(cur) else val.args[0]
            if static_shape(other) != static_shape(var) or other.same_as(cur):
                break
            residual = other
            ops.append("residual_add")
        else:
            break
        path.append(nxt)
        cur = nxt
    if cur.same_as(var):
        return None, cur, path
    return _Chain(conv, bias, residual, relu, tuple(ops)), cur, path


def conv_geometry(conv: relax.Call, weight: np.ndarray) -> ConvGeometry:
    """The geometry of a ``relax.nn.conv2d`` call on its own NCHW input (nothing absorbed)."""
    attrs = conv.attrs
    return ConvGeometry(
        in_shape=static_shape(conv.args[0]),  # type: ignore[arg-type]
        stride=tuple(int(s) for s in attrs.strides),  # type: ignore[arg-type]
        padding=tuple(int(p) for p in attrs.padding),  # type: ignore[arg-type]
        kernel=(int(weight.shape[2]), int(weight.shape[3])),
        dilation=tuple(int(d) for d in attrs.dilation),  # type: ignore[arg-type]
    )


def _shape_fields(weight: np.ndarray, geometry: ConvGeometry) -> dict[str, Any]:
    """The :class:`LayerRecord` fields of every conv that passed the eligibility checks."""
    return dict(
        weight_shape=tuple(weight.shape),
        input_shape=geometry.in_shape,
        stride=geometry.stride,
        padding=geometry.padding,
        dilation=geometry.dilation,
        kernels=int(weight.shape[0] * weight.shape[1]),
    )


def _epilogue(chain: _Chain | None) -> Epilogue:
    return Epilogue(
        bias=chain is not None and chain.bias is not None,
        residual=chain is not None and chain.residual is not None,
        relu=chain is not None and chain.relu,
    )


def _storage(
    weight: np.ndarray, arrays: list[np.ndarray], mode: str
) -> tuple[dict[str, int], dict[int, int]]:
    """Storage bytes (dense, CSR, ours, the kernel's arrays) and the pattern histogram."""
    storage = {"dense": dense_nbytes(weight), "csr": csr_nbytes(weight)}
    histogram: dict[int, int]
    if mode == PATTERN_MODE:
        storage["ours"] = PatternSparseWeight.from_dense(weight).nbytes()
        histogram = _histogram(weight)
    else:  # kept values (padding lanes included) and one channel index per kept slot
        storage["ours"] = int(sum(a.nbytes for a in arrays[:-1]))
        histogram = {}
    storage["kernel_arrays"] = int(sum(a.nbytes for a in arrays))
    return storage, histogram


def _histogram(weight: np.ndarray) -> dict[int, int]:
    codes = kernel_codes_np(weight)
    vals, counts = np.unique(codes[codes != 0], return_counts=True)
    return {int(v): int(c) for v, c in zip(vals, counts, strict=True)}


def _te_fn(geometry: ConvGeometry, layout: SparseConvLayout, epilogue: Epilogue):  # type: ignore[no-untyped-def]
    def fn(*inputs: te.Tensor) -> te.Tensor:
        return pattern_conv2d_compute(inputs, geometry, layout, epilogue)

    return fn


def conv_eligibility(conv: relax.Call, mode: str = PATTERN_MODE) -> str | None:
    """None if the conv can be rewritten, else the reason (with the fix)."""
    x, w = conv.args
    attrs = conv.attrs
    if not isinstance(w, IRConstant):
        return (
            "weight is a function input, not a constant: bind the parameters "
            "(from_exported_program(..., keep_params_as_input=False) or "
            "relax.transform.BindParams) before this pass"
        )
    if str(attrs.data_layout) != "NCHW" or str(attrs.kernel_layout) != "OIHW":
        return f"layout {attrs.data_layout}/{attrs.kernel_layout}, only NCHW/OIHW is handled"
    if static_shape(x) is None:
        return "dynamic input shape: the kernel is specialised to static shapes"
    wshape = static_shape(w)
    if int(attrs.groups) != 1:
        kind = "depthwise" if wshape and wshape[1] == 1 else "grouped"
        return f"{kind} convolution (groups={int(attrs.groups)}), only groups=1 is handled"
    if wshape is None:
        return "weight shape is not static"
    if mode == PATTERN_MODE and wshape[2:] != (3, 3):
        size = "x".join(str(s) for s in wshape[2:]) if wshape else "?"
        return f"{size} kernel: patterns are defined for 3x3 kernels only"
    if dtype_of(x) != "float32" or dtype_of(w) != "float32":
        return f"dtype {dtype_of(x)}/{dtype_of(w)}, only float32 is handled"
    return None


def rewrite_convs(
    mod: tvm.IRModule, options: RewriteOptions
) -> tuple[tvm.IRModule, list[LayerRecord]]:
    """Run the rewriter (the options' mode); with ``options.verify``, layers whose kernel
    does not match the dense conv are left dense. Returns the module and one record per
    conv."""
    options = dataclasses.replace(options, exclude={})
    rewriter, out = _rewrite_once(mod, options)
    if options.verify:
        errors = {
            i: verify_layer(out, *info, target=options.target) for i, info in rewriter.built.items()
        }
        failed = failed_layers(errors, rewriter.built, options.tolerance)
        if failed:  # leave those layers dense: a model must never break
            rewriter, out = _rewrite_once(mod, dataclasses.replace(options, exclude=failed))
        for rec in rewriter.records:
            if rec.rewritten:
                rec.max_abs_error = errors.get(rec.index)
    return out, sorted(rewriter.records, key=lambda r: r.index)


def _rewrite_once(mod: tvm.IRModule, options: RewriteOptions) -> tuple[_Rewriter, tvm.IRModule]:
    """One rewrite of ``mod``, its new kernels scheduled if ``options.schedule``."""
    rewriter = _Rewriter(mod, options)
    out = rewriter.run()
    if options.schedule:
        schedule_primfuncs(out, rewriter.new_funcs, target=options.target)
    return rewriter, out
