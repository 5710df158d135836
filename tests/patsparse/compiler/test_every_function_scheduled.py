"""Nothing a compiled model runs is left as plain loops: every zoo model and app-like
models a user brings (dilated convs, instance/group norm, 9x9 convs, reflection pad,
upsampling, pixel shuffle, a global branch) compile with every PrimFunc scheduled."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from patsparse.compiler import compile_torch, import_torch
from patsparse.models import MODEL_NAMES, build_model, default_input_shape
from patsparse.models.app_like import ColorizationLike, StyleLike, SuperResolutionLike
from patsparse.pruning.pruners import MagnitudePruner
from patsparse.schemes import BlockPatternScheme, PruningPlan
from tvm_ext._compat import host_target, tirx
from tvm_ext.passes.schedule_leftovers import ScheduleLeftovers
from tvm_ext.pipeline import pattern_sparse_pipeline
from tvm_ext.schedules.leftovers import is_scheduled

#: app-like models at their default (small) width, and the input size they are tested at
APP_MODELS = {
    "colorization": (ColorizationLike, (1, 1, 32, 32)),
    "style": (StyleLike, (1, 3, 32, 32)),
    "sr": (SuperResolutionLike, (1, 3, 16, 16)),
}


def _block_pattern(model: nn.Module) -> nn.Module:
    pruner = MagnitudePruner(PruningPlan(default=BlockPatternScheme(density=1 / 8)))
    pruner.prepare(model)
    pruner.step()
    pruner.squash_mask()
    return model.eval()


def _lowered_funcs(model: nn.Module, shape: tuple[int, ...]) -> tuple[dict, ScheduleLeftovers]:
    leftovers = ScheduleLeftovers()
    target = host_target()
    mod = import_torch(model, torch.randn(shape))
    with target:
        out = pattern_sparse_pipeline(target, leftovers=leftovers)(mod)
    funcs = {gv.name_hint: f for gv, f in out.functions_items() if isinstance(f, tirx.PrimFunc)}
    return funcs, leftovers


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if n.endswith("-imagenet") else n
        for n in MODEL_NAMES
    ],
)
def test_zoo_model_has_every_function_scheduled(name):
    """(The ImageNet variants have the CIFAR variants' layers, bigger: ``-m slow``.)"""
    shape = default_input_shape(name)
    if shape[-1] > 64:  # the ImageNet variants: the same layers at a smaller input
        shape = (*shape[:2], 64, 64)
    torch.manual_seed(0)
    funcs, leftovers = _lowered_funcs(_block_pattern(build_model(name)), shape)
    unscheduled = sorted(n for n, f in funcs.items() if not is_scheduled(f))
    assert unscheduled == [] and leftovers.unscheduled == []


@pytest.mark.parametrize("name", sorted(APP_MODELS))
def test_app_like_model_compiles_scheduled_and_matches_pytorch(name):
    cls, shape = APP_MODELS[name]
    torch.manual_seed(0)
    model = _block_pattern(cls())
    x = torch.randn(shape)
    compiled = compile_torch(model, x, verify=False)  # compared with PyTorch below
    assert [r.name for r in compiled.schedule_records if r.schedule is None] == []
    assert len(compiled.schedule_records) > 3
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(compiled(x.numpy()), ref, rtol=1e-4, atol=1e-4)
