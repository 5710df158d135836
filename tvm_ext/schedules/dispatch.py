"""The default schedule of a pattern-sparse PrimFunc for a target: picks the CPU schedule
(:mod:`tvm_ext.schedules.cpu`, vectorised for the target's lanes) or the GPU one
(:mod:`tvm_ext.schedules.gpu`), falls back where a schedule cannot be built, and marks the
functions it scheduled; the same for the depthwise kernel (:mod:`tvm_ext.schedules.depthwise`)
and the chained norm (:mod:`tvm_ext.schedules.chained_norm`), CPU only. Passes and tuning
call this module, never cpu/gpu/depthwise/chained_norm directly."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

from tvm_ext._compat import Schedule, Target, schedulable_copy, tirx, tvm
from tvm_ext.schedules import chained_norm, cpu, depthwise, gpu
from tvm_ext.schedules.common import pattern_blocks
from tvm_ext.targets import is_gpu, vector_lanes
from tvm_ext.te.block_names import CONV_BLOCK_PREFIX

#: set on PrimFuncs that already carry the default schedule
SCHEDULED_ATTR = "patsparse.scheduled"


class ScheduleFallbackWarning(UserWarning):
    """A pattern-sparse kernel's default schedule could not be built: the kernel runs with
    a generic one (correct, several times slower)."""


def schedule_for_target(
    func: tirx.PrimFunc, target: Target | None, *, name: str | None = None
) -> Schedule | None:
    """A ``Schedule`` over a copy of ``func`` (a PrimFunc named ``main``) with the target's
    default schedule applied: GPU targets get :func:`.gpu.schedule_pattern_conv_gpu`, CPUs
    :func:`.cpu.schedule_pattern_conv`, vectorised for the target's lanes, with the plain
    (unfused) CPU schedule as the fallback. ``None`` if no schedule could be built (the
    caller keeps the function unscheduled: slow but correct; a schedule error must never
    break a model), with a :class:`ScheduleFallbackWarning` naming the kernel (``name``)
    and the errors."""

    def fresh() -> Schedule:
        # a copy: a 0.27 Schedule edits the function it was built over in place
        return Schedule(schedulable_copy(func))

    sch = fresh()
    if is_gpu(target):
        gpu.schedule_pattern_conv_gpu(sch, threads=gpu.max_threads(target))
        return sch
    errors = []
    for fuse_rows in (True, False):
        try:
            cpu.schedule_pattern_conv(sch, lanes=vector_lanes(target), fuse_rows=fuse_rows)
            return sch
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:300]}")
            sch = fresh()
    warnings.warn(
        f"no default schedule for the pattern-sparse kernel {name or 'main'} (blocks "
        f"{', '.join(pattern_blocks(fresh()))}; {' / '.join(errors)}): it runs with a generic "
        "schedule, several times slower; please report it with the model",
        ScheduleFallbackWarning,
        stacklevel=2,
    )
    return None


def schedule_pattern_primfunc(
    func: tirx.PrimFunc, *, target: Target | None = None
) -> tirx.PrimFunc | None:
    """``func`` with the default schedule applied; ``None`` if it has no pattern-sparse block.

    ``target`` (default: the current ``with target:`` scope, else the host) picks the
    schedule (:func:`schedule_for_target`). Functions already scheduled (by this helper or by
    MetaSchedule) come back unchanged.
    """
    target = target if target is not None else Target.current(allow_none=True)
    attrs = func.attrs or {}
    if int(attrs.get(SCHEDULED_ATTR, 0)) or int(attrs.get("tirx.is_scheduled", 0)):
        return func
    symbol = attrs.get("global_symbol")
    main = func.with_attr("global_symbol", "main")
    probe = Schedule(main)  # read-only here: building a Schedule does not change ``func``
    blocks = pattern_blocks(probe)
    if not any(name.startswith(CONV_BLOCK_PREFIX) for name in blocks):
        return None
    if _carries_schedule(probe, blocks):
        return func  # e.g. applied from a tuning database (no attribute says so)
    sch = schedule_for_target(main, target, name=str(symbol) if symbol is not None else None)
    if sch is None:
        return func  # unscheduled: slow but correct
    out = sch.mod["main"].with_attr(SCHEDULED_ATTR, 1)
    # the schedule needs a "main"; give the function back its own symbol (or none)
    if symbol is not None:
        return out.with_attr("global_symbol", symbol)
    return out.without_attr("global_symbol")


def schedule_primfuncs(
    mod: tvm.IRModule, gvs: Iterable[tvm.ir.GlobalVar], *, target: Target | None = None
) -> None:
    """Give each of ``gvs`` (PrimFuncs of ``mod``) the default schedule, in place in ``mod``
    (functions without a pattern-sparse block stay as they are)."""
    for gv in gvs:
        func = mod[gv]
        mod[gv] = schedule_pattern_primfunc(func, target=target) or func


def schedule_depthwise_primfunc(
    func: tirx.PrimFunc, *, target: Target | None = None
) -> tirx.PrimFunc | None:
    """The depthwise kernel ``func`` (:mod:`tvm_ext.te.depthwise_conv`) with the CPU schedule
    for ``target``'s lanes, marked scheduled (``tirx.is_scheduled``: DLight and
    ``ScheduleLeftovers`` leave it alone; a function already marked comes back as it is);
    ``None`` for GPU targets (no schedule yet) or if it cannot be built."""
    return _cpu_scheduled(func, target, depthwise.schedule_depthwise)


def schedule_norm_primfunc(
    func: tirx.PrimFunc, *, target: Target | None = None
) -> tirx.PrimFunc | None:
    """The chained norm kernel ``func`` (:mod:`tvm_ext.te.chained_norm`) with its CPU
    schedule, marked as :func:`schedule_depthwise_primfunc` marks; ``None`` for GPU targets
    or if it cannot be built (with a :class:`ScheduleFallbackWarning`: the leftover rules
    then schedule it)."""
    out = _cpu_scheduled(func, target, chained_norm.schedule_chained_norm)
    if out is None and not is_gpu(_current(target)):
        warnings.warn(
            f"no schedule for the chained norm {(func.attrs or {}).get('global_symbol')}",
            ScheduleFallbackWarning,
            stacklevel=2,
        )
    return out


def _current(target: Target | None) -> Target | None:
    return target if target is not None else Target.current(allow_none=True)


def _cpu_scheduled(
    func: tirx.PrimFunc, target: Target | None, apply: Callable[..., None]
) -> tirx.PrimFunc | None:
    """``func`` scheduled by ``apply(sch, lanes=...)`` and marked scheduled; ``None`` on GPU
    targets or if ``apply`` fails."""
    target = _current(target)
    if is_gpu(target):
        return None
    if int((func.attrs or {}).get(SCHEDULED_ATTR, 0)):
        return func
    symbol = (func.attrs or {}).get("global_symbol")
    sch = Schedule(schedulable_copy(func.with_attr("global_symbol", "main")))
    try:
        apply(sch, lanes=vector_lanes(target))
    except Exception:
        return None
    out = sch.mod["main"].with_attr(SCHEDULED_ATTR, 1).with_attr("tirx.is_scheduled", 1)
    if symbol is not None:
        return out.with_attr("global_symbol", symbol)
    return out.without_attr("global_symbol")


def _carries_schedule(sch: Schedule, blocks: list[str]) -> bool:
    """True if any loop around a ``ps_*`` block is no longer a plain serial loop."""
    serial = tirx.ForKind.SERIAL
    return any(
        sch.get(loop).kind != serial
        for name in blocks
        for loop in sch.get_loops(sch.get_sblock(name))
    )
