"""Leftover ops (what no conv kernel of ours takes) vs PyTorch, with the rule each got.

    TVM_NUM_THREADS=2 python benchmarks/leftover_ops.py [--rounds 8] [--cases convT4,ln-perm]

Each case is one small PyTorch model (batch 1, fp32, NCHW, shapes from the app-like models
of issue 21), imported with torch.export and compiled by :func:`tvm_ext.pipeline.
backend_passes` (TVM's CPU lowering with ``Conv2DTransposeAsPhases``, ``ChannelNormNCHW``
and ``ScheduleLeftovers``); the rule of each compiled function is printed (``norm``,
``strided_reduce``, ``conv``, ``parallel``). Output checked against PyTorch. PyTorch and TVM
run in alternating blocks (``--rounds`` of each, 10 calls a block after a pause and an
untimed call: either runtime's worker threads spin after its last call and steal the cores
from the other);
min and median ms, PyTorch / TVM (> 1: TVM faster). On a shared machine compare the mins.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

THREADS = int(os.environ.setdefault("TVM_NUM_THREADS", "2"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from tvm_ext._compat import from_exported_program, host_target, relax, tensor, tvm  # noqa: E402
from tvm_ext.passes.schedule_leftovers import ScheduleLeftovers  # noqa: E402
from tvm_ext.pipeline import backend_passes  # noqa: E402

#: seconds of rest before each timed block
PAUSE_S = 0.2


class Lambda(nn.Module):
    """``fn(x, *modules)`` as a module."""

    def __init__(self, fn: Callable[..., torch.Tensor], *modules: nn.Module) -> None:
        super().__init__()
        self.fn, self.mods = fn, nn.ModuleList(modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x, *self.mods)


class LayerNorm2d(nn.Module):
    """A channel layer norm written by hand (``x.mean(1, keepdim=True)``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.rand(channels) + 0.5)
        self.bias = nn.Parameter(torch.rand(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        v = (x - u).pow(2).mean(1, keepdim=True)
        y = (x - u) / torch.sqrt(v + 1e-6)
        return self.weight[:, None, None] * y + self.bias[:, None, None]


def _bilinear2(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def _sr_tail(x: torch.Tensor, shuffle: nn.Module) -> torch.Tensor:
    # SuperResolutionLike's tail: pixel shuffle of the last conv's 12 channels + a bilinear
    # x2 of the 3-channel input (here its first 3 channels)
    return shuffle(x) + _bilinear2(x[:, :3])


def _permuted_ln(x: torch.Tensor, ln: nn.Module) -> torch.Tensor:
    return ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _global_branch(x: torch.Tensor) -> torch.Tensor:
    g = x.mean((2, 3), keepdim=True).expand(-1, -1, x.shape[2], x.shape[3])
    return torch.cat([x, g], 1)


#: name -> (model, input shape)
CASES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "sr-tail-12@128": (lambda: Lambda(_sr_tail, nn.PixelShuffle(2)), (1, 12, 128, 128)),
    "ln-permuted-64@128": (lambda: Lambda(_permuted_ln, nn.LayerNorm(64)), (1, 64, 128, 128)),
    "ln-by-hand-64@128": (lambda: LayerNorm2d(64), (1, 64, 128, 128)),
    "gap+concat-256@28": (lambda: Lambda(_global_branch), (1, 256, 28, 28)),
    "gap+add-256@28": (
        lambda: Lambda(lambda x: x + x.mean((2, 3), keepdim=True)),
        (1, 256, 28, 28),
    ),
    "concat-64@64": (lambda: Lambda(lambda x: torch.cat([x, x * 2], 1)), (1, 64, 64, 64)),
    "nearest2-64@64": (lambda: nn.Upsample(scale_factor=2), (1, 64, 64, 64)),
    "bilinear2-64@64": (lambda: Lambda(_bilinear2), (1, 64, 64, 64)),
    "pixelshuffle-64@64": (lambda: nn.PixelShuffle(2), (1, 64, 64, 64)),
    "convT-k4s2-64>32@64": (lambda: nn.ConvTranspose2d(64, 32, 4, 2, 1), (1, 64, 64, 64)),
    "convT-k3s2op1-64>32@64": (
        lambda: nn.ConvTranspose2d(64, 32, 3, 2, 1, output_padding=1),
        (1, 64, 64, 64),
    ),
    "instnorm-b2-32@64": (lambda: nn.InstanceNorm2d(32, affine=True), (2, 32, 64, 64)),
    "gap-128@56": (lambda: nn.AdaptiveAvgPool2d(1), (1, 128, 56, 56)),
    "tanh-32@128": (lambda: nn.Tanh(), (1, 32, 128, 128)),
    "sigmoid-32@128": (lambda: nn.Sigmoid(), (1, 32, 128, 128)),
    "silu-32@128": (lambda: nn.SiLU(), (1, 32, 128, 128)),
    "gelu-32@128": (lambda: nn.GELU(), (1, 32, 128, 128)),
    "channel-max-64@64": (
        lambda: Lambda(lambda x: torch.max(x, 1, keepdim=True)[0]),
        (1, 64, 64, 64),
    ),
}


def compiled(model: nn.Module, x: torch.Tensor) -> tuple[Callable[[], object], str]:
    """``model`` compiled for this CPU and checked against PyTorch; a call and the rules."""
    mod = from_exported_program(torch.export.export(model, (x,)), keep_params_as_input=False)
    target = host_target(num_cores=THREADS)
    leftovers = ScheduleLeftovers(target=target)
    ex = tvm.compile(mod, target=target, relax_pipeline=backend_passes(target, leftovers=leftovers))
    vm = relax.VirtualMachine(ex, tvm.cpu())
    xt = tensor(x.numpy())
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(vm["main"](xt)[0].numpy(), ref, rtol=1e-3, atol=1e-3)
    rules = ", ".join(f"{rec.name}: {rec.schedule}" for rec in leftovers.records)
    return (lambda: vm["main"](xt)), rules


def timed(runs: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Milliseconds per call, each engine in alternating blocks of 10 calls, a pause before
    each block (the other engine's worker threads spin for a while after their last call)."""
    times: dict[str, list[float]] = {n: [] for n in runs}
    for _ in range(rounds):
        for name, call in runs.items():
            time.sleep(PAUSE_S)
            call()
            for _ in range(10):
                t0 = time.perf_counter()
                call()
                times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--cases", default=",".join(CASES))
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    print(f"batch 1 fp32, {THREADS} threads; min (median) ms of {10 * args.rounds} calls")
    print("| case | PyTorch ms | TVM ms | PyTorch / TVM (min) | (median) | rules |")
    print("|---|---|---|---|---|---|")
    for name in args.cases.split(","):
        make, shape = CASES[name]
        torch.manual_seed(0)
        model = make().eval()
        x = torch.randn(*shape)
        call, rules = compiled(model, x)
        with torch.no_grad():
            times = timed({"torch": lambda m=model, x=x: m(x), "tvm": call}, args.rounds)
        med = {k: float(np.median(v)) for k, v in times.items()}
        low = {k: min(v) for k, v in times.items()}
        print(
            f"| {name} | {low['torch']:.3f} ({med['torch']:.3f}) | {low['tvm']:.3f} "
            f"({med['tvm']:.3f}) | {low['torch'] / low['tvm']:.2f}x | "
            f"{med['torch'] / med['tvm']:.2f}x | {rules} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
