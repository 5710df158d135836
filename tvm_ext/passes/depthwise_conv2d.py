"""Relax pass: depthwise 3x3 convs (dense or pattern-pruned) on a vectorised CPU kernel.

TVM has no CPU schedule for a grouped ``relax.nn.conv2d`` without tuning (its stock kernel ran
12 of MobileNet-V2's 17 depthwise layers slower than PyTorch; ``ScheduleLeftovers``' generic
rule does not vectorise them either, ``benchmarks/depthwise.py``). This pass rewrites each
``conv2d`` with ``groups == in channels == out channels`` (channel multiplier 1), a 3x3
constant float32 OIHW weight, NCHW static shapes, dilation 1, any stride and padding, into the
kernel of :mod:`tvm_ext.te.depthwise_conv` with the schedule of
:mod:`tvm_ext.schedules.depthwise`: vectorised over the output width or over blocks of
channels, taps unrolled; pattern-pruned channels (each keeps a 4-weight pattern, or none)
compute their own 4 taps instead of 9. A following bias add, residual add and ReLU / ReLU6 /
clip run in the kernel's epilogue when the intermediate has no other use.

Where it belongs: after BN folding (the BN becomes the bias it fuses) and the pattern pass,
before :class:`~tvm_ext.passes.LinearAsConv2D` / :class:`~tvm_ext.passes.BlockedConv2D`::

    seq = tvm.transform.Sequential([..., PatternSparseConv2D(), DepthwiseConv2D(), ...])

Every conv it does not take is left exactly as it was; for grouped convs (several channels per
group, other kernel sizes, weights as inputs, GPU targets) :attr:`DepthwiseConv2D.records` says
why; with ``verify=True`` each rewritten layer is checked against
:func:`tvm_ext.reference.conv2d_nchw` (``groups=C``) on random input and left as it was if it
disagrees. Each new kernel carries its plan (:data:`DEPTHWISE_ATTR`) for
:class:`~tvm_ext.passes.ChainConvLayouts`, which removes it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tvm_ext._compat import IRConstant, host_target, relax, te, tensor, tvm
from tvm_ext.reference import conv2d_nchw
from tvm_ext.relax_match import (
    bias_of,
    dtype_of,
    is_op,
    lookup,
    lookup_set,
    rewrite_relax_functions,
    static_shape,
    used_vars,
)
from tvm_ext.schedules.dispatch import schedule_depthwise_primfunc
from tvm_ext.targets import is_cross, is_gpu, vector_lanes
from tvm_ext.te.depthwise_conv import (
    STRATEGIES,
    DepthwiseEpilogue,
    DepthwisePlan,
    Strategy,
    depthwise_arguments,
    depthwise_compute,
    depthwise_te,
    plan_depthwise,
)
from tvm_ext.verify import tolerance_scale

FUNC_PREFIX = "depthwise_conv2d"
#: Opaque op pattern: FuseOps leaves the (already scheduled, already fused) kernel alone.
OPAQUE = 8
#: PrimFunc attribute on depthwise kernels without a fused residual: their plan and epilogue
#: (JSON, :func:`describe_depthwise`), what :class:`ChainConvLayouts` rebuilds them from
DEPTHWISE_ATTR = "patsparse.depthwise"


def describe_depthwise(plan: DepthwisePlan, epilogue: DepthwiseEpilogue) -> str:
    """The JSON of :data:`DEPTHWISE_ATTR` (:func:`read_depthwise` reads it back)."""
    return json.dumps(
        {
            "in_shape": list(plan.in_shape),
            "stride": list(plan.stride),
            "padding": list(plan.padding),
            "strategy": plan.strategy,
            "lanes": plan.lanes,
            "taps": None if plan.taps is None else [list(t) for t in plan.taps],
            "slots": plan.slots,
            "bias": epilogue.bias,
            "residual": epilogue.residual,
            "clip": None if epilogue.clip is None else list(epilogue.clip),
        }
    )


def read_depthwise(text: str) -> tuple[DepthwisePlan, DepthwiseEpilogue]:
    """The plan and epilogue of a :data:`DEPTHWISE_ATTR` description."""
    d = json.loads(text)
    taps = None if d["taps"] is None else tuple((int(r), int(s)) for r, s in d["taps"])
    strategy: Strategy = "rows" if d["strategy"] == "rows" else "channels"
    plan = DepthwisePlan(
        in_shape=tuple(d["in_shape"]),
        stride=tuple(d["stride"]),
        padding=tuple(d["padding"]),
        strategy=strategy,
        lanes=int(d["lanes"]),
        taps=taps,
        slots=int(d["slots"]),
    )
    clip = None if d["clip"] is None else (float(d["clip"][0]), float(d["clip"][1]))
    return plan, DepthwiseEpilogue(bias=d["bias"], residual=d["residual"], clip=clip)


@dataclass
class DepthwiseRecord:
    """What the pass did with one grouped conv2d (JSON-ready through :meth:`to_dict`);
    ``index`` counts every conv2d of the module in order."""

    index: int
    rewritten: bool
    reason: str
    weight_shape: tuple[int, ...] = ()
    input_shape: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    #: ``rows`` (vectorised over the width) or ``channels`` (over blocks of channels)
    strategy: str = ""
    #: taps computed per channel (9 dense; a pattern-pruned layer's own 4)
    taps: int = 0
    #: channels whose 3x3 kernel keeps a weight
    kept_kernels: int = 0
    function: str = ""
    fused: tuple[str, ...] = ()
    max_abs_error: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        for key in ("weight_shape", "input_shape", "stride", "padding", "fused"):
            d[key] = list(d[key])
        return d


@dataclass(frozen=True)
class _Options:
    strategy: str
    fuse_epilogue: bool
    schedule: bool
    target: Any
    #: conv index -> reason: layers left as they were (failed verification or schedule)
    exclude: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Chain:
    """A conv2d and the element-wise ops its epilogue absorbs (original Relax objects)."""

    conv: relax.Call
    bias: np.ndarray | None
    residual: relax.Expr | None
    clip: tuple[float, float] | None
    ops: tuple[str, ...]


@dataclass(frozen=True)
class _Built:
    """A rewritten layer: what verification needs."""

    gv: tvm.ir.GlobalVar
    weight: np.ndarray
    plan: DepthwisePlan
    epilogue: DepthwiseEpilogue
    bias: np.ndarray | None


def eligibility(conv: relax.Call, target: Any = None) -> str | None:
    """None if the conv is a depthwise 3x3 conv this pass takes, else the reason (with the
    fix where there is one)."""
    x, w = conv.args
    attrs = conv.attrs
    groups = int(attrs.groups)
    if groups == 1:
        return "not depthwise (groups=1): left to the pattern / blocked passes"
    if not isinstance(w, IRConstant):
        return (
            "weight is a function input, not a constant: bind the parameters "
            "(from_exported_program(..., keep_params_as_input=False) or "
            "relax.transform.BindParams) before this pass"
        )
    if str(attrs.data_layout) != "NCHW" or str(attrs.kernel_layout) != "OIHW":
        return f"layout {attrs.data_layout}/{attrs.kernel_layout}, only NCHW/OIHW is handled"
    xs, ws = static_shape(x), static_shape(w)
    if xs is None or ws is None:
        return "dynamic shape: the kernel is specialised to static shapes"
    if not (groups == xs[1] == ws[0]) or ws[1] != 1:
        return (
            f"grouped convolution (groups={groups}, {xs[1]} -> {ws[0]} channels): only "
            "depthwise convs with one filter per channel are handled"
        )
    if ws[2:] != (3, 3):
        return f"{ws[2]}x{ws[3]} depthwise kernel: only 3x3 is handled"
    if any(int(d) != 1 for d in attrs.dilation):
        return "dilated convolution, only dilation 1 is handled"
    out_dtype = str(attrs.out_dtype or "float32")
    if dtype_of(x) != "float32" or dtype_of(w) != "float32" or out_dtype != "float32":
        return f"dtype {dtype_of(x)}/{dtype_of(w)} -> {out_dtype}, only float32 is handled"
    if is_gpu(target):
        return "no depthwise schedule for GPU targets yet: left to TVM"
    if not np.any(w.value.numpy()):
        return "every channel's kernel is zero"
    return None


@relax.expr_functor.mutator
class _Rewriter(relax.expr_functor.PyExprMutator):
    """Rewrites the eligible convs of every Relax function of ``mod`` (:meth:`run`)."""

    def __init__(self, mod: tvm.IRModule, options: _Options) -> None:
        super().__init__(mod)
        self.mod_ = mod
        self.options = options
        self.records: list[DepthwiseRecord] = []
        self.built: dict[int, _Built] = {}
        self.chains: dict[Any, _Chain] = {}
        self.absorbed: set[Any] = set()
        self.conv_index: dict[Any, int] = {}
        self.new_funcs: list[tvm.ir.GlobalVar] = []
        self.descriptions: dict[str, str] = {}
        self._next_index = 0

    def run(self) -> tvm.IRModule:
        mod = rewrite_relax_functions(self, before=self._start_function)
        for gv in self.new_funcs:
            func = mod[gv].with_attr("op_pattern", OPAQUE)
            if gv.name_hint in self.descriptions:
                func = func.with_attr(DEPTHWISE_ATTR, self.descriptions[gv.name_hint])
            mod[gv] = func
        return mod

    def _start_function(self, func: relax.Function) -> None:
        self.chains, self.absorbed = {}, set()
        self._plan_chains(func)

    def _eligible(self, conv: relax.Call) -> str | None:
        index = lookup(self.conv_index, conv)
        return eligibility(conv, self.options.target) or self.options.exclude.get(index)

    def _plan_chains(self, func: relax.Function) -> None:
        """Number the convs; for each eligible one, the ops its epilogue absorbs (keyed by the
        last op's value)."""
        var2val = relax.analysis.get_var2val(func)
        uses: dict[Any, int] = {}
        users: dict[Any, list[Any]] = {}
        for var, value in var2val.items():
            for v in used_vars(value):
                uses[v] = uses.get(v, 0) + 1
                users.setdefault(v, []).append(var)
        for v in used_vars(func.body.body):
            uses[v] = uses.get(v, 0) + 2  # function outputs are never absorbed
        claimed: set[Any] = set()
        for var, value in var2val.items():
            if not is_op(value, "relax.nn.conv2d"):
                continue
            self.conv_index[value] = self._next_index
            self._next_index += 1
            if not self.options.fuse_epilogue or self._eligible(value) is not None:
                continue
            chain, end, path = _follow_chain(var, value, var2val, uses, users, claimed)
            if chain is not None:
                self.chains[var2val[end]] = chain
                self.absorbed.add(value)
                claimed.update(path)

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        chain = lookup(self.chains, call)
        if chain is not None:
            out = self._rewrite(chain.conv, chain)
            return out if out is not None else super().visit_call_(call)
        if is_op(call, "relax.nn.conv2d") and not lookup_set(self.absorbed, call):
            out = self._rewrite(call, None)
            if out is not None:
                return out
        return super().visit_call_(call)

    def _record(self, conv: relax.Call, **kw: Any) -> None:
        index = lookup(self.conv_index, conv)
        rec = DepthwiseRecord(index=-1 if index is None else index, **kw)
        # one record per conv even if visited twice (absorbed convs are revisited)
        self.records = [r for r in self.records if r.index != rec.index] + [rec]

    def _rewrite(self, conv: relax.Call, chain: _Chain | None) -> relax.Expr | None:
        try:
            return self._try_rewrite(conv, chain)
        except Exception as exc:  # any failure leaves the layer as it was, with the reason
            first = str(exc).splitlines()[0] if str(exc) else ""
            self._record(
                conv,
                rewritten=False,
                reason=f"rewrite failed, layer left as it was ({type(exc).__name__}: {first})",
            )
            return None

    def _try_rewrite(self, conv: relax.Call, chain: _Chain | None) -> relax.Expr | None:
        reason = self._eligible(conv)
        if int(conv.attrs.groups) == 1:
            return None  # not grouped: the other passes' business, no record
        if reason is not None:
            shape = static_shape(conv.args[1])
            self._record(conv, rewritten=False, reason=reason, weight_shape=shape or ())
            return None
        index: int = lookup(self.conv_index, conv)
        weight = conv.args[1].value.numpy()
        attrs = conv.attrs
        n, c, h, w = static_shape(conv.args[0])  # type: ignore[misc]
        in_shape = (n, c, h, w)
        sh, sw = (int(s) for s in attrs.strides)
        pt, pl, pb, pr = (int(p) for p in attrs.padding)
        stride, padding = (sh, sw), (pt, pl, pb, pr)
        plan = plan_depthwise(
            weight,
            in_shape,
            stride,
            padding,
            lanes=vector_lanes(self.options.target),
            strategy=self.options.strategy,
        )
        epilogue = DepthwiseEpilogue(
            bias=chain is not None and chain.bias is not None,
            residual=chain is not None and chain.residual is not None,
            clip=chain.clip if chain is not None else None,
        )
        consts = [relax.const(a) for a in depthwise_arguments(plan, weight)]
        extra = []
        if chain is not None and chain.bias is not None:
            extra.append(relax.const(chain.bias))
        if chain is not None and chain.residual is not None:
            extra.append(self.visit_expr(chain.residual))

        def fn(*inputs: te.Tensor) -> te.Tensor:
            return depthwise_compute(inputs, plan, epilogue)

        out = self.builder_.call_te(
            fn,
            self.visit_expr(conv.args[0]),
            *consts,
            *extra,
            primfunc_name_hint=f"{FUNC_PREFIX}_{index}",
        )
        gv = out.args[0]
        self.new_funcs.append(gv)
        if not epilogue.residual:
            self.descriptions[gv.name_hint] = describe_depthwise(plan, epilogue)
        bias = chain.bias if chain is not None else None
        self.built[index] = _Built(gv, weight, plan, epilogue, bias)
        self._record(
            conv,
            rewritten=True,
            reason="rewritten",
            weight_shape=tuple(weight.shape),
            input_shape=in_shape,
            stride=stride,
            padding=padding,
            strategy=plan.strategy,
            taps=plan.slots,
            kept_kernels=int(np.any(weight.reshape(weight.shape[0], -1) != 0, axis=1).sum()),
            function=gv.name_hint,
            fused=("conv2d", *(chain.ops if chain is not None else ())),
        )
        return out


def clip_bounds(call: relax.Call) -> tuple[float, float] | None:
    """``(lo, hi)`` of a ReLU or a clip with constant bounds, else None."""
    if is_op(call, "relax.nn.relu"):
        return (0.0, float("inf"))
    if not is_op(call, "relax.clip"):
        return None
    bounds = []
    for arg in call.args[1:3]:
        value = getattr(arg, "value", None)
        value = getattr(value, "value", value)  # a PrimValue wraps an IntImm / FloatImm
        if not isinstance(value, int | float):
            return None
        bounds.append(float(value))
    return bounds[0], bounds[1]


def _follow_chain(
    var: Any,
    conv: relax.Call,
    var2val: Mapping[Any, Any],
    uses: Mapping[Any, int],
    users: Mapping[Any, list[Any]],
    claimed: set[Any],
) -> tuple[_Chain | None, Any, list[Any]]:
    """The single-use bias add, residual add and ReLU / clip after conv ``var`` (adds in any
    order, the activation last): ``(chain or None, its last var, the vars it absorbs)``."""
    cur, bias, residual, clip = var, None, None, None
    ops: list[str] = []
    path: list[Any] = []
    while uses.get(cur, 0) == 1 and len(users.get(cur, [])) == 1 and clip is None:
        nxt = users[cur][0]
        if lookup_set(claimed, nxt):
            break
        val = var2val[nxt]
        bounds = clip_bounds(val)
        if bounds is not None and val.args[0].same_as(cur):
            clip = bounds
            ops.append("relu" if is_op(val, "relax.nn.relu") else "clip")
        elif is_op(val, "relax.add"):
            found = bias_of(val, cur, static_shape(var)) if bias is None and not ops else None
            other = val.args[1] if val.args[0].same_as(cur) else val.args[0]
            if found is not None:
                bias = found
                ops.append("bias_add")
            elif residual is None and static_shape(other) == static_shape(var):
                if other.same_as(cur):
                    break
                residual = other
                ops.append("residual_add")
            else:
                break
        else:
            break
        path.append(nxt)
        cur = nxt
    if cur.same_as(var):
        return None, cur, path
    return _Chain(conv, bias, residual, clip, tuple(ops)), cur, path


def verify_depthwise(
    mod: tvm.IRModule, built: _Built, *, target: Any = None, seed: int = 0
) -> float:
    """Max abs error of a rewritten kernel against :func:`tvm_ext.reference.conv2d_nchw`
    (``groups=C``, then bias, residual, clip) on random input, run on this host (a kernel
    built for another device is rebuilt with the host's schedule)."""
    plan, epilogue = built.plan, built.epilogue
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(plan.in_shape).astype(np.float32)
    n, c = plan.in_shape[:2]
    residual = rng.standard_normal((n, c, *plan.out_hw)).astype(np.float32)
    ref = conv2d_nchw(
        x, built.weight, built.bias, stride=plan.stride, padding=plan.padding, groups=c
    )
    if epilogue.residual:
        ref = ref + residual
    if epilogue.clip is not None:
        ref = np.clip(ref, *epilogue.clip)
    func = mod[built.gv]
    if target is not None and is_cross(target):
        target = None
        func = te.create_prim_func(depthwise_te(plan, epilogue))
        func = schedule_depthwise_primfunc(func, target=host_target()) or func
    func = func.with_attr("global_symbol", "main")
    ex = tvm.compile(tvm.IRModule({"main": func}), target=target or host_target())
    dev = tvm.cpu()
    args = [x, *depthwise_arguments(plan, built.weight)]
    if epilogue.bias:
        args.append(built.bias if built.bias is not None else np.zeros(c, np.float32))
    if epilogue.residual:
        args.append(residual)
    out = tensor(np.zeros(ref.shape, np.float32), dev)
    ex.mod["main"](*[tensor(np.ascontiguousarray(a), dev) for a in args], out)
    return float(np.abs(out.numpy() - ref).max())


def _rewrite_once(mod: tvm.IRModule, options: _Options) -> tuple[_Rewriter, tvm.IRModule]:
    """One rewrite; the new kernels scheduled if ``options.schedule``."""
    rewriter = _Rewriter(mod, options)
    out = rewriter.run()
    if options.schedule:
        for index, built in rewriter.built.items():
            scheduled = schedule_depthwise_primfunc(out[built.gv], target=options.target)
            if scheduled is None:
                raise _Unscheduled(index)
            out[built.gv] = scheduled
    return rewriter, out


class _Unscheduled(Exception):
    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


@tvm.transform.module_pass(opt_level=0, name="DepthwiseConv2D")
class DepthwiseConv2D:
    """Rewrite depthwise 3x3 conv2d calls into the vectorised depthwise kernel (see the module
    docstring).

    Options (keyword-only): ``strategy`` (``auto``, ``rows``, ``channels``:
    :func:`tvm_ext.te.depthwise_conv.plan_depthwise`), ``fuse_epilogue``, ``schedule``
    (apply the CPU schedule; unscheduled kernels run as plain loops), ``target`` (the vector
    width; GPU targets are refused), ``verify`` / ``tolerance`` (check each rewritten layer
    against the reference conv; failures are left as they were).
    """

    def __init__(
        self,
        *,
        strategy: str = "auto",
        fuse_epilogue: bool = True,
        schedule: bool = True,
        verify: bool = False,
        target: Any = None,
        tolerance: float = 1e-4,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        self.options = _Options(strategy, fuse_epilogue, schedule, target)
        self.verify = verify
        self.tolerance = tolerance
        self.records: list[DepthwiseRecord] = []

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        options = dataclasses.replace(self.options, exclude={})
        exclude: dict[int, str] = {}
        while True:
            try:
                rewriter, out = _rewrite_once(mod, dataclasses.replace(options, exclude=exclude))
            except _Unscheduled as exc:
                exclude[exc.index] = "no CPU schedule could be built: left as it was"
                continue
            if not self.verify:
                break
            errors = {
                i: verify_depthwise(out, b, target=self.options.target)
                for i, b in rewriter.built.items()
            }
            failed = {
                i: f"verification failed: max abs error {e:.3g} vs the reference conv"
                for i, e in errors.items()
                if not e <= self.tolerance * tolerance_scale(rewriter.built[i].weight)
            }
            for rec in rewriter.records:
                if rec.rewritten:
                    rec.max_abs_error = errors.get(rec.index)
            if not failed:
                break
            exclude.update(failed)  # leave those layers as they were: a model must not break
        self.records = sorted(rewriter.records, key=lambda r: r.index)
        return out
