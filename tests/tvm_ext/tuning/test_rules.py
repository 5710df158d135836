"""Design spaces of the pattern-sparse rules, generated without tuning."""

from __future__ import annotations

import numpy as np
import pytest

import tvm_ext.tuning.rules  # noqa: F401  (registers the rules)
from tvm_ext._compat import host_target, te, tensor, tvm
from tvm_ext._compat import meta_schedule as ms
from tvm_ext.layout import analyze_conv_weight
from tvm_ext.te.conv_spec import ConvGeometry, Epilogue
from tvm_ext.te.flat_plan import flat_buckets
from tvm_ext.te.pattern_conv import layout_arguments, pattern_conv2d_te


def _task(h, block, dilation=1):
    """A layer's task module (its weight, layout, geometry), "same" padding."""
    w = h.pattern_weight(32, 16, density=1 / 8, block=block, seed=0)
    lay = analyze_conv_weight(w, block=block)
    pad = (dilation,) * 4
    geo = ConvGeometry((1, 16, 12, 12), (1, 1), pad, dilation=(dilation, dilation))
    func = te.create_prim_func(pattern_conv2d_te(geo, lay, Epilogue(relu=True)))
    return tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), w, lay, geo


def _space(h, block, dilation=1):
    mod, w, lay, geo = _task(h, block, dilation)
    ctx = ms.TuneContext(
        mod=mod,
        target=host_target(),
        space_generator=ms.space_generator.PostOrderApply(
            sch_rules="from-target", postprocs="from-target", mutator_probs="from-target"
        ),
        task_name="pattern_conv",
    )
    return ctx, w, lay, geo


@pytest.mark.parametrize(("block", "dilation"), [(None, 1), (16, 1), (None, 2), (16, 2)])
def test_design_space_samples_tiles_and_passes_postprocs(h, block, dilation):
    """The rules need nothing of the geometry: a dilated layer (its taps' offsets constants
    in the TIR, so in the task's structural key) gets the same design space."""
    ctx, w, lay, geo = _space(h, block, dilation)
    spaces = ctx.generate_design_space()
    assert len(spaces) == 1
    kinds = [str(inst.kind.name) for inst in spaces[0].trace.insts]
    # per conv stage (one per bucket of filters, or one for a block layer): sampled tiles
    # (two for a block layer: columns and rows; one for a flat stage: vectors per register
    # tile) and a local accumulator; a vectorised inner loop
    stages = 1 if block else len(flat_buckets(lay).values)
    assert kinds.count("SamplePerfectTile") >= (2 if block else 1) * stages
    assert kinds.count("CacheWrite") >= stages
    assert "Vectorize" in kinds and "DecomposeReduction" not in kinds
    sch = spaces[0].copy()
    for postproc in ctx.space_generator.postprocs:
        assert postproc.apply(sch), type(postproc).__name__
    # the postprocessed candidate compiles and computes the conv
    ex = tvm.compile(sch.mod, target=host_target())
    dev = tvm.cpu()
    x = np.random.default_rng(0).standard_normal((1, 16, 12, 12)).astype("float32")
    out = tensor(np.zeros((1, 32, 12, 12), "float32"), dev)
    ex.mod["main"](tensor(x, dev), *[tensor(a, dev) for a in layout_arguments(lay, geo)], out)
    ref = h.torch_reference(
        x, w, stride=(1, 1), padding=geo.padding, dilation=geo.dilation, relu=True
    )
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-5)


def test_dilation_is_part_of_the_task_key(h):
    """Tuning records are keyed by the task's structural hash: a dilated layer's offsets are
    constants of its TIR, so it never reuses the undilated layer's record."""
    from tvm_ext.tuning.logs import workload_key

    db = ms.database.MemoryDatabase()
    assert len({workload_key(db, _task(h, 16, d)[0]) for d in (1, 2, 3)}) == 3


def test_runner_arguments_are_valid_indices():
    from tvm_ext.tuning.measure import alloc_sparse_arguments

    info = [
        ["TENSOR", "float32", [1, 6, 5, 5]],
        ["TENSOR", "int32", [4, 3]],
        ["TENSOR", "int32", [8]],
        ["TENSOR", "float32", [1, 8, 5, 5]],
    ]
    args = alloc_sparse_arguments(tvm.cpu(), info, 2)
    assert len(args) == 2
    idx, inv = args[0][1].numpy(), args[0][2].numpy()
    assert idx.min() >= 0 and idx.max() < 6
    assert sorted(inv.tolist()) == list(range(8))
