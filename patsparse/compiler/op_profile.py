"""Per-op profile of a compiled model against PyTorch's own ops on the same input.

Every function call of the compiled model is timed inside whole-model runs (a VM instrument
reads the clock before and after each call), and every leaf module of the PyTorch model
inside its own runs (forward hooks). The two are matched in execution order by output
shape (a chained conv's logical NCHW shape, not its blocked layout): a compiled call takes
the next PyTorch op that produced its output shape, plus the PyTorch ops before it that
have no call of their own (TVM fused them into this one, e.g. a conv's bias, BatchNorm and
ReLU). Rows whose ratio (PyTorch ms / ours) is below 1 are the
ops slower than PyTorch: ``patsparse profile`` prints them and ``compile --profile`` warns.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from patsparse.bench.allocator import steady_allocator
from patsparse.compiler.compile import compile_torch
from tvm_ext._compat import host_target, relax, set_threads, tensor
from tvm_ext.pipeline import CompiledModel

#: a call whose time is below this (ms) is not flagged, whatever its ratio (timer noise)
NOISE_MS = 0.02


@dataclass(frozen=True)
class OpCall:
    """One function call of the compiled model per run, in call order."""

    function: str
    out_shape: tuple[int, ...]
    times: list[float]
    #: channels of its first argument where that is an NCHW tensor (a conv's input)
    in_channels: int | None = None
    #: a chained norm that writes its output mirrored / edge-padded (the border mode) and
    #: nearest-upsampled for the convs after it: it does PyTorch's pad and Upsample there
    pad_mode: str = "zeros"
    upsample: int = 1


@dataclass(frozen=True)
class TorchOp:
    """One leaf-module call of the PyTorch model per run, in execution order."""

    module: str
    kind: str
    out_shape: tuple[int, ...]
    times: list[float]
    #: a conv's input channels (None for other modules)
    in_channels: int | None = None


@dataclass
class OpRow:
    """A compiled call and the PyTorch ops it stands for."""

    op: str
    shape: tuple[int, ...]
    kind: str
    ms: float
    torch_ms: float | None
    torch_ops: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        """PyTorch's time / ours (above 1: faster than PyTorch)."""
        if self.torch_ms is None or self.ms <= 0:
            return None
        return self.torch_ms / self.ms

    @property
    def slower_than_pytorch(self) -> bool:
        return self.ratio is not None and self.ratio < 1 and self.ms >= NOISE_MS

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio, "slower": self.slower_than_pytorch}


def compiled_op_times(compiled: CompiledModel, x: np.ndarray, repeat: int) -> list[OpCall]:
    """Every function call of ``compiled`` on ``x``, in call order, timed in ``repeat`` runs
    (after an uninstrumented warm-up run)."""
    vm = relax.VirtualMachine(compiled.executable, compiled.device)
    runs: list[list[tuple[str, tuple[int, ...], float]]] = []
    started: list[tuple[str, float, tuple[int, ...]]] = []
    first_args: dict[str, tuple[int, ...]] = {}

    def instrument(_func: Any, symbol: str, before: bool, _ret: Any, *args: Any) -> int:
        now = time.perf_counter()
        if symbol.startswith("vm.builtin") or symbol.startswith("relax."):
            return 0  # the VM's own bookkeeping (allocations, shape checks)
        if before:
            shapes = [tuple(int(d) for d in a.shape) for a in args if hasattr(a, "shape")]
            if shapes:
                first_args.setdefault(symbol, shapes[0])
            started.append((symbol, time.perf_counter(), shapes[-1] if shapes else ()))
        elif started and started[-1][0] == symbol:
            name, begin, out = started.pop()
            runs[-1].append((name, out, (now - begin) * 1e3))
        return 0

    xt = tensor(np.ascontiguousarray(x, dtype=np.float32), compiled.device)
    vm["main"](xt)
    vm.set_instrument(instrument)
    for _ in range(repeat):
        runs.append([])
        vm["main"](xt)
    first = runs[0]

    def in_channels(name: str) -> int | None:
        shape = first_args.get(name, ())
        return shape[1] if len(shape) == 4 else None

    return [
        OpCall(name, out, [r[i][2] for r in runs if len(r) == len(first)], in_channels(name))
        for i, (name, out, _) in enumerate(first)
    ]


@contextmanager
def _leaf_hooks(model: nn.Module, seen: list[tuple[str, str, tuple[int, ...], float]]) -> Iterator:
    started: dict[str, float] = {}
    hooks = []
    for name, mod in model.named_modules():
        if list(mod.children()) or not name:
            continue

        def pre(_m: nn.Module, _i: Any, _n: str = name) -> None:
            started[_n] = time.perf_counter()

        def post(m: nn.Module, _i: Any, out: Any, _n: str = name) -> None:
            end = time.perf_counter()
            shape = tuple(out.shape) if hasattr(out, "shape") else ()
            seen.append((_n, type(m).__name__, shape, (end - started.pop(_n)) * 1e3))

        hooks += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
    try:
        with torch.no_grad():
            yield
    finally:
        for hook in hooks:
            hook.remove()


def torch_op_times(model: nn.Module, x: torch.Tensor, repeat: int) -> list[TorchOp]:
    """Every leaf-module call of ``model`` on ``x`` in execution order, timed in ``repeat``
    runs (after a warm-up). Ops outside modules (``torch.cat``, ``+``) are not seen: their
    time stays in no row."""
    seen: list[tuple[str, str, tuple[int, ...], float]] = []
    with _leaf_hooks(model.eval(), seen):
        model(x)
        per_run = len(seen)
        seen.clear()
        for _ in range(repeat):
            model(x)
    modules = dict(model.named_modules())

    def in_channels(name: str) -> int | None:
        m = modules.get(name)
        return int(m.in_channels) if isinstance(m, nn.Conv2d) else None

    return [
        TorchOp(
            seen[i][0],
            seen[i][1],
            seen[i][2],
            [seen[r * per_run + i][3] for r in range(repeat)],
            in_channels(seen[i][0]),
        )
        for i in range(per_run)
    ]


def _kind(function: str, torch_kinds: list[str]) -> str:
    """What a compiled function computes, from the PyTorch ops it matched or its name."""
    if function.startswith(("pattern_sparse_conv2d", "blocked_conv2d")):
        return "conv (patsparse)"
    if torch_kinds:
        return "+".join(dict.fromkeys(torch_kinds))
    return function.removeprefix("fused_").split("_")[0]


#: following calls whose PyTorch ops a call may not skip to reach one of its own shape
LOOKAHEAD = 3


def match_ops(
    calls: list[OpCall],
    torch_ops: list[TorchOp],
    *,
    narrowed: frozenset[tuple[int, int]] = frozenset(),
    reads: frozenset[tuple[int, int]] = frozenset(),
) -> list[OpRow]:
    """Pair each compiled call with the PyTorch ops it stands for (module docstring).

    ``narrowed``: ``(channels, kept)`` of the convs whose unread filters were dropped
    (:class:`tvm_ext.passes.DropUnreadFilters`): their calls, and the per-channel ops after
    them, make ``kept`` of the ``channels`` channels PyTorch's ops make. ``reads``:
    ``(channels, kept)`` of convs that read only their kept input channels (those after a
    narrowed conv, compacted ones); a conv call is paired with a conv module only if it reads
    the module's input channels or such a pair of them (two convs of one output shape, e.g.
    a tail conv and a skip conv added to it, are not confused).

    A call takes the next PyTorch op of its shape unless that would skip an op of the shape
    of one of the :data:`LOOKAHEAD` calls after it: then it has no PyTorch op of its own (an
    arithmetic op in ``forward``, a part of a norm TVM split off, a layout copy) and must
    not take a later op and unpair everything in between. An op of its shape that it passes
    over and one of those later calls can stand for (TVM ran two independent convs in the
    other order) is left for that call.
    """
    rows: list[OpRow] = []
    deferred: list[TorchOp] = []  # ops passed over, left for a later call
    j = 0
    for n, call in enumerate(calls):
        later_calls = calls[n + 1 : n + 1 + LOOKAHEAD]
        mine = next((t for t in deferred if _same_op(call, t, narrowed, reads)), None)
        if mine is not None:
            deferred = [t for t in deferred if t is not mine]
            rows.append(_row(call, [mine]))
            continue
        k = j
        while k < len(torch_ops) and not _same_op(call, torch_ops[k], narrowed, reads):
            k += 1
        later = {c.out_shape for c in later_calls} - {call.out_shape}
        if k == len(torch_ops) or any(t.out_shape in later for t in torch_ops[j:k]):
            matched: list[TorchOp] = []
        else:
            theirs = [
                t
                for t in torch_ops[j:k]
                if any(_same_op(c, t, narrowed, reads) for c in later_calls)
            ]
            deferred += theirs
            matched = [t for t in torch_ops[j : k + 1] if all(t is not d for d in theirs)]
            # ops right after with the same output shape that TVM fused into this call
            k += 1
            while k < len(torch_ops) and _fused_into(
                torch_ops[k], call, later_calls, narrowed, reads
            ):
                matched.append(torch_ops[k])
                k += 1
            j = k
        rows.append(_row(call, matched))
    return rows


def _row(call: OpCall, matched: list[TorchOp]) -> OpRow:
    return OpRow(
        op=call.function,
        shape=call.out_shape,
        kind=_kind(call.function, [t.kind for t in matched]),
        ms=float(np.median(call.times)),
        torch_ms=float(sum(np.median(t.times) for t in matched)) if matched else None,
        torch_ops=[t.module for t in matched],
    )


#: words of compiled function names and the PyTorch module kinds such a call can stand for
#: (a conv call is a conv, not the norm after it that has the same shape)
_NAMED_KINDS = (
    (("conv2d",), ("Conv", "Linear")),
    (("instance_norm", "group_norm", "layer_norm"), ("Norm",)),
)


#: calls made only of these ops are arithmetic written in ``forward`` or split off a module
#: (a conv's bias add, a norm's centring, a channel gather): no PyTorch module of their own
_ARITHMETIC = frozenset({"add", "subtract", "multiply", "divide", "take", "negative", "power"})


def narrowed_channels(compiled: CompiledModel) -> frozenset[tuple[int, int]]:
    """``(channels, computed)`` of each conv output :class:`DropUnreadFilters` narrowed."""
    return frozenset((r.channels, r.computed) for r in compiled.drop_records if r.rewritten)


def same_shape(
    call: tuple[int, ...], op: tuple[int, ...], narrowed: frozenset[tuple[int, int]]
) -> bool:
    """``call``'s output shape is ``op``'s, or ``op``'s with its channels narrowed."""
    if call == op:
        return True
    return (
        len(call) == len(op) == 4
        and call[::2] == op[::2]
        and call[3] == op[3]
        and (op[1], call[1]) in narrowed
    )


def _same_input_channels(call: OpCall, op: TorchOp, reads: frozenset[tuple[int, int]]) -> bool:
    """A conv call and a conv module of the same output shape are the same layer only if
    the call reads the module's input channels, or ``(channels, kept)`` of ``reads`` (a
    conv reading only its kept channels: compacted, or after a narrowed producer). Unknown
    on either side (a blocked input layout, not a conv): no objection."""
    if call.in_channels is None or op.in_channels is None or "conv2d" not in call.function:
        return True
    return call.in_channels == op.in_channels or (op.in_channels, call.in_channels) in reads


def _same_op(
    call: OpCall,
    op: TorchOp,
    narrowed: frozenset[tuple[int, int]] = frozenset(),
    reads: frozenset[tuple[int, int]] = frozenset(),
) -> bool:
    """Whether ``op`` can be the PyTorch op of ``call``: same output shape (up to
    ``narrowed`` channels, :func:`match_ops`), and a kind its name allows (a call named for a
    conv or norm only takes a conv or norm module; one of plain arithmetic takes none)."""
    if not same_shape(call.out_shape, op.out_shape, narrowed):
        return False
    if not _same_input_channels(call, op, reads):
        return False
    name = call.function.removeprefix("fused_")
    if {w.rstrip("0123456789") for w in name.split("_")} <= _ARITHMETIC:
        return False
    for words, kinds in _NAMED_KINDS:
        if name.startswith(words) or any(name.startswith(f"{w}_") for w in words):
            return any(k in op.kind for k in kinds)
    return True


#: PyTorch modules TVM fuses into the call before them (elementwise on its output)
ELEMENTWISE = frozenset(
    {
        "ReLU",
        "ReLU6",
        "LeakyReLU",
        "Hardswish",
        "Hardsigmoid",
        "Sigmoid",
        "Tanh",
        "SiLU",
        "GELU",
        "BatchNorm2d",
        "Identity",
        "Dropout",
    }
)


def _fused_into(
    op: TorchOp,
    call: OpCall,
    later_calls: list[OpCall],
    narrowed: frozenset[tuple[int, int]] = frozenset(),
    reads: frozenset[tuple[int, int]] = frozenset(),
) -> bool:
    """Whether PyTorch's ``op`` (after the op ``call`` matched) ran inside ``call``: an
    Upsample or pad a chained norm does as it writes (:func:`_written_by`), or the same
    output shape, and elementwise, or none of the next calls can be its own (a norm with a
    call of its own follows the conv it normalises)."""
    if _written_by(op, call):
        return True
    if not same_shape(call.out_shape, op.out_shape, narrowed):
        return False
    return op.kind in ELEMENTWISE or not any(_same_op(c, op, narrowed, reads) for c in later_calls)


#: the PyTorch pad module of each border a chained norm writes
_PAD_MODULES = {"reflect": "ReflectionPad2d", "replicate": "ReplicationPad2d"}


def _written_by(op: TorchOp, call: OpCall) -> bool:
    """PyTorch's ``op`` is an Upsample or a pad that ``call`` (a chained norm) does as it
    writes its output for the convs after it."""
    if len(call.out_shape) != 4 or len(op.out_shape) != 4 or op.out_shape[1] != call.out_shape[1]:
        return False
    n, c, h, w = call.out_shape
    s = call.upsample
    if op.kind == "Upsample":
        return s > 1 and op.out_shape == (n, c, h * s, w * s)
    return op.kind == _PAD_MODULES.get(call.pad_mode)


def profile_ops(
    compiled: CompiledModel, model: nn.Module, x: torch.Tensor, *, repeat: int = 10
) -> list[OpRow]:
    """The per-op table: each compiled call, its median ms, PyTorch's ms for the same ops
    (PyTorch timed at its steady speed: :func:`patsparse.bench.allocator.steady_allocator`)."""
    steady_allocator()
    calls = _logical_shapes(compiled, compiled_op_times(compiled, x.numpy(), repeat))
    narrowed = narrowed_channels(compiled)
    compacted = frozenset(
        (r.weight_shape[1], r.kept_channels)
        for r in compiled.compact_records
        if r.rewritten and r.kept_channels < r.weight_shape[1]
    )
    return match_ops(
        calls, torch_op_times(model, x, repeat), narrowed=narrowed, reads=narrowed | compacted
    )


def _logical_shapes(compiled: CompiledModel, calls: list[OpCall]) -> list[OpCall]:
    """Calls of chained convs and norms with their logical NCHW output shape (what PyTorch's
    op makes) instead of the blocked, bordered layout they write for the next conv; chained
    norms with the border mode and upsampling they write (:func:`_written_by`)."""
    logical: dict[str, tuple[int, ...]] = {}
    writes: dict[str, tuple[str, int]] = {}
    for r in compiled.chain_records:
        if r.chained_output and len(r.out_shape) == 4:
            n, c, h, w = r.out_shape
            logical[r.function] = (n, c, h // r.pool, w // r.pool)
            if r.kind == "norm":
                writes[r.function] = (r.out_pad_mode, r.upsample)
    out = []
    for call in calls:
        mode, upsample = writes.get(call.function, ("zeros", 1))
        shape = logical.get(call.function, call.out_shape)
        out.append(replace(call, out_shape=shape, pad_mode=mode, upsample=upsample))
    return out


def format_profile(rows: list[OpRow], *, limit: int | None = None) -> str:
    """The table, slowest first (``limit`` rows), and the ops slower than PyTorch."""
    lines = [f"{'op':<44}{'shape':<20}{'kind':<28}{'ms':>9}{'PyTorch ms':>12}{'ratio':>8}"]
    for r in sorted(rows, key=lambda r: -r.ms)[:limit]:
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        torch_ms = f"{r.torch_ms:.3f}" if r.torch_ms is not None else "-"
        flag = "  << slower than PyTorch" if r.slower_than_pytorch else ""
        lines.append(
            f"{r.op[:43]:<44}{'x'.join(map(str, r.shape)):<20}{r.kind[:27]:<28}"
            f"{r.ms:>9.3f}{torch_ms:>12}{ratio:>8}{flag}"
        )
    total = sum(r.ms for r in rows)
    slow = [r for r in rows if r.slower_than_pytorch]
    lines.append(
        f"{len(rows)} calls, {total:.3f} ms in all; {len(slow)} slower than PyTorch's same ops"
    )
    return "\n".join(lines)


def slow_op_warnings(rows: list[OpRow]) -> list[str]:
    """One line per op slower than PyTorch (what ``compile --profile`` warns about)."""
    return [
        f"{r.op} ({r.kind}, {'x'.join(map(str, r.shape))}): {r.ms:.3f} ms vs PyTorch "
        f"{r.torch_ms:.3f} ms ({r.ratio:.2f}x)"
        for r in rows
        if r.slower_than_pytorch and r.torch_ms is not None and r.ratio is not None
    ]


def profile_model(
    model: nn.Module, x: torch.Tensor, *, threads: int = 2, repeat: int = 10
) -> tuple[CompiledModel, list[OpRow]]:
    """Compile ``model`` for this machine with ``threads`` (TVM and PyTorch alike) and
    profile it (:func:`profile_ops`)."""
    n = set_threads(threads)
    torch.set_num_threads(n)
    compiled = compile_torch(model, x, target=host_target(num_cores=n))
    return compiled, profile_ops(compiled, model, x, repeat=repeat)
