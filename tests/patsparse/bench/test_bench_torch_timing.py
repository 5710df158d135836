"""PyTorch timing of ``patsparse bench``: each layer inside whole-model runs."""

from __future__ import annotations

import itertools

import torch

from patsparse.bench import torch_timing
from patsparse.bench.torch_timing import torch_layer_times


def test_torch_layer_times_times_each_layer_inside_whole_model_runs(monkeypatch):
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 2)
    )
    ticks = itertools.count()
    # a clock that advances one second per reading: each layer reads it twice (before and
    # after its forward), so every layer measures exactly one tick
    monkeypatch.setitem(torch_timing.CLOCKS, "ticks", lambda: float(next(ticks)))
    times = torch_layer_times(model, torch.randn(1, 3, 8, 8), repeat=3, clock="ticks")
    assert times == {"0": [1000.0] * 3, "3": [1000.0] * 3}  # conv and linear, 3 runs each
    # the hooks are gone: the model runs as before
    assert not model[0]._forward_hooks and not model[0]._forward_pre_hooks
    real = torch_layer_times(model, torch.randn(1, 3, 8, 8), repeat=2)
    assert set(real) == {"0", "3"} and all(len(v) == 2 and min(v) > 0 for v in real.values())
