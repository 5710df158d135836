"""Every Relax pipeline of tvm_ext, and the one call from a Relax module to a compiled model.

- :func:`pattern_sparse_pipeline`: the default (our rewrites with hand schedules, then TVM's);
- :func:`lower_for_tuning`: the rewrites left unscheduled, legalised and fused: tasks for
  MetaSchedule (:func:`tvm_ext.tuning.tune.tune_module`);
- :func:`tuned_pipeline`: the rewrites with tuning logs applied (:mod:`tvm_ext.tuning.logs`);
- :func:`compile_module`: a Relax module (weights as constants) to a :class:`CompiledModel`.
  From a PyTorch module: ``patsparse.compiler.compile_torch``.

Phases (each a plain ``tvm.transform`` pass, so users can rebuild the list):

1. ``FoldConvBiasBatchNorm`` + ``FoldBatchnormToConv2D`` + ``FoldConstant``: BN folded into
   the conv weights and a bias (with or without a conv bias before the BN);
   :class:`tvm_ext.passes.DropUnreadFilters`: a conv computes only the channels the next conv
   reads (column/channel pruning leaves the others unread).
2. :class:`tvm_ext.passes.PatternSparseConv2D`: pattern-sparse convs rewritten and scheduled.
3. :class:`tvm_ext.passes.CompactStructuredConv2D`: filter/channel-pruned convs shrunk;
   :class:`tvm_ext.passes.DepthwiseConv2D`: depthwise 3x3 convs (dense or pattern-pruned) on
   a vectorised kernel (``depthwise=False`` leaves them to TVM).
4. :class:`tvm_ext.passes.LinearAsConv2D` + :class:`tvm_ext.passes.BlockedConv2D`: linear
   layers as 1x1 convs, then the remaining convs (dense, 1x1, 7x7, block connectivity) on the
   register-blocked kernel (``blocked=False`` leaves both to TVM).
5. :class:`tvm_ext.passes.ChainConvLayouts`: activations between block-layout convs stay in
   the kernels' own layout (no padding stage, no NCHW gather, max pools fused), through
   depthwise convs and instance / group norms (a norm writes the next conv's mirrored border
   and upsampling); ``chain=False`` keeps every conv's NCHW input and output.
6. :func:`backend_passes`: TVM's legalisation, fusion and lowering of the rest, on CPUs with
   transposed convs as phase convs, pruned thin convs on their kept columns
   (:class:`tvm_ext.passes.ThinSparseConv2D`) and every leftover function scheduled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tvm_ext._compat import Target, cpu_pipeline, host_target, relax, tensor, tvm
from tvm_ext.passes import (
    BlockedConv2D,
    ChainConvLayouts,
    CompactStructuredConv2D,
    DepthwiseConv2D,
    DropUnreadFilters,
    FoldConvBiasBatchNorm,
    LayerRecord,
    LinearAsConv2D,
    PatternSparseConv2D,
)
from tvm_ext.passes.chain_conv_layouts import ChainRecord
from tvm_ext.passes.channel_norm_nchw import ChannelNormNCHW
from tvm_ext.passes.compact_structured_conv2d import CompactRecord
from tvm_ext.passes.conv2d_transpose_as_phases import Conv2DTransposeAsPhases
from tvm_ext.passes.depthwise_conv2d import DepthwiseRecord
from tvm_ext.passes.drop_unread_filters import DropRecord
from tvm_ext.passes.schedule_leftovers import LeftoverRecord, ScheduleLeftovers
from tvm_ext.passes.schedule_untuned_pattern_convs import ScheduleUntunedPatternConvs
from tvm_ext.passes.thin_sparse_conv2d import ThinConvRecord, ThinSparseConv2D
from tvm_ext.passes.top_one_as_reduce import TopOneAsReduce
from tvm_ext.passes.vector_math import VectorMath
from tvm_ext.targets import is_gpu
from tvm_ext.tuning.logs import logs_database
from tvm_ext.verify import ModelCheck

#: ``blocked=False``: leave the convs the pattern pass does not take to TVM's lowering
Blocked = BlockedConv2D | Literal[False] | None
#: ``chain=False``: every rewritten conv keeps NCHW input and output
Chain = ChainConvLayouts | Literal[False] | None
#: ``depthwise=False``: leave depthwise convs to TVM's lowering
Depthwise = DepthwiseConv2D | Literal[False] | None


#: Cost of one per-kernel-pattern multiply-add (padding included) relative to one on the
#: blocked kernel, by input channels (``((max channels, cost), ...)``, 0: any), for the flat
#: stages that per-kernel layers compile to: measured 2.1-3.0 from 64 to 512
#: channels at 4x and 8x on x86 AVX-512, 2 threads (BENCHMARKS.md, ``benchmarks/per_kernel.py``;
#: every multiply-add loads its own input vector). With the blocked kernel in the pipeline, a
#: per-kernel layer whose blocked layout (channel unions) needs fewer weighted multiply-adds
#: runs blocked instead (pattern-only layers: 4 of 9 taps x 2.5 > 1).
PER_KERNEL_COST: tuple[tuple[int, float], ...] = ((0, 2.5),)
#: ... times this on strided convs (their flat stages read phase planes: per multiply-add
#: as fast as at stride 1, so 1; ResNet-18's three stride-2 layers at 8x run 2.0-2.4x faster
#: than PyTorch dense flat against 1.0-1.4x blocked)
PER_KERNEL_STRIDE_FACTOR = 1.0


def default_sparse_pass(*, blocked: bool = True, **options: Any) -> PatternSparseConv2D:
    """The pattern pass the pipelines use: per-kernel layers estimated slower than the
    blocked kernel are left to it (when the blocked kernel is in the pipeline)."""
    return PatternSparseConv2D(
        per_kernel_cost=PER_KERNEL_COST if blocked else None,
        per_kernel_stride_factor=PER_KERNEL_STRIDE_FACTOR,
        **options,
    )


def rewrite_passes(
    *,
    drop: DropUnreadFilters | None = None,
    sparse: PatternSparseConv2D | None = None,
    compact: CompactStructuredConv2D | None = None,
    blocked: Blocked = None,
    chain: Chain = None,
    depthwise: Depthwise = None,
) -> list[tvm.transform.Pass]:
    """Phases 1-5: BN folding, the pattern-sparse rewrite, structured compaction, the
    depthwise kernel, the blocked kernel for the remaining convs, chained layouts between
    them."""
    passes = [
        relax.transform.FoldConstant(),  # constant-fold the exported bias reshapes first
        FoldConvBiasBatchNorm(),
        relax.transform.FoldBatchnormToConv2D(),
        relax.transform.FoldConstant(),
        drop if drop is not None else DropUnreadFilters(),
        sparse if sparse is not None else default_sparse_pass(blocked=blocked is not False),
        compact if compact is not None else CompactStructuredConv2D(),
    ]
    if depthwise is not False:
        passes.append(depthwise if depthwise is not None else DepthwiseConv2D())
    if blocked is not False:
        passes += [LinearAsConv2D(), blocked if blocked is not None else BlockedConv2D()]
    # disabled, the pass still removes the rewriters' metadata (it keys the tuning logs)
    passes.append(
        chain
        if chain is not None and chain is not False
        else ChainConvLayouts(enabled=chain is None)
    )
    return passes


def backend_passes(
    target: Target,
    *,
    leftovers: ScheduleLeftovers | None = None,
    thin: ThinSparseConv2D | None = None,
) -> tvm.transform.Pass:
    """TVM's default lowering for ``target``; on CPUs, before legalisation, transposed convs
    as phase convs, channel norms over NCHW, pruned thin convs on their kept columns
    (:class:`ThinSparseConv2D`), exp / sigmoid / tanh / erf / GELU in vector arithmetic
    (:class:`VectorMath`) and ``topk(k=1)`` as reductions (:class:`TopOneAsReduce`), and after
    fusion :class:`ScheduleLeftovers`, so every
    function that runs has a schedule (TVM has no default CPU schedule for most operators:
    they would run as plain serial loops)."""
    if is_gpu(target):
        return relax.get_default_pipeline(target)
    leftovers = leftovers or ScheduleLeftovers(target=target)
    thin = thin or ThinSparseConv2D(target=target)

    @tvm.transform.module_pass(opt_level=0, name="patsparse_backend")
    def _backend(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        with target:
            return tvm.transform.Sequential(
                [
                    Conv2DTransposeAsPhases(),  # before legalisation: phase convs
                    ChannelNormNCHW(),
                    thin,
                    VectorMath(),
                    TopOneAsReduce(),
                    *cpu_pipeline.library_dispatch_passes(target),
                    *cpu_pipeline.legalize_passes(target),
                    leftovers,
                    *cpu_pipeline.dataflow_lower_passes(target),
                    *cpu_pipeline.finalize_passes(target),
                ]
            )(mod)

    return _backend


def pattern_sparse_pipeline(
    target: Target | None = None,
    *,
    drop: DropUnreadFilters | None = None,
    sparse: PatternSparseConv2D | None = None,
    compact: CompactStructuredConv2D | None = None,
    blocked: Blocked = None,
    chain: Chain = None,
    leftovers: ScheduleLeftovers | None = None,
    depthwise: Depthwise = None,
    thin: ThinSparseConv2D | None = None,
) -> tvm.transform.Pass:
    """BN folding, the pattern-sparse rewrite, structured compaction, the depthwise kernel,
    the blocked kernel for the remaining convs, chained layouts, TVM's lowering with every
    leftover scheduled."""
    target = target or host_target()
    return tvm.transform.Sequential(
        [
            *rewrite_passes(
                drop=drop,
                sparse=sparse,
                compact=compact,
                blocked=blocked,
                chain=chain,
                depthwise=depthwise,
            ),
            backend_passes(target, leftovers=leftovers, thin=thin),
        ],
        name="patsparse_pipeline",
    )


def lower_for_tuning(
    mod: tvm.IRModule,
    target: Target,
    *,
    drop: DropUnreadFilters | None = None,
    sparse: PatternSparseConv2D | None = None,
    compact: CompactStructuredConv2D | None = None,
    blocked: Blocked = None,
    chain: Chain = None,
    depthwise: Depthwise = None,
) -> tvm.IRModule:
    """Our rewrites (sparse and blocked kernels left unscheduled), then legalise and fuse:
    tasks ready. ``blocked=False`` leaves dense convs to TVM (stock tasks); chained kernels
    stay unscheduled too (they are scheduled only where the kernels they replace were).
    Depthwise kernels come out with their hand schedule (a tuning task starts from it)."""
    seq = tvm.transform.Sequential(
        [
            *rewrite_passes(
                drop=drop,
                sparse=sparse
                if sparse is not None
                else default_sparse_pass(blocked=blocked is not False, schedule=False),
                compact=compact,
                blocked=blocked if blocked is not None else BlockedConv2D(schedule=False),
                chain=chain,
                depthwise=depthwise,
            ),
            relax.transform.LegalizeOps(),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
        ]
    )
    with target:
        return seq(mod)


def tuned_pipeline(
    target: Target,
    work_dir: Path | str | None,
    *,
    drop: DropUnreadFilters | None = None,
    sparse: PatternSparseConv2D | None = None,
    compact: CompactStructuredConv2D | None = None,
    blocked: Blocked = None,
    chain: Chain = None,
    leftovers: ScheduleLeftovers | None = None,
    depthwise: Depthwise = None,
    thin: ThinSparseConv2D | None = None,
) -> tvm.transform.Pass:
    """Rewrite, apply the tuning logs in ``work_dir`` (if any, through
    :func:`logs_database`), schedule what has no record with the defaults (our kernels, then
    :class:`ScheduleLeftovers`), then TVM's lowering."""

    @tvm.transform.module_pass(opt_level=0, name="patsparse_tuned_pipeline")
    def _pipeline(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        mod = lower_for_tuning(
            mod,
            target,
            drop=drop,
            sparse=sparse,
            compact=compact,
            blocked=blocked,
            chain=chain,
            depthwise=depthwise,
        )
        with target:
            if work_dir is not None and Path(work_dir).is_dir():
                with logs_database(work_dir):
                    mod = relax.transform.MetaScheduleApplyDatabase()(mod)
            mod = ScheduleUntunedPatternConvs()(mod)  # type: ignore[operator]
        return backend_passes(target, leftovers=leftovers, thin=thin)(mod)

    return _pipeline


@dataclass
class CompiledModel:
    """A compiled model: call it with a numpy input; ``records`` says what was rewritten."""

    executable: Any
    target: Target
    records: list[LayerRecord]
    compile_seconds: float
    compact_records: list[CompactRecord] = field(default_factory=list)
    #: convs whose unread output channels :class:`DropUnreadFilters` dropped (or why not)
    drop_records: list[DropRecord] = field(default_factory=list)
    #: what :class:`BlockedConv2D` did with the convs the pattern pass left
    blocked_records: list[LayerRecord] = field(default_factory=list)
    #: what :class:`ChainConvLayouts` did with each block-layout conv, depthwise conv and
    #: chained norm
    chain_records: list[ChainRecord] = field(default_factory=list)
    #: how each PrimFunc that runs is scheduled (:class:`ScheduleLeftovers`; CPU targets)
    schedule_records: list[LeftoverRecord] = field(default_factory=list)
    #: what :class:`DepthwiseConv2D` did with each grouped conv2d (rewritten or why not)
    depthwise_records: list[DepthwiseRecord] = field(default_factory=list)
    #: what :class:`ThinSparseConv2D` did with each thin conv (CPU targets)
    thin_records: list[ThinConvRecord] = field(default_factory=list)
    device: Any = field(default_factory=tvm.cpu)
    #: the final module against a reference model end to end (``compile_torch(verify=True)``;
    #: None: not checked, e.g. compiled for another device)
    verification: ModelCheck | None = None

    def __post_init__(self) -> None:
        from tvm_ext.targets import is_cross

        # code for another device (arm64, OpenCL) runs there: tvm_ext.rpc.remote_model
        self.vm = (
            None if is_cross(self.target) else relax.VirtualMachine(self.executable, self.device)
        )

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.outputs(x)[0]

    def outputs(self, x: np.ndarray) -> list[np.ndarray]:
        """Every output of the model on ``x`` (a model returning a tuple has several)."""
        if self.vm is None:
            raise RuntimeError(
                f"this model is compiled for {self.target.kind.name} "
                f"({dict(self.target.export()).get('mtriple', 'a device')}); run it on the "
                "device: tvm_ext.rpc.remote.RemoteModel"
            )
        out = self.vm["main"](tensor(np.ascontiguousarray(x, dtype=np.float32), self.device))
        # from_exported_program returns a tuple of outputs
        if hasattr(out, "numpy"):
            return [np.asarray(out.numpy())]
        return [np.asarray(o.numpy()) for o in out]

    def export_library(self, path: str | Path) -> Path:
        """A shared library for the target's device (cross-linked for arm64)."""
        from tvm_ext.targets import export_library

        return export_library(self.executable, path, self.target)


def compile_module(
    mod: tvm.IRModule,
    *,
    target: Target | None = None,
    sparse: PatternSparseConv2D | None = None,
    verify: bool = False,
    logs: str | Path | None = None,
    blocked: bool = True,
    chain: bool = True,
    depthwise: bool = True,
) -> CompiledModel:
    """Rewrite a Relax module's pattern-sparse convs (and the rest, see the phases above),
    compile it, and keep what each pass did.

    ``mod``: any Relax module with its weights as constants (from torch.export, ONNX, or
    built by hand). ``logs``: a MetaSchedule database directory (``patsparse tune``); its
    schedules are applied, and functions without a record get the default schedules.
    ``blocked=False`` leaves the convs the pattern pass does not take to TVM's own lowering;
    ``chain=False`` keeps NCHW between rewritten convs; ``depthwise=False`` leaves depthwise
    convs to TVM's lowering.
    """
    target = target or host_target()
    sparse = sparse or default_sparse_pass(
        blocked=blocked, verify=verify, target=target, schedule=logs is None
    )
    drop = DropUnreadFilters()
    compact = CompactStructuredConv2D()
    dense: Blocked = (
        BlockedConv2D(verify=verify, target=target, schedule=logs is None) if blocked else False
    )
    chained = ChainConvLayouts(enabled=chain, target=target)
    dw: Depthwise = DepthwiseConv2D(verify=verify, target=target) if depthwise else False
    leftovers = ScheduleLeftovers(target=target)
    thin = ThinSparseConv2D(target=target)
    start = time.perf_counter()
    pipeline = (
        tuned_pipeline(
            target,
            logs,
            drop=drop,
            sparse=sparse,
            compact=compact,
            blocked=dense,
            chain=chained,
            leftovers=leftovers,
            depthwise=dw,
            thin=thin,
        )
        if logs is not None
        else pattern_sparse_pipeline(
            target,
            drop=drop,
            sparse=sparse,
            compact=compact,
            blocked=dense,
            chain=chained,
            leftovers=leftovers,
            depthwise=dw,
            thin=thin,
        )
    )
    ex = tvm.compile(mod, target=target, relax_pipeline=pipeline)
    return CompiledModel(
        executable=ex,
        target=target,
        records=list(sparse.records),
        compile_seconds=time.perf_counter() - start,
        compact_records=list(compact.records),
        drop_records=list(drop.records),
        blocked_records=list(dense.records) if dense else [],
        chain_records=list(chained.records),
        schedule_records=list(leftovers.records),
        depthwise_records=list(dw.records) if dw else [],
        thin_records=list(thin.records),
    )


def load_compiled(path: str | Path, device: Any = None) -> Any:
    """A VirtualMachine over a library written by :meth:`CompiledModel.export_library`."""
    lib = tvm.runtime.load_module(str(path))
    return relax.VirtualMachine(lib, device or tvm.cpu())
