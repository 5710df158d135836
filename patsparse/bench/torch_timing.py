"""PyTorch-side measurements of ``patsparse bench``: the clocks, timing a call, timing
several engines in interleaved rounds, forward hooks on the weight layers, each layer's time
inside whole-model runs, multiply-add counts."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

# its old home: patsparse.apps times with it too
from patsparse.bench.spread import summary_ms as summary_ms

#: ``wall``: elapsed time; ``cpu``: this process's CPU time, which a busy shared machine does
#: not inflate by descheduling us (use it with one thread: with more, threads that spin while
#: waiting count too)
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def timed(fn: Callable[[], object], repeat: int, clock: str = "wall") -> list[float]:
    """Milliseconds of ``repeat`` calls after two warm-up calls."""
    now = CLOCKS[clock]
    fn()
    fn()
    times = []
    for _ in range(repeat):
        start = now()
        fn()
        times.append((now() - start) * 1e3)
    return times


def interleaved(
    calls: dict[str, Callable[[], object]], repeat: int, clock: str = "wall", *, warmup: int = 2
) -> dict[str, list[float]]:
    """Milliseconds of ``repeat`` timed calls of each callable, in rounds: every round times
    each one once, so a slow stretch of the machine hits all of them alike instead of one
    engine's whole series. The order rotates every round (none always runs first, or right
    after the same other one), and each timed call follows an untimed call of its own, as in
    steady inference: its caches hold its own data, not the previous engine's. ``warmup``
    untimed calls of each come first."""
    now = CLOCKS[clock]
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            calls[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeat):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn = calls[name]
            fn()
            start = now()
            fn()
            times[name].append((now() - start) * 1e3)
    return times


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The convs and linear layers of ``model`` by name."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]


@contextlib.contextmanager
def _layer_hooks(
    model: nn.Module,
    post: Callable[[str, nn.Module, tuple[torch.Tensor, ...], Any], None],
    pre: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """For the duration (gradients off): ``pre(name)`` before and ``post(name, module,
    inputs, output)`` after every conv and linear layer's forward."""
    hooks = []
    for name, mod in weight_layers(model):
        if pre is not None:
            hooks.append(mod.register_forward_pre_hook(lambda _m, _i, _n=name: pre(_n)))
        hooks.append(mod.register_forward_hook(lambda m, i, o, _n=name: post(_n, m, i, o)))
    try:
        with torch.no_grad():
            yield
    finally:
        for h in hooks:
            h.remove()


def layer_calls(
    model: nn.Module, x: torch.Tensor
) -> list[tuple[str, nn.Module, torch.Tensor, tuple[int, ...]]]:
    """Convs and linear layers in execution order with the input each one saw and its output
    shape (the order the compiled model calls their kernels in)."""
    seen: list[tuple[str, nn.Module, torch.Tensor, tuple[int, ...]]] = []

    def post(name: str, m: nn.Module, inp: tuple[torch.Tensor, ...], out: Any) -> None:
        seen.append((name, m, inp[0].detach().clone(), tuple(out.shape)))

    with _layer_hooks(model, post):
        model(x)
    return seen


def macs(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(dense, kept) multiply-adds of the weight layers (kept: non-zero weights only)."""
    dense = kept = 0
    out_pixels: dict[nn.Module, int] = {}

    def post(_n: str, m: nn.Module, _i: Any, out: torch.Tensor) -> None:
        out_pixels[m] = int(out.shape[-1] * out.shape[-2]) if out.dim() == 4 else 1

    with _layer_hooks(model, post):
        model(x)
    for _, mod in weight_layers(model):
        w: torch.Tensor = mod.weight  # type: ignore[assignment]
        dense += int(w.numel()) * out_pixels.get(mod, 0)
        kept += int(torch.count_nonzero(w)) * out_pixels.get(mod, 0)
    return dense, kept


def torch_layer_times(
    model: nn.Module, x: torch.Tensor, repeat: int, clock: str = "wall"
) -> dict[str, list[float]]:
    """ms of every conv and linear layer of ``model`` in each of ``repeat`` whole-model runs
    (after one warm-up run), by module name: timed inside the model run, as
    :func:`patsparse.compiler.engines.conv_kernel_times` times the compiled kernels, so each
    layer meets the caches the layers before it left (weights that no longer fit in cache are
    read from memory)."""
    now = CLOCKS[clock]
    times: dict[str, list[float]] = {}
    started: dict[str, float] = {}

    def pre(name: str) -> None:
        started[name] = now()

    def post(name: str, _m: nn.Module, _i: Any, _o: Any) -> None:
        end = now()
        times.setdefault(name, []).append((end - started.pop(name)) * 1e3)

    with _layer_hooks(model, post, pre):
        model(x)  # warm-up
        times.clear()
        for _ in range(repeat):
            model(x)
    return times
