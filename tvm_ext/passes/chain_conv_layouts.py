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

Depthwise kernels (:class:`DepthwiseConv2D`) chain too: a depthwise conv is per channel, so
it runs in the order of the block conv before it (weights and bias permuted at compile time),
reads that conv's rows of lanes in place (a ReLU6 / clip between them applied as it reads)
and writes the same rows of lanes for the convs after it (MobileNet-V2's 1x1 -> depthwise ->
1x1 block without an NCHW tensor in between). An edge into a depthwise conv is never planar.

Norms chain as well (:mod:`tvm_ext.norm_nodes`): an instance / group norm that is a block
conv's only user, with a residual add and ReLU after it, becomes one kernel
(:mod:`tvm_ext.te.chained_norm`) reading the conv's rows of lanes in place and writing the
next convs' input in the same rows of lanes: the border they pad with (zeros, mirrored or
edge: a reflection pad those convs had absorbed) and the nearest upsampling they read are
index arithmetic in the norm's output; a channel ``take`` before a conv folds into its
channel indices. Else the norm writes NCHW.

Where it belongs: right after the conv rewrites, before the rest of the pipeline::

    seq = tvm.transform.Sequential([PatternSparseConv2D(), BlockedConv2D(),
                                    ChainConvLayouts(), relax.get_default_pipeline(target)])

CPU targets only (a GPU target in the options or in scope leaves the module unchained).
A model with nothing to chain comes out exactly as it went in (less the rewriters'
:data:`~tvm_ext.passes.pattern_sparse_conv2d.CONV_ATTR` metadata, which this pass always
removes); :attr:`ChainConvLayouts.records` says what was chained and why not.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tvm_ext._compat import IRConstant, Target, relax, te, tirx, tvm
from tvm_ext.conv_rewriter import CONV_ATTR, OPAQUE
from tvm_ext.layout import SparseConvLayout
from tvm_ext.norm_nodes import NormNode, find_norm_node
from tvm_ext.passes.depthwise_conv2d import DEPTHWISE_ATTR, clip_bounds, read_depthwise
from tvm_ext.relax_match import is_op, lookup, static_shape
from tvm_ext.schedules.dispatch import (
    SCHEDULED_ATTR,
    schedule_depthwise_primfunc,
    schedule_norm_primfunc,
    schedule_pattern_primfunc,
)
from tvm_ext.te.chained_norm import ChainedNorm, NormOutput, norm_compute
from tvm_ext.te.conv_spec import BlockedActivation, ConvGeometry, Epilogue
from tvm_ext.te.depthwise_conv import (
    DepthwiseChain,
    DepthwiseEpilogue,
    DepthwisePlan,
    depthwise_arguments,
    depthwise_compute,
    depthwise_weight,
    plan_depthwise,
)
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
    #: chain depthwise kernels (and a clip before them) between block-layout convs
    depthwise: bool = True
    #: chain instance / group norms (with a residual add and ReLU after them) that follow a
    #: block-layout conv: the norm reads the conv's layout and writes the next conv's input
    norms: bool = True
    #: a chained norm writes the upsampled map for convs that upsample its output (4x the
    #: bytes of the map, which those convs otherwise upsample in cache; measured 5-10 %
    #: faster end to end on the style nets, BENCHMARKS.md); off, they read it NCHW
    norm_upsample: bool = True
    #: the target the rewriters scheduled for (default: ``with target:`` scope, else host)
    target: Any = None

    def __post_init__(self) -> None:
        if self.min_pixels < 0:
            raise ValueError(f"min_pixels must be >= 0, got {self.min_pixels}")
        if self.max_channels < 1:
            raise ValueError(f"max_channels must be >= 1, got {self.max_channels}")


@dataclass
class ChainRecord:
    """One block-layout conv call, depthwise conv or chained norm after the pass (JSON-ready
    through :meth:`to_dict`)."""

    function: str
    #: ``block`` (a block-layout conv), ``depthwise`` or ``norm`` (a chained norm node)
    kind: str = "block"
    #: logical NCHW input and (pre-pool) output of the conv (a norm: its map, before any
    #: upsampling it writes)
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()
    chained_input: bool = False
    chained_output: bool = False
    #: the chained output is planar (NCHW order with a border), not the conv's rows of lanes
    planar: bool = False
    pool: int = 1
    chained_residual: bool = False
    #: why the output stays NCHW (empty if chained)
    reason: str = ""
    fused: tuple[str, ...] = field(default_factory=tuple)
    #: a chained norm's output: the border it fills for the convs after it (``zeros``,
    #: ``reflect``, ``replicate``: their pad op done here) and its nearest upsampling
    out_pad_mode: str = "zeros"
    upsample: int = 1

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


@dataclass(frozen=True)
class _Depthwise:
    """A call of a depthwise kernel, decoded from its arguments and description."""

    call: relax.Call
    name: str
    scheduled: bool
    plan: DepthwisePlan
    epilogue: DepthwiseEpilogue
    weight: np.ndarray
    bias: np.ndarray | None

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        n, c = self.plan.in_shape[:2]
        return (n, c, *self.plan.out_hw)


def _decode_depthwise(call: relax.Call, mod: tvm.IRModule) -> _Depthwise | None:
    """The depthwise conv behind ``call_tir(depthwise kernel, ...)`` (no fused residual)."""
    if not is_op(call, "relax.call_tir"):
        return None
    gv = call.args[0]
    func = mod[gv] if any(g.same_as(gv) for g in mod.get_global_vars()) else None
    attrs = func.attrs if isinstance(func, tirx.PrimFunc) and func.attrs is not None else {}
    if DEPTHWISE_ATTR not in attrs:
        return None
    plan, epilogue = read_depthwise(str(attrs[DEPTHWISE_ATTR]))
    args = list(call.args[1].fields)
    arrays = 3 if plan.table else 1
    consts = args[1 : 1 + arrays + int(epilogue.bias)]
    if epilogue.residual or not all(isinstance(a, IRConstant) for a in consts):
        return None
    values = [a.value.numpy() for a in consts]
    return _Depthwise(
        call=call,
        name=gv.name_hint,
        scheduled=bool(int(attrs.get(SCHEDULED_ATTR, 0))),
        plan=plan,
        epilogue=epilogue,
        weight=depthwise_weight(plan, values[:arrays]),
        bias=values[arrays] if epilogue.bias else None,
    )


@dataclass(frozen=True)
class _Uses:
    """Who reads a producer's output: (user var, ``input`` / ``residual``, the channels it
    takes (a ``take`` between them) or None), the bindings in between (aliases, takes, a
    fused pool or clip), the pool window, the clip bounds."""

    roles: list[tuple[Any, str, np.ndarray | None]]
    aliases: list[Any]
    pool: int = 1
    clip: tuple[float, float] | None = None


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
    #: depthwise consumers: the clip applied to the chained input as it is read
    in_clip: tuple[float, float] | None = None
    #: norm producers: how the chained output's border is filled, and its upsampling
    out_mode: str = "zeros"
    out_upsample: int = 1


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
        pad_mode=desc.get("pad_mode", "zeros"),
        upsample=int(desc.get("upsample", 1)),
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


def _channel_take(call: Any) -> np.ndarray | None:
    """The channels a ``take`` along axis 1 of an NCHW map picks (constant indices), or
    None."""
    if not is_op(call, "relax.take") or not isinstance(call.args[1], IRConstant):
        return None
    shape = static_shape(call.args[0])
    axis = call.attrs.axis
    if shape is None or len(shape) != 4 or axis is None or int(axis) % 4 != 1:
        return None
    picked = call.args[1].value.numpy()
    if picked.ndim != 1 or picked.size == 0 or picked.min() < 0 or picked.max() >= shape[1]:
        return None
    return picked.astype(np.int64)


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


def _channel_of(positions: np.ndarray, slots: int) -> np.ndarray:
    """Position -> the channel stored there, for ``positions`` (channel -> position) in a
    buffer of ``slots`` positions; positions no channel maps to say channel 0 (never read)."""
    channel_of = np.zeros(slots, dtype=np.int64)
    channel_of[positions] = np.arange(len(positions))
    return channel_of


def _residual_index(channels: np.ndarray, residual_inverse: np.ndarray | None) -> np.ndarray:
    """Where the residual holds each of ``channels``: the channel itself (NCHW residual) or
    its position in the residual's chained buffer."""
    index = channels if residual_inverse is None else residual_inverse[channels]
    return np.asarray(index, dtype=np.int32)


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
        self.new_dw_funcs: list[tuple[tvm.ir.GlobalVar, bool]] = []
        self.convs: dict[Any, _Conv] = {}
        self.dws: dict[Any, _Depthwise] = {}
        #: chained norm nodes by their value's var, and by every var they bind
        self.norms: dict[Any, NormNode] = {}
        self.norm_parts: dict[Any, NormNode] = {}
        #: norms after a block-layout conv that stay TVM's, and why
        self.left_norms: dict[Any, tuple[NormNode, str]] = {}
        self.new_norm_funcs: list[tvm.ir.GlobalVar] = []
        self.plans: dict[Any, _Plan] = {}
        #: alias / pool / clip / channel-take bindings dropped, and the producer var they
        #: stand for
        self.skipped: dict[Any, Any] = {}
        self.new_vars: dict[Any, Any] = {}

    # -- planning ---------------------------------------------------------------------
    def _plan(self, func: relax.Function) -> None:
        graph = _Graph(func)
        self.convs, self.plans, self.skipped, self.new_vars = {}, {}, {}, {}
        self.dws, self.record_of, self.norms, self.norm_parts = {}, {}, {}, {}
        self.left_norms = {}
        for var, value in graph.values.items():
            if not isinstance(value, relax.Call):
                continue
            conv = _decode(value, self.mod_)
            if conv is not None:
                self.convs[var] = conv
            dw = _decode_depthwise(value, self.mod_) if self.options.depthwise else None
            if dw is not None:
                self.dws[var] = dw
            node = (
                find_norm_node(var, graph.values, graph.users, graph.outputs)
                if self.options.norms
                else None
            )
            if node is not None:
                self.norms[node.out] = node
        reasons: dict[Any, str] = {}
        self._keep_chainable_norms(graph)
        for out, (_, why) in self.left_norms.items():
            reasons[out] = why
        self._keep_chainable_depthwise(graph, reasons)
        # in binding order: a depthwise conv's or norm's output layout follows its input's
        order = [b.var for block in func.body.blocks for b in block.bindings]
        for var in order:
            if any(lookup(t, var) is not None for t in (self.convs, self.dws, self.norms)):
                reason = self._plan_producer(graph, var)
                if reason:
                    reasons[var] = reason
        for var in order:
            self._record(var, _get(reasons, var, ""))

    def _record(self, var: Any, reason: str) -> None:
        conv, dw = lookup(self.convs, var), lookup(self.dws, var)
        left = lookup(self.left_norms, var)
        node: NormNode | None = lookup(self.norms, var) or (left[0] if left else None)
        plan = _get(self.plans, var, None)
        fused: tuple[str, ...] = ()
        if conv is not None:
            oh, ow = conv.geometry.out_hw
            shapes = (
                conv.geometry.in_shape,
                (conv.geometry.in_shape[0], conv.layout.shape[0], oh, ow),
            )
            name, kind = conv.name, "block"
        elif dw is not None:
            shapes, name, kind = (dw.plan.in_shape, dw.out_shape), dw.name, "depthwise"
            if plan is not None and plan.in_clip is not None:
                fused = ("clip",)
        elif node is not None:
            shapes, name, kind, fused = (node.shape, node.shape), node.fused[0], "norm", node.fused
        else:  # not a kernel the pass handles
            return
        self.record_of[var] = ChainRecord(
            function=name,
            kind=kind,
            in_shape=shapes[0],
            out_shape=shapes[1],
            chained_input=plan is not None and plan.in_layout is not None,
            chained_output=plan is not None and plan.out_border is not None,
            planar=plan is not None and plan.planar,
            pool=plan.pool if plan is not None else 1,
            chained_residual=plan is not None and plan.residual_layout is not None,
            reason=reason,
            fused=fused,
            out_pad_mode=plan.out_mode if plan is not None else "zeros",
            upsample=plan.out_upsample if plan is not None else 1,
        )
        self.records.append(self.record_of[var])

    def _keep_chainable_norms(self, graph: _Graph) -> None:
        """Keep in ``self.norms`` the nodes that read a block-layout conv's output as its only
        use (the conv then writes its rows of lanes for the norm) and either write a chained
        output or have no residual to add (an NCHW output gathers the norm's input from the
        conv's lanes, and a residual from its own: measured slower than TVM's norm on NCHW);
        remember their parts."""
        self.norm_parts = {part: node for node in self.norms.values() for part in node.bound}
        changed = True
        while changed:
            changed = False
            for out, node in list(self.norms.items()):
                why = self._why_not_chained(graph, out, node)
                if why is not None:
                    self.norms = {v: n for v, n in self.norms.items() if not v.same_as(out)}
                    self.norm_parts = {p: n for p, n in self.norm_parts.items() if n is not node}
                    if why:
                        self.left_norms[out] = (node, why)
                    changed = True

    def _why_not_chained(self, graph: _Graph, out: Any, node: NormNode) -> str | None:
        """None if the norm node ``out`` can be chained; else why not ("" where its input is
        no block-layout conv: nothing to say)."""
        conv = lookup(self.convs, node.data)
        if conv is None:
            return ""
        oh, ow = conv.geometry.out_hw
        found = self._uses(graph, node.data, producer="block")
        if not (
            isinstance(found, _Uses)
            and len(found.roles) == 1
            and found.roles[0][0].same_as(out)
            and found.pool == 1
        ):
            return "the conv before it has other users: TVM's norm on NCHW"
        if conv.layout.shape[0] > self.options.max_channels:
            return f"{conv.layout.shape[0]} channels, above max_channels: TVM's norm on NCHW"
        if oh * ow < self.options.min_pixels:
            return f"output {oh}x{ow} below min_pixels {self.options.min_pixels}"
        if node.residual is not None:
            output = self._norm_output(graph, out)
            if isinstance(output, str):
                return f"a residual add and an NCHW output ({output}): TVM's norm on NCHW"
        return None

    def _norm_output(self, graph: _Graph, var: Any) -> tuple[_Uses, int, str, int] | str:
        """How the norm node ``var`` writes a chained output: its uses, border, pad mode and
        upsampling; else why it writes NCHW."""
        found = self._uses(graph, var, producer="norm")
        if isinstance(found, str):
            return found
        inputs = [lookup(self.convs, u) for u, role, _ in found.roles if role == "input"]
        modes = {c.geometry.pad_mode for c in inputs} or {"zeros"}
        ups = {c.geometry.upsample for c in inputs} or {1}
        if len(modes) > 1 or len(ups) > 1:
            return "the convs after it pad or upsample it differently"
        if ups != {1} and not self.options.norm_upsample:
            return "the convs after it upsample it (they read it NCHW, upsampled in cache)"
        if ups != {1} and any(role == "residual" for _, role, _ in found.roles):
            return "read upsampled by a conv and as a residual"
        border = max([max(c.geometry.padding) for c in inputs] or [0])
        return found, border, modes.pop(), ups.pop()

    def _keep_chainable_depthwise(self, graph: _Graph, reasons: dict[Any, str]) -> None:
        """Keep in ``self.dws`` the depthwise convs whose every user reads the chained
        layout (a depthwise kernel takes a chained input only if it writes one too)."""
        changed = True
        while changed:
            changed = False
            for var, dw in list(self.dws.items()):
                oh, ow = dw.plan.out_hw
                found = self._uses(graph, var, producer="depthwise")
                if oh * ow < self.options.min_pixels:
                    found = f"output {oh}x{ow} below min_pixels {self.options.min_pixels}"
                if isinstance(found, str):
                    reasons[var] = found
                    self.dws = {v: d for v, d in self.dws.items() if not v.same_as(var)}
                    changed = True

    def _plan_of(self, var: Any) -> _Plan:
        plan = _get(self.plans, var, None)
        if plan is None:
            plan = _Plan()
            self.plans[var] = plan
        return plan

    def _uses(self, graph: _Graph, var: Any, *, producer: str) -> _Uses | str:
        """How ``var``'s output is used if every use can read the chained layout (through a
        max pool or, before depthwise convs, a clip, after a block conv; through a channel
        ``take`` into block-layout convs); else the reason. ``producer``: ``block``,
        ``depthwise`` or ``norm``."""
        found = graph.uses(var)
        if found is None:
            return "the output leaves the function"
        users, aliases = found
        pool, clip = 1, None
        if producer == "block" and len(users) == 1:
            one_var, one = users[0]
            bounds = clip_bounds(one) if self.options.depthwise else None
            if _pool_window(one) is not None and self.options.pool:
                found = graph.uses(one_var)
                if found is None:
                    return "the max pool's output leaves the function"
                users, more = found
                pool = int(_pool_window(one) or 1)
                aliases = [*aliases, one_var, *more]
            elif bounds is not None and bounds[0] <= 0.0 <= bounds[1]:
                found = graph.uses(one_var)
                if found is not None and found[0]:
                    after, more = found
                    if all(lookup(self.dws, u) is not None for u, _ in after):
                        users, aliases, clip = after, [*aliases, one_var, *more], bounds
        if not users:
            return "no users"
        taken = self._through_takes(graph, users, aliases)
        if isinstance(taken, str):
            return taken
        users, channel_maps, takes = taken
        roles: list[tuple[Any, str, np.ndarray | None]] = []
        reached = [var, *aliases]
        for user, value in users:
            picked = lookup(channel_maps, user)
            node = lookup(self.norm_parts, user)
            if node is not None:
                if user.same_as(node.bound[0]) and producer == "block":
                    roles.append((node.out, "input", None))
                    continue
                if node.add is not None and user.same_as(node.add) and _in(reached, node.residual):
                    if not self.options.residual:
                        return "used as a residual (residual chaining disabled)"
                    roles.append((node.out, "residual", None))
                    continue
            consumer = lookup(self.convs, user)
            dw = lookup(self.dws, user)
            if consumer is None and dw is None:
                op = value.op.name if isinstance(value, relax.Call) else type(value).__name__
                return f"used by {op}, not a block-layout conv"
            args = list(value.args[1].fields)
            as_input = _in(reached, args[0]) or picked is not None
            if dw is not None:
                if producer == "norm":
                    return "a depthwise conv reads it"
                roles.append((user, "input", None))
                continue
            as_residual = consumer.residual is not None and _in(reached, consumer.residual)
            if as_residual and not self.options.residual:
                return "used as a residual (residual chaining disabled)"
            if as_input and consumer.geometry.absorbs and producer != "norm":
                return "a conv reads it mirrored or upsampled (only a norm writes those)"
            if as_input:
                roles.append((user, "input", picked))
            if as_residual:
                roles.append((user, "residual", None))
        return _Uses(roles, [*aliases, *takes], pool, clip)

    def _through_takes(
        self, graph: _Graph, users: list[tuple[Any, Any]], aliases: list[Any]
    ) -> tuple[list[tuple[Any, Any]], dict[Any, np.ndarray], list[Any]] | str:
        """``users`` with each ``take`` of channels replaced by the block-layout convs reading
        it as their input, the channels each of those takes, and the takes' vars."""
        out: list[tuple[Any, Any]] = []
        maps: dict[Any, np.ndarray] = {}
        takes: list[Any] = []
        for user, value in users:
            picked = _channel_take(value)
            if picked is None:
                out.append((user, value))
                continue
            found = graph.uses(user)
            if found is None or found[1] or not found[0]:
                return "a channel take's output leaves the function or has no users"
            for reader, rvalue in found[0]:
                conv = lookup(self.convs, reader)
                if (
                    conv is None
                    or not rvalue.args[1].fields[0].same_as(user)
                    or (conv.residual is not None and conv.residual.same_as(user))
                ):
                    return "a channel take feeds something other than a block-layout conv input"
                out.append((reader, rvalue))
                maps[reader] = picked
            takes.append(user)
        return out, maps, takes

    def _padding_of(self, var: Any) -> int:
        conv = lookup(self.convs, var)
        if conv is not None:
            return max(conv.geometry.padding)
        if lookup(self.norms, var) is not None:
            return 0
        return max(self.dws_of(var).plan.padding)

    def dws_of(self, var: Any) -> _Depthwise:
        dw: _Depthwise = lookup(self.dws, var)
        return dw

    def _plan_producer(self, graph: _Graph, var: Any) -> str:
        """Chain ``var``'s output if every use can read the chained layout; else the reason."""
        conv, node = lookup(self.convs, var), lookup(self.norms, var)
        if conv is not None:
            oh, ow = conv.geometry.out_hw
            if oh * ow < self.options.min_pixels:
                return f"output {oh}x{ow} below min_pixels {self.options.min_pixels}"
        if node is not None:
            return self._plan_norm(graph, var)
        found = self._uses(graph, var, producer="block" if conv is not None else "depthwise")
        if isinstance(found, str):
            return found
        roles = found.roles
        border = max([self._padding_of(u) for u, role, _ in roles if role == "input"] or [0])
        plan = self._plan_of(var)
        if conv is not None:
            k = conv.layout.shape[0]
            into_dw = any(lookup(self.dws, u) is not None for u, _, _ in roles)
            planar = k > self.options.max_channels and not into_dw
            act = BlockedActivation(k, 1, border) if planar else conv.activation(border)
            positions = np.arange(k, dtype=np.int32) if planar else conv.layout.inverse
        else:  # depthwise: the layout of its chained input, or its own blocks of lanes
            planar = False
            if plan.in_layout is not None and plan.in_inverse is not None:
                rows, lanes = plan.in_layout.rows, plan.in_layout.lanes
                positions = plan.in_inverse
            else:
                c, lanes = self.dws_of(var).plan.in_shape[1], self.dws_of(var).plan.lanes
                rows, positions = -(-c // lanes), np.arange(c, dtype=np.int32)
            act = BlockedActivation(rows, lanes, border)
        plan.out_border, plan.pool, plan.planar = border, found.pool, planar
        self._hand_over(var, found, act, positions)
        return ""

    def _plan_norm(self, graph: _Graph, var: Any) -> str:
        """A chained norm node writes the chained input of the convs after it (the border
        filled as they pad, upsampled as they upsample), else NCHW (the reason)."""
        plan = self._plan_of(var)
        if plan.in_layout is None or plan.in_inverse is None:  # its conv is always chained
            raise RuntimeError("a chained norm node's input was not chained")
        output = self._norm_output(graph, var)
        if isinstance(output, str):
            return output
        found, border, mode, upsample = output
        plan.out_border, plan.out_mode, plan.out_upsample = border, mode, upsample
        act = BlockedActivation(plan.in_layout.rows, plan.in_layout.lanes, border)
        self._hand_over(var, found, act, plan.in_inverse)
        return ""

    def _hand_over(
        self, var: Any, found: _Uses, act: BlockedActivation, positions: np.ndarray
    ) -> None:
        """Tell each user of ``var`` how its chained value is stored (``positions``: channel
        -> position in ``act``); the bindings in between stand for ``var``."""
        for user, role, picked in found.roles:
            target = self._plan_of(user)
            if role == "input":
                mapped = positions if picked is None else positions[picked]
                target.in_layout, target.in_inverse = act, np.asarray(mapped, np.int32)
                if lookup(self.dws, user) is not None:
                    target.in_clip = found.clip
            else:
                target.residual_layout, target.residual_inverse = act, positions
        for alias in found.aliases:
            self.skipped[alias] = var

    # -- rewriting --------------------------------------------------------------------
    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        var = binding.var
        producer = lookup(self.skipped, var)
        if producer is not None:  # an alias or a fused max pool: the producer's new var
            self.set_var_remap(var, lookup(self.new_vars, producer))
            return
        node = lookup(self.norm_parts, var)
        if node is not None and not var.same_as(node.out):
            return  # the norm call, its add or ReLU: the node's kernel computes them
        plan = lookup(self.plans, var)
        if plan is None:
            super().visit_var_binding_(binding)
            return
        conv = lookup(self.convs, var)
        if conv is not None:
            call = self._rebuild(conv, plan)
        elif node is not None:
            call = self._rebuild_norm(node, plan)
        else:
            call = self._rebuild_dw(var, plan)
        new = self.builder_.emit(call, name_hint=var.name)
        self.record_of[var].function = call.args[0].name_hint
        self.new_vars[var] = new
        self.set_var_remap(var, new)

    def _rebuild(self, conv: _Conv, plan: _Plan) -> relax.Expr:
        lay = conv.layout
        geometry = conv.geometry
        if plan.in_layout is not None:  # read in place: the writer filled the border, upsampled
            geometry = dataclasses.replace(
                geometry, in_layout=plan.in_layout, pad_mode="zeros", upsample=1
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
                index = (
                    _channel_of(lay.inverse, conv.positions)
                    if epilogue.chained
                    else np.arange(lay.shape[0])
                )
                args.append(relax.const(_residual_index(index, plan.residual_inverse)))

        def fn(*inputs: te.Tensor) -> te.Tensor:
            return pattern_conv2d_compute(inputs, geometry, lay, epilogue)

        out = self.builder_.call_te(fn, *args, primfunc_name_hint=f"{conv.name}_chained")
        self.new_funcs.append((out.args[0], conv.scheduled))
        return out

    def _rebuild_dw(self, var: Any, plan: _Plan) -> relax.Expr:
        """A depthwise kernel on the ``channels`` strategy in the chained layouts: its
        channels at the positions of its chained input (else its own order), weights and
        bias permuted to them."""
        dw = self.dws_of(var)
        if plan.out_border is None:  # _keep_chainable_depthwise guarantees a chained output
            raise RuntimeError(f"{dw.name}: a chained depthwise kernel must write a chain")
        n, c, h, w = dw.plan.in_shape
        weight = dw.weight
        if plan.in_layout is not None and plan.in_inverse is not None:
            lanes, count = plan.in_layout.lanes, plan.in_layout.rows * plan.in_layout.lanes
            positions = plan.in_inverse
            weight = np.zeros((count, 1, 3, 3), np.float32)
            weight[positions] = dw.weight
            in_shape = (n, count, h, w)
        else:
            lanes, positions, in_shape = dw.plan.lanes, np.arange(c), dw.plan.in_shape
        dplan = plan_depthwise(
            weight, in_shape, dw.plan.stride, dw.plan.padding, lanes=lanes, strategy="channels"
        )
        chain = DepthwiseChain(plan.in_layout, plan.in_clip, plan.out_border)
        args: list[relax.Expr] = [self.visit_expr(dw.call.args[1].fields[0])]
        args += [relax.const(a) for a in depthwise_arguments(dplan, weight)]
        if dw.bias is not None:
            bias = np.zeros(dplan.blocks * lanes, np.float32)
            bias[positions] = dw.bias
            args.append(relax.const(bias))

        def fn(*inputs: te.Tensor) -> te.Tensor:
            return depthwise_compute(inputs, dplan, dw.epilogue, chain)

        out = self.builder_.call_te(fn, *args, primfunc_name_hint=f"{dw.name}_chained")
        self.new_dw_funcs.append((out.args[0], dw.scheduled))
        return out

    def _rebuild_norm(self, node: NormNode, plan: _Plan) -> relax.Expr:
        """The node's chained norm kernel: it reads the conv before it in that conv's rows of
        lanes (gamma, beta and groups permuted to them) and writes the convs' chained input
        after it, or NCHW."""
        lay, positions = plan.in_layout, plan.in_inverse
        if lay is None or positions is None:
            raise RuntimeError(f"{node.fused[0]}: a chained norm needs a chained input")
        slots = lay.rows * lay.lanes
        out = None
        if plan.out_border is not None:
            out = NormOutput(plan.out_border, plan.out_mode, plan.out_upsample)
        spec = ChainedNorm(
            node.shape,
            lay,
            node.epsilon,
            group_size=node.group_size,
            relu=node.relu,
            relu_first=node.relu_first,
            residual=node.residual is not None,
            residual_layout=plan.residual_layout,
            out=out,
        )
        args: list[relax.Expr] = [self.visit_expr(node.data)]
        args += [relax.const(a) for a in node.kernel_arrays(positions, slots)]
        if node.residual is not None:
            index = _residual_index(_channel_of(positions, slots), plan.residual_inverse)
            args += [self.visit_expr(node.residual), relax.const(index)]
        if out is None:
            args.append(relax.const(positions.astype(np.int32)))

        def fn(*inputs: te.Tensor) -> te.Tensor:
            return norm_compute(inputs, spec)

        call = self.builder_.call_te(fn, *args, primfunc_name_hint=f"{node.fused[0]}_chained")
        self.new_norm_funcs.append(call.args[0])
        return call

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
        for gv in self.new_norm_funcs:
            func = mod[gv].with_attr("op_pattern", OPAQUE)
            mod[gv] = schedule_norm_primfunc(func, target=target) or func
        for gv, scheduled in self.new_dw_funcs:
            func = mod[gv].with_attr("op_pattern", OPAQUE)
            if scheduled:
                func = schedule_depthwise_primfunc(func, target=target) or func
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
        if isinstance(func, tirx.PrimFunc) and func.attrs is not None:
            described = [a for a in (CONV_ATTR, DEPTHWISE_ATTR) if a in func.attrs]
            if described and gv.name_hint not in used:
                continue
            for attr in described:
                func = func.without_attr(attr)
        out[gv] = func
    return out


@tvm.transform.module_pass(opt_level=0, name="ChainConvLayouts")
class ChainConvLayouts:
    """Chain block-layout convs through their own layout (see the module docstring).

    Options (keyword-only, :class:`ChainOptions`): ``enabled``, ``pool`` (fuse max pools
    between convs), ``residual`` (chained residuals), ``min_pixels`` / ``max_channels``
    (which activations to chain), ``depthwise`` (chain depthwise kernels), ``norms`` (chain
    instance / group norms after convs), ``norm_upsample`` (a chained norm writes the
    upsampled map for convs that upsample it), ``target``. After the pass runs, ``records`` lists
    one :class:`ChainRecord` per block-layout conv call, depthwise conv and chained norm.
    """

    def __init__(
        self,
        *,
        enabled: bool = True,
        pool: bool = True,
        residual: bool = True,
        min_pixels: int = ChainOptions.min_pixels,
        max_channels: int = ChainOptions.max_channels,
        depthwise: bool = ChainOptions.depthwise,
        norms: bool = ChainOptions.norms,
        norm_upsample: bool = ChainOptions.norm_upsample,
        target: Target | None = None,
    ) -> None:
        self.options = ChainOptions(
            enabled=enabled,
            pool=pool,
            residual=residual,
            min_pixels=min_pixels,
            max_channels=max_channels,
            depthwise=depthwise,
            norms=norms,
            norm_upsample=norm_upsample,
            target=target,
        )
        self.records: list[ChainRecord] = []

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        chainer = _Chainer(mod, self.options)
        out = chainer.run()
        self.records = chainer.records
        return out


__all__ = ["ChainConvLayouts", "ChainOptions", "ChainRecord"]
