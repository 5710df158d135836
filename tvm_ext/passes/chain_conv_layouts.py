"""Relax pass: keep activations in the block kernels' own layout between rewritten convs.

A rewritten block-layout conv (:class:`PatternSparseConv2D` with block patterns,
:class:`BlockedConv2D`) computes rows of ``lanes`` output channels in its permuted filter
order; alone, it pads its NCHW input (``ps_pad``) and gathers its result back into NCHW
(``ps_epilogue``). At 224² and 112² those two passes over memory cost about as much as the
sparse conv itself. Where a conv's output feeds only other block-layout convs (as their input
or as the residual their epilogue adds), possibly through a max pool, this pass rebuilds the
producer to write a chained buffer (:class:`tvm_ext.te.conv_spec.BlockedActivation`:
``(N, rows, H + 2b, W + 2b, lanes)`` in the producer's own order, zero border ``b`` = the
consumers' padding, the max pool fused into its epilogue) and the consumers to read it in
place, their input-channel indices permuted at compile time. NCHW is written only where a
value leaves the chain (a non-rewritten op, a function output).

Where it belongs: right after the conv rewrites, before the rest of the pipeline::

    seq = tvm.transform.Sequential([PatternSparseConv2D(), BlockedConv2D(),
                                    ChainConvLayouts(), relax.get_default_pipeline(target)])

CPU targets only (a GPU target in the options or in scope leaves the module unchained).
A model with nothing to chain comes out exactly as it went in (less the rewriters'
:data:`~tvm_ext.passes.pattern_sparse_conv2d.CONV_ATTR` metadata, which this pass always
removes); :attr:`ChainConvLayouts.records` says what was chained and why not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tvm_ext._compat import IRConstant, Target, relax, te, tirx, tvm
from tvm_ext.conv_rewriter import CONV_ATTR, OPAQUE
from tvm_ext.layout import SparseConvLayout
from tvm_ext.relax_match import is_op, lookup
from tvm_ext.schedules.dispatch import SCHEDULED_ATTR, schedule_pattern_primfunc
from tvm_ext.te.conv_spec import BlockedActivation, ConvGeometry, Epilogue
from tvm_ext.te.pattern_conv import pattern_conv2d_compute


@dataclass(frozen=True)
class ChainOptions:
    """What :class:`ChainConvLayouts` may do (one source of defaults)."""

    #: False: only remove the rewriters' metadata (the model stays as the rewriters left it)
    enabled: bool = True
    #: fuse a max pool between two convs into the producer's epilogue
    pool: bool = True
    #: let a chained activation be the residual another conv's epilogue adds
    residual: bool = True
    #: only chain producers whose conv output has at least this many pixels
    min_pixels: int = 0
    #: activations with more channels are chained planar (NCHW order with a zero border,
    #: written by a gather) instead of in the producer's rows of lanes: a consumer reads a
    #: blocked input one channel at a time across 16-channel rows, so with many kept channels
    #: its working set leaves L1 (512 channels at 28x28 and 14x14: 3-20 % slower than NCHW;
    #: up to 256 channels blocked wins or ties)
    max_channels: int = 256
    #: the target the rewriters scheduled for (default: ``with target:`` scope, else host)
    target: Any = None

    def __post_init__(self) -> None:
        if self.min_pixels < 0:
            raise ValueError(f"min_pixels must be >= 0, got {self.min_pixels}")
        if self.max_channels < 1:
            raise ValueError(f"max_channels must be >= 1, got {self.max_channels}")


@dataclass
class ChainRecord:
    """One block-layout conv call after the pass (JSON-ready through :meth:`to_dict`)."""

    function: str
    #: logical NCHW input and (pre-pool) output of the conv
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    chained_input: bool = False
    chained_output: bool = False
    #: the chained output is planar (NCHW order with a border), not the conv's rows of lanes
    planar: bool = False
    pool: int = 1
    chained_residual: bool = False
    #: why the output stays NCHW (empty if chained)
    reason: str = ""
    fused: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        for key in ("in_shape", "out_shape", "fused"):
            d[key] = list(d[key])
        return d


@dataclass(frozen=True)
class _Conv:
    """A call of a block-layout kernel, decoded from its arguments and metadata."""

    call: relax.Call
    name: str
    scheduled: bool
    geometry: ConvGeometry
    layout: SparseConvLayout
    epilogue: Epilogue
    values: np.ndarray
    channels: np.ndarray
    bias: np.ndarray | None
    residual: relax.Expr | None

    @property
    def positions(self) -> int:
        return self.layout.rows * self.layout.block

    def activation(self, border: int) -> BlockedActivation:
        return BlockedActivation(self.layout.rows, self.layout.block, border)


@dataclass
class _Plan:
    """How one conv call is rebuilt."""

    out_border: int | None = None
    planar: bool = False
    pool: int = 1
    in_layout: BlockedActivation | None = None
    in_inverse: np.ndarray | None = None
    residual_layout: BlockedActivation | None = None
    residual_inverse: np.ndarray | None = None


def _decode(call: relax.Call, mod: tvm.IRModule) -> _Conv | None:
    """The conv behind ``call_tir(block kernel, ...)``, or None for any other call."""
    if not is_op(call, "relax.call_tir"):
        return None
    gv = call.args[0]
    func = mod[gv] if any(g.same_as(gv) for g in mod.get_global_vars()) else None
    attrs = func.attrs if isinstance(func, tirx.PrimFunc) and func.attrs is not None else {}
    if CONV_ATTR not in attrs:
        return None
    desc = json.loads(str(attrs[CONV_ATTR]))
    args = list(call.args[1].fields)
    if not all(isinstance(a, IRConstant) for a in args[1:4]):
        return None
    values, channels, inverse = (a.value.numpy() for a in args[1:4])
    bias = None
    rest = args[4:]
    if desc["bias"]:
        bias_arg = rest.pop(0)
        if not isinstance(bias_arg, IRConstant):
            return None
        bias = bias_arg.value.numpy()
    residual = rest.pop(0) if desc["residual"] else None
    taps = tuple(tuple(tuple(t) for t in pat) for pat in desc["taps"])
    npat = values.shape[1]
    layout = SparseConvLayout(
        kind="block",
        shape=tuple(desc["shape"]),
        block=int(desc["block"]),
        codes=(),
        values=tuple(values[:, p] for p in range(npat)),
        channels=tuple(channels[:, p] for p in range(npat)),
        inverse=inverse,
        kept_kernels=0,
        tap_sets=taps,
    )
    geometry = ConvGeometry(
        in_shape=tuple(desc["in_shape"]),
        stride=tuple(desc["stride"]),
        padding=tuple(desc["padding"]),
        kernel=tuple(desc["kernel"]),
        dilation=tuple(desc["dilation"]),
    )
    epilogue = Epilogue(bias=desc["bias"], residual=desc["residual"], relu=desc["relu"])
    return _Conv(
        call=call,
        name=gv.name_hint,
        scheduled=bool(int(attrs.get(SCHEDULED_ATTR, 0))),
        geometry=geometry,
        layout=layout,
        epilogue=epilogue,
        values=values,
        channels=channels,
        bias=bias,
        residual=residual,
    )


def _pool_window(call: relax.Call) -> int | None:
    """The window of a max pool this pass can fuse (window = stride, no padding), or None."""
    if not is_op(call, "relax.nn.max_pool2d"):
        return None
    a = call.attrs
    size = [int(v) for v in a.pool_size]
    strides = [int(v) for v in a.strides]
    if (
        len(set(size)) != 1
        or size != strides
        or any(int(v) for v in a.padding)
        or any(int(v) != 1 for v in a.dilation)
        or bool(a.ceil_mode)
        or str(a.layout) != "NCHW"
        or str(a.out_layout) != "NCHW"
    ):
        return None
    return size[0]


class _Graph:
    """Bindings of one function: values, users, aliases (``b = a``, ``t[i]`` of a tuple)."""

    def __init__(self, func: relax.Function) -> None:
        self.values: dict[Any, Any] = dict(relax.analysis.get_var2val(func).items())
        self.users: dict[Any, list[Any]] = {}
        for var, value in self.values.items():
            for used in _free_vars(value):
                self.users.setdefault(used, []).append(var)
        self.outputs = set(_free_vars(func.body.body))

    def uses(self, var: Any) -> tuple[list[tuple[Any, Any]], list[Any]] | None:
        """``(users, aliases)``: the bindings that use ``var`` other than as an alias (var,
        value), and the alias vars in between. None if ``var`` (or an alias) leaves the
        function or is used in a way aliases cannot follow (a tuple used whole)."""
        found: list[tuple[Any, Any]] = []
        aliases: list[Any] = []
        todo = [var]
        while todo:
            v = todo.pop()
            if _in(self.outputs, v):
                return None
            for user in _get(self.users, v, []):
                value = self.values[user]
                if isinstance(value, relax.Var):
                    aliases.append(user)
                    todo.append(user)
                elif isinstance(value, relax.Tuple):
                    idx = [i for i, f in enumerate(value.fields) if f.same_as(v)]
                    if len(idx) != 1 or _in(self.outputs, user):
                        return None
                    aliases.append(user)
                    for item in _get(self.users, user, []):
                        iv = self.values[item]
                        if not (isinstance(iv, relax.TupleGetItem) and iv.index == idx[0]):
                            return None
                        aliases.append(item)
                        todo.append(item)
                else:
                    found.append((user, value))
        return found, aliases


def _free_vars(expr: Any) -> list[Any]:
    if isinstance(expr, relax.Var):
        return [expr]
    return list(relax.analysis.free_vars(expr))


def _in(items: Any, node: Any) -> bool:
    return any(i.same_as(node) for i in items)


def _get(table: dict[Any, Any], node: Any, default: Any) -> Any:
    value = lookup(table, node)
    return default if value is None else value


@relax.expr_functor.mutator
class _Chainer(relax.expr_functor.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, options: ChainOptions) -> None:
        super().__init__(mod)
        self.mod_ = mod
        self.options = options
        self.records: list[ChainRecord] = []
        self.record_of: dict[Any, ChainRecord] = {}
        self.new_funcs: list[tuple[tvm.ir.GlobalVar, bool]] = []
        self.convs: dict[Any, _Conv] = {}
        self.plans: dict[Any, _Plan] = {}
        #: alias / pool bindings dropped, and the producer var they stand for
        self.skipped: dict[Any, Any] = {}
        self.new_vars: dict[Any, Any] = {}

    # -- planning ---------------------------------------------------------------------
    def _plan(self, func: relax.Function) -> None:
        graph = _Graph(func)
        self.convs, self.plans, self.skipped, self.new_vars = {}, {}, {}, {}
        self.record_of = {}
        for var, value in graph.values.items():
            conv = _decode(value, self.mod_) if isinstance(value, relax.Call) else None
            if conv is not None:
                self.convs[var] = conv
        reasons: dict[Any, str] = {}
        for var, conv in self.convs.items():
            reason = self._plan_producer(graph, var, conv)
            if reason:
                reasons[var] = reason
        for var, conv in self.convs.items():
            plan = _get(self.plans, var, None)
            oh, ow = conv.geometry.out_hw
            self.record_of[var] = ChainRecord(
                function=conv.name,
                in_shape=conv.geometry.in_shape,
                out_shape=(conv.geometry.in_shape[0], conv.layout.shape[0], oh, ow),
                chained_input=plan is not None and plan.in_layout is not None,
                chained_output=plan is not None and plan.out_border is not None,
                planar=plan is not None and plan.planar,
                pool=plan.pool if plan is not None else 1,
                chained_residual=plan is not None and plan.residual_layout is not None,
                reason=_get(reasons, var, ""),
            )
            self.records.append(self.record_of[var])

    def _plan_of(self, var: Any) -> _Plan:
        plan = _get(self.plans, var, None)
        if plan is None:
            plan = _Plan()
            self.plans[var] = plan
        return plan

    def _plan_producer(self, graph: _Graph, var: Any, conv: _Conv) -> str:
        """Chain ``var``'s output if every use can read the chained layout; else the reason."""
        oh, ow = conv.geometry.out_hw
        if oh * ow < self.options.min_pixels:
            return f"output {oh}x{ow} below min_pixels {self.options.min_pixels}"

        found = graph.uses(var)
        if found is None:
            return "the output leaves the function"
        users, aliases = found
        pool = 1
        if len(users) == 1 and _pool_window(users[0][1]) is not None and self.options.pool:
            pool_var, pool_call = users[0]
            found = graph.uses(pool_var)
            if found is None:
                return "the max pool's output leaves the function"
            users, more = found
            pool = int(_pool_window(pool_call) or 1)
            aliases = [*aliases, pool_var, *more]
        if not users:
            return "no users"
        roles: list[tuple[Any, str]] = []
        for user, value in users:
            consumer = lookup(self.convs, user)
            if consumer is None:
                op = value.op.name if isinstance(value, relax.Call) else type(value).__name__
                return f"used by {op}, not a block-layout conv"
            args = list(value.args[1].fields)
            as_input = args[0].same_as(var) or _in(aliases, args[0])
            as_residual = consumer.residual is not None and (
                consumer.residual.same_as(var) or _in(aliases, consumer.residual)
            )
            if as_residual and not self.options.residual:
                return "used as a residual (residual chaining disabled)"
            if as_input:
                roles.append((user, "input"))
            if as_residual:
                roles.append((user, "residual"))
        border = max(
            [max(self.convs[u].geometry.padding) for u, role in roles if role == "input"] or [0]
        )
        k = conv.layout.shape[0]
        planar = k > self.options.max_channels
        act = BlockedActivation(k, 1, border) if planar else conv.activation(border)
        positions = np.arange(k, dtype=np.int32) if planar else conv.layout.inverse
        plan = self._plan_of(var)
        plan.out_border, plan.pool, plan.planar = border, pool, planar
        for user, role in roles:
            target = self._plan_of(user)
            if role == "input":
                target.in_layout, target.in_inverse = act, positions
            else:
                target.residual_layout, target.residual_inverse = act, positions
        for alias in aliases:
            self.skipped[alias] = var
        return ""

    # -- rewriting --------------------------------------------------------------------
    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        var = binding.var
        producer = lookup(self.skipped, var)
        if producer is not None:  # an alias or a fused max pool: the producer's new var
            self.set_var_remap(var, lookup(self.new_vars, producer))
            return
        plan = lookup(self.plans, var)
        if plan is None:
            super().visit_var_binding_(binding)
            return
        call = self._rebuild(self.convs[var], plan)
        new = self.builder_.emit(call, name_hint=var.name)
        self.record_of[var].function = call.args[0].name_hint
        self.new_vars[var] = new
        self.set_var_remap(var, new)

    def _rebuild(self, conv: _Conv, plan: _Plan) -> relax.Expr:
        lay = conv.layout
        geometry = ConvGeometry(
            conv.geometry.in_shape,
            conv.geometry.stride,
            conv.geometry.padding,
            conv.geometry.kernel,
            in_layout=plan.in_layout,
            dilation=conv.geometry.dilation,
        )
        epilogue = Epilogue(
            bias=conv.epilogue.bias,
            residual=conv.epilogue.residual,
            relu=conv.epilogue.relu,
            out_border=plan.out_border,
            planar=plan.planar,
            pool=plan.pool,
            residual_layout=plan.residual_layout,
        )
        channels = conv.channels
        if plan.in_inverse is not None:  # channel ids -> positions in the producer's buffer
            channels = plan.in_inverse[channels].astype(np.int32)
        # position -> original output channel (padding lanes: channel 0, never read)
        channel_of = np.zeros(conv.positions, dtype=np.int64)
        channel_of[lay.inverse] = np.arange(lay.shape[0])
        args: list[relax.Expr] = [self.visit_expr(conv.call.args[1].fields[0])]
        args += [relax.const(conv.values), relax.const(channels)]
        if not epilogue.chained:
            args.append(relax.const(lay.inverse))
        if conv.bias is not None:
            bias = conv.bias
            if epilogue.chained:
                bias = np.zeros(conv.positions, dtype=np.float32)
                bias[lay.inverse] = conv.bias
            args.append(relax.const(bias.astype(np.float32)))
        if conv.residual is not None:
            args.append(self.visit_expr(conv.residual))
            if epilogue.residual_index:
                index = channel_of if epilogue.chained else np.arange(lay.shape[0])
                if plan.residual_inverse is not None:
                    index = plan.residual_inverse[index]
                args.append(relax.const(np.asarray(index, dtype=np.int32)))

        def fn(*inputs: te.Tensor) -> te.Tensor:
            return pattern_conv2d_compute(inputs, geometry, lay, epilogue)

        out = self.builder_.call_te(fn, *args, primfunc_name_hint=f"{conv.name}_chained")
        self.new_funcs.append((out.args[0], conv.scheduled))
        return out

    def run(self) -> tvm.IRModule:
        from tvm_ext.targets import is_gpu

        target = self.options.target
        target = target if target is not None else Target.current(allow_none=True)
        # the layouts were chosen (and measured) for CPU vector lanes; GPU kernels keep NCHW
        if self.options.enabled and not is_gpu(target):
            for gv, func in self.mod_.functions_items():
                if isinstance(func, relax.Function):
                    self._plan(func)
                    if self.plans:
                        new = self.visit_expr(func)
                        new = relax.analysis.remove_all_unused(new)
                        self.builder_.update_func(gv, new)
        mod = self.builder_.get()
        for gv, scheduled in self.new_funcs:
            func = mod[gv].with_attr("op_pattern", OPAQUE)
            if scheduled:
                func = schedule_pattern_primfunc(func, target=target) or func
            mod[gv] = func
        return _drop_unused_kernels(mod)


def _drop_unused_kernels(mod: tvm.IRModule) -> tvm.IRModule:
    """Remove rewritten kernels no call refers to any more and the metadata of the rest."""
    used: set[str] = set()
    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):

            def visit(expr: Any) -> None:
                if isinstance(expr, tvm.ir.GlobalVar):
                    used.add(expr.name_hint)

            relax.analysis.post_order_visit(func, visit)
    out = tvm.IRModule({}, attrs=mod.attrs) if mod.attrs is not None else tvm.IRModule({})
    for gv, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc) and func.attrs is not None and CONV_ATTR in func.attrs:
            if gv.name_hint not in used:
                continue
            func = func.without_attr(CONV_ATTR)
        out[gv] = func
    return out


@tvm.transform.module_pass(opt_level=0, name="ChainConvLayouts")
class ChainConvLayouts:
    """Chain block-layout convs through their own layout (see the module docstring).

    Options (keyword-only, :class:`ChainOptions`): ``enabled``, ``pool`` (fuse max pools
    between convs), ``residual`` (chained residuals), ``min_pixels`` / ``max_channels``
    (which activations to chain), ``target``. After the
    pass runs, ``records`` lists one :class:`ChainRecord` per block-layout conv call.
    """

    def __init__(
        self,
        *,
        enabled: bool = True,
        pool: bool = True,
        residual: bool = True,
        min_pixels: int = ChainOptions.min_pixels,
        max_channels: int = ChainOptions.max_channels,
        target: Target | None = None,
    ) -> None:
        self.options = ChainOptions(
            enabled=enabled,
            pool=pool,
            residual=residual,
            min_pixels=min_pixels,
            max_channels=max_channels,
            target=target,
        )
        self.records: list[ChainRecord] = []

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        chainer = _Chainer(mod, self.options)
        out = chainer.run()
        self.records = chainer.records
        return out


__all__ = ["ChainConvLayouts", "ChainOptions", "ChainRecord"]
