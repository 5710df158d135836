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
from patsparse.pruning.pruners import MagnitudePruner
from patsparse.schemes import BlockPatternScheme, PruningPlan
from tvm_ext._compat import host_target, tirx
from tvm_ext.passes.schedule_leftovers import ScheduleLeftovers
from tvm_ext.pipeline import pattern_sparse_pipeline
from tvm_ext.schedules.leftovers import is_scheduled


class ColorizationLike(nn.Module):
    """Iizuka-like: strided convs, a dilation-2 conv, a global branch fused by concat,
    nearest upsampling, chroma out."""

    def __init__(self) -> None:
        super().__init__()
        self.low = nn.Sequential(
            nn.Conv2d(1, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU()
        )
        self.mid = nn.Sequential(nn.Conv2d(32, 32, 3, 1, 2, dilation=2), nn.ReLU())
        self.glob = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(32, 16, 1), nn.ReLU())
        self.fuse = nn.Conv2d(48, 32, 1)
        self.out = nn.Sequential(nn.Upsample(scale_factor=4), nn.Conv2d(32, 2, 3, 1, 1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mid(self.low(x))
        g = self.glob(y).expand(-1, -1, y.shape[2], y.shape[3])
        return self.out(torch.relu(self.fuse(torch.cat([y, g], 1))))


class StyleLike(nn.Module):
    """Johnson-like: reflection pad, 9x9 convs, instance norm, a residual block,
    upsample + conv, tanh."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Sequential(
            nn.ReflectionPad2d(4),
            nn.Conv2d(3, 16, 9),
            nn.InstanceNorm2d(16, affine=True),
            nn.ReLU(),
        )
        self.down = nn.Sequential(nn.Conv2d(16, 32, 3, 2, 1), nn.InstanceNorm2d(32), nn.ReLU())
        self.res = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(32, 32, 3), nn.GroupNorm(4, 32), nn.ReLU()
        )
        self.up = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(32, 16, 3, 1, 1), nn.ReLU())
        self.tail = nn.Sequential(nn.ReflectionPad2d(4), nn.Conv2d(16, 3, 9), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.down(self.head(x))
        y = y + self.res(y)
        return self.tail(self.up(y))


class SuperResolutionLike(nn.Module):
    """WDSR-like: 5x5 head, a wide-activation residual block, a 37-channel conv, pixel
    shuffle, a bilinear skip."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 16, 5, 1, 2)
        self.body = nn.Sequential(nn.Conv2d(16, 64, 3, 1, 1), nn.ReLU(), nn.Conv2d(64, 16, 3, 1, 1))
        self.odd = nn.Conv2d(16, 37, 3, 1, 1)
        self.tail = nn.Sequential(nn.Conv2d(37, 12, 3, 1, 1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.head(x)
        y = y + self.body(y)
        up = nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.tail(torch.relu(self.odd(y))) + up


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
    compiled = compile_torch(model, x)
    assert [r.name for r in compiled.schedule_records if r.schedule is None] == []
    assert len(compiled.schedule_records) > 3
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(compiled(x.numpy()), ref, rtol=1e-4, atol=1e-4)
