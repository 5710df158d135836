"""Relax pass: a conv computes only the output channels that the next conv reads.

Column and channel pruning (and connectivity pruning that happens to empty a whole input
channel) leave a conv that reads only some channels of its input: the weight of every other
channel is zero. When that input is made by another conv through ops that act on each
channel alone (bias add, per-channel scale, ReLU and other elementwise activations,
instance norm, spatial pad, resize, pooling) and nothing else uses those values, the other
channels are computed and thrown away. This pass drops them at the source: the producer conv
keeps only the filters the consumer reads (its weight sliced), the ops in between run on
those channels (their per-channel constants sliced), and the consumer's weight keeps only
those input channels. The model's output does not change; the dropped work does.

WDSR-like super resolution pruned at 8x is the case in point: each block's 1x1 reduce conv
keeps 12 of the 96 channels its 3x3 expand conv makes, so 84 of the expand's 96 filters --
the most expensive layer of the model -- were computed for nothing.

Where it belongs: after BN folding and ``FoldConstant``, before the conv rewrites
(:class:`PatternSparseConv2D`, :class:`CompactStructuredConv2D`), so they see the smaller
convs. Convs with NCHW/OIHW layouts, groups 1 and constant weights take part; a chain with an
op of any other kind, or a value with a second user (a residual, a function output), is left
as it is, with the reason in :attr:`DropUnreadFilters.records`. Repeats until nothing more can
be dropped (a producer that loses filters can leave its own input channels unread).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tvm_ext._compat import IRConstant, relax, tvm
from tvm_ext.layout import SparseConvLayout, analyze_conv_weight
from tvm_ext.relax_match import is_op, spatial_pad, static_shape

#: elementwise ops on one tensor (their other arguments, if any, are not tensors)
ELEMENTWISE = frozenset(
    {
        "relax.nn.relu",
        "relax.nn.silu",
        "relax.nn.gelu",
        "relax.nn.leakyrelu",
        "relax.sigmoid",
        "relax.tanh",
        "relax.clip",
        "relax.negative",
        "relax.abs",
        "relax.exp",
        "relax.sqrt",
        "relax.square",
    }
)
#: elementwise ops on the tensor and a constant broadcast per channel (or to every channel)
WITH_CONSTANT = frozenset(
    {
        "relax.add",
        "relax.subtract",
        "relax.multiply",
        "relax.divide",
        "relax.maximum",
        "relax.minimum",
    }
)
#: ops on each channel's plane alone (NCHW)
PER_PLANE = frozenset(
    {"relax.nn.pad", "relax.image.resize2d", "relax.nn.max_pool2d", "relax.nn.avg_pool2d"}
)


@dataclass
class DropRecord:
    """One consumer conv with unread input channels: whether its producer's filters were
    dropped, and through which ops."""

    consumer: str
    rewritten: bool
    reason: str
    channels: int
    read: int
    #: channels the producer still computes: ``read``, or more where it runs as blocks of
    #: filters sharing patterns and an unread filter shares its block with read ones
    computed: int = 0
    #: the consumer's weight shape (OIHW) before the pass
    consumer_shape: tuple[int, ...] = ()
    producer: str = ""
    #: the producer's weight shape (OIHW) before the pass
    producer_shape: tuple[int, ...] = ()
    #: the ops between producer and consumer (``nn.relu``, ...), producer side first
    through: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["consumer_shape"], d["producer_shape"] = (
            list(self.consumer_shape),
            list(self.producer_shape),
        )
        d["through"] = list(self.through)
        return d


def _conv_weight(value: Any) -> np.ndarray | None:
    """The constant OIHW weight of an NCHW, groups-1 ``relax.nn.conv2d``, else None."""
    if not is_op(value, "relax.nn.conv2d"):
        return None
    a, w = value.attrs, value.args[1]
    if not isinstance(w, IRConstant) or int(a.groups) != 1:
        return None
    if str(a.data_layout) != "NCHW" or str(a.kernel_layout) != "OIHW":
        return None
    if str(a.out_layout) not in ("NCHW", ""):
        return None
    return w.value.numpy()


def _channel_constant(const: Any, channels: int) -> str | None:
    """How a constant operand broadcasts over an NCHW tensor of ``channels`` channels:
    ``"slice"`` (one value per channel), ``"keep"`` (the same for every channel) or None."""
    if not isinstance(const, IRConstant):
        return None
    shape = tuple(int(d) for d in const.value.shape)
    if len(shape) > 4:
        return None
    shape = (1,) * (4 - len(shape)) + shape
    if shape[0] != 1:
        return None
    if shape[1] == 1:
        return "keep"
    return "slice" if shape[1] == channels else None


def _data_arg(value: relax.Call, channels: int) -> tuple[int, str] | None:
    """``(argument index of the tensor the op acts on, op name)`` when ``value`` acts on
    each of that tensor's ``channels`` channels alone, else None."""
    name = value.op.name if isinstance(value.op, tvm.ir.Op) else ""
    if name in ELEMENTWISE:
        return 0, name
    if name in WITH_CONSTANT:
        for i in (0, 1):
            if isinstance(value.args[i], relax.Var) and _channel_constant(
                value.args[1 - i], channels
            ):
                return i, name
        return None
    if name in PER_PLANE:
        a = value.attrs
        if name == "relax.nn.pad":
            return (0, name) if spatial_pad(value) is not None else None
        return (0, name) if str(a.layout) == "NCHW" else None
    if name == "relax.nn.instance_norm":
        a = value.attrs
        axes = [int(v) for v in a.axes]
        gamma_beta = value.args[1:3]
        if (
            int(a.channel_axis) == 1
            and 1 not in axes
            and all(isinstance(c, IRConstant) for c in gamma_beta)
        ):
            return 0, name
    return None


@dataclass(frozen=True)
class _Plan:
    """Filters to keep per producer conv, channels to keep per chain op and consumer."""

    filters: dict[Any, np.ndarray]  # producer conv var -> kept filters
    channels: dict[Any, np.ndarray]  # chain op var (between) -> kept channels
    inputs: dict[Any, np.ndarray]  # consumer conv var -> kept input channels


def _bindings(func: relax.Function) -> tuple[dict[Any, Any], dict[Any, int]]:
    """Each bound var's value, and how many bindings (or the function's result) use it."""
    values: dict[Any, Any] = {}
    users: dict[Any, int] = {}

    def count(expr: Any) -> None:
        for v in relax.analysis.free_vars(expr):
            users[v] = users.get(v, 0) + 1

    body = func.body
    for block in body.blocks:
        for b in block.bindings:
            values[b.var] = b.value
            count(b.value)
    count(body.body)
    return values, users


def _plan(func: relax.Function, records: list[DropRecord]) -> _Plan:
    values, users = _bindings(func)
    plan = _Plan({}, {}, {})
    for var, value in values.items():
        weight = _conv_weight(value)
        if weight is None:
            continue
        channels = weight.shape[1]
        read = np.nonzero(np.any(weight != 0, axis=(0, 2, 3)))[0]
        if len(read) == channels or len(read) == 0:
            continue
        rec = DropRecord(
            var.name, False, "", channels, len(read), consumer_shape=tuple(weight.shape)
        )
        records.append(rec)
        chain: list[Any] = []
        source = value.args[0]
        while True:
            if not isinstance(source, relax.Var) or source not in values:
                rec.reason = "its input is not computed in this function"
                break
            if users.get(source, 0) != 1:
                rec.reason = f"{source.name} has other users"
                break
            shape = static_shape(source)
            if shape is None or len(shape) != 4 or shape[1] != channels:
                rec.reason = f"{source.name} is not a static NCHW tensor"
                break
            producer = values[source]
            producer_weight = _conv_weight(producer)
            if producer_weight is not None:
                rec.producer, rec.producer_shape = source.name, tuple(producer_weight.shape)
                keep = _filters_to_keep(producer_weight, read)
                rec.computed = len(keep)
                if len(keep) == channels:
                    rec.reason = "every block of the producer's filters has a read filter"
                    break
                rec.rewritten, rec.reason = True, "dropped"
                plan.filters[source] = read = keep
                break
            data = _data_arg(producer, channels) if isinstance(producer, relax.Call) else None
            if data is None:
                op = producer.op.name if isinstance(producer, relax.Call) else type(producer)
                rec.reason = f"{source.name} = {op} does not act per channel"
                break
            chain.append(source)
            rec.through.append(data[1].removeprefix("relax."))
            source = producer.args[data[0]]
        rec.through.reverse()  # producer first
        if rec.rewritten:
            for v in chain:
                plan.channels[v] = read
            plan.inputs[var] = read
    return plan


def _filters_to_keep(weight: np.ndarray, read: np.ndarray) -> np.ndarray:
    """The producer filters to compute: ``read``, rounded up per block where the producer
    runs as blocks of filters sharing patterns (:func:`analyze_conv_weight` kind "block"):
    each group of filters with the same kept kernels keeps a multiple of the block size,
    unread filters of the group filling it, so the pattern kernel still finds its blocks."""
    layout = analyze_conv_weight(weight) if weight.shape[2:] == (3, 3) else None
    if not isinstance(layout, SparseConvLayout) or layout.kind != "block":
        return read
    g, wanted = layout.block, {int(f) for f in read}
    groups: dict[bytes, list[int]] = {}
    for f in range(weight.shape[0]):
        groups.setdefault((weight[f] != 0).tobytes(), []).append(f)
    keep: list[int] = []
    for members in groups.values():
        hit = [f for f in members if f in wanted]
        fill = [f for f in members if f not in wanted]
        keep += hit + fill[: -(-len(hit) // g) * g - len(hit)]
    return np.array(sorted(keep), dtype=np.int64)


def _take(const: IRConstant, index: np.ndarray, axis: int) -> relax.Constant:
    return relax.const(np.ascontiguousarray(np.take(const.value.numpy(), index, axis=axis)))


@relax.expr_functor.mutator
class _Dropper(relax.expr_functor.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, plan: _Plan) -> None:
        super().__init__(mod)
        self.plan = plan

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        var, value = binding.var, binding.value
        filters = self.plan.filters.get(var)
        inputs = self.plan.inputs.get(var)
        channels = self.plan.channels.get(var)
        if filters is None and inputs is None and channels is None:
            super().visit_var_binding_(binding)
            return
        if channels is not None:
            new = self._per_channel(value, channels)
        else:
            new = self._conv(value, filters, inputs)
        self.set_var_remap(var, self.builder_.emit(new, name_hint=var.name))

    def _conv(
        self, value: relax.Call, filters: np.ndarray | None, inputs: np.ndarray | None
    ) -> relax.Expr:
        weight = value.args[1].value.numpy()
        if filters is not None:
            weight = weight[filters]
        if inputs is not None:
            weight = weight[:, inputs]
        a = value.attrs
        return relax.op.nn.conv2d(
            self.visit_expr(value.args[0]),
            relax.const(np.ascontiguousarray(weight)),
            strides=a.strides,
            padding=a.padding,
            dilation=a.dilation,
            groups=1,
            data_layout="NCHW",
            kernel_layout="OIHW",
            out_dtype=a.out_dtype,
        )

    def _per_channel(self, value: relax.Call, kept: np.ndarray) -> relax.Expr:
        name = value.op.name
        args = list(value.args)
        if name in WITH_CONSTANT:
            for i in (0, 1):
                if not isinstance(args[i], IRConstant):
                    args[i] = self.visit_expr(args[i])
                    continue
                shape = args[i].value.shape
                # one value per channel (the planner checked it broadcasts per channel or
                # to every channel): the channel axis is the third from the right
                if len(shape) >= 3 and int(shape[len(shape) - 3]) > 1:
                    args[i] = _take(args[i], kept, axis=len(shape) - 3)
        elif name == "relax.nn.instance_norm":
            args = [self.visit_expr(args[0]), _take(args[1], kept, 0), _take(args[2], kept, 0)]
        else:
            args[0] = self.visit_expr(args[0])
        return relax.Call(value.op, args, value.attrs, value.ty_args)

    def run(self, mod: tvm.IRModule) -> tvm.IRModule:
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                self.builder_.update_func(gv, self.visit_expr(func))
        return self.builder_.get()


@tvm.transform.module_pass(opt_level=0, name="DropUnreadFilters")
class DropUnreadFilters:
    """Drop the filters of a conv whose outputs the next conv never reads (see the module
    docstring). ``records`` lists every conv with unread input channels, last round's
    verdicts last."""

    def __init__(self, *, max_rounds: int = 8) -> None:
        if max_rounds < 1:
            raise ValueError(f"max_rounds must be >= 1, got {max_rounds!r}")
        self.max_rounds = max_rounds
        self.records: list[DropRecord] = []

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        dropped: list[DropRecord] = []
        left: list[DropRecord] = []
        for _ in range(self.max_rounds):
            records: list[DropRecord] = []
            plan = _Plan({}, {}, {})
            for _gv, func in mod.functions_items():
                if isinstance(func, relax.Function):
                    one = _plan(func, records)
                    plan.filters.update(one.filters)
                    plan.channels.update(one.channels)
                    plan.inputs.update(one.inputs)
            dropped += [r for r in records if r.rewritten]
            left = [r for r in records if not r.rewritten]
            if not plan.inputs:
                break
            mod = _Dropper(mod, plan).run(mod)
        # a consumer narrowed in an earlier round may still read only some of the filters
        # it now gets (block padding): its first record says what happened
        done = {r.consumer for r in dropped}
        self.records = dropped + [r for r in left if r.consumer not in done]
        return mod
