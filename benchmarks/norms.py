"""Normalisation layers (+ ReLU + residual add, as they follow a conv) vs PyTorch.

    TVM_NUM_THREADS=2 python benchmarks/norms.py [--runs 30] [--cases in-32@256,gn4-64@128]

Each case is ``relu(norm(x)) + r`` at batch 1, fp32, NCHW, imported with torch.export and
compiled by TVM's CPU lowering with ``ScheduleLeftovers`` (one fused PrimFunc per norm; the
rule that scheduled it is printed: ``norm`` is :mod:`tvm_ext.schedules.norm`). The shapes are
StyleLike's at width 32 on a 256x256 input (instance norm 32@256² with affine, 64@128²
without, group norm 4 groups 64@128²) and a few more. Output checked against PyTorch. PyTorch
runs in blocks before and after the TVM calls (its OpenMP threads spin after a call and steal
the cores from the call that follows); median (min) ms and PyTorch / TVM (> 1: faster).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

THREADS = int(os.environ.setdefault("TVM_NUM_THREADS", "2"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _timing import torch_around  # noqa: E402
from torch import nn  # noqa: E402

from tvm_ext._compat import from_exported_program, host_target, relax, tensor, tvm  # noqa: E402
from tvm_ext.passes.schedule_leftovers import ScheduleLeftovers  # noqa: E402
from tvm_ext.pipeline import backend_passes  # noqa: E402


class ChannelsLayerNorm(nn.Module):
    """LayerNorm over an NCHW map's channels (permute, norm, permute)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class NormReluAdd(nn.Module):
    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(x)) + r


#: name -> (norm for C channels, C, H=W)
CASES: dict[str, tuple[Callable[[int], nn.Module], int, int]] = {
    "in-affine-32@256": (lambda c: nn.InstanceNorm2d(c, affine=True), 32, 256),
    "in-64@128": (lambda c: nn.InstanceNorm2d(c), 64, 128),
    "gn4-64@128": (lambda c: nn.GroupNorm(4, c), 64, 128),
    "in-affine-128@64": (lambda c: nn.InstanceNorm2d(c, affine=True), 128, 64),
    "gn1-64@128": (lambda c: nn.GroupNorm(1, c), 64, 128),
    "gn32-128@64": (lambda c: nn.GroupNorm(32, c), 128, 64),
    "ln-channels-64@128": (ChannelsLayerNorm, 64, 128),
}


def compiled(
    model: nn.Module, x: torch.Tensor, r: torch.Tensor
) -> tuple[Callable[[], object], str]:
    """``model`` compiled for this CPU and checked against PyTorch; a call and the rules."""
    mod = from_exported_program(torch.export.export(model, (x, r)), keep_params_as_input=False)
    target = host_target()
    leftovers = ScheduleLeftovers(target=target)
    ex = tvm.compile(mod, target=target, relax_pipeline=backend_passes(target, leftovers=leftovers))
    vm = relax.VirtualMachine(ex, tvm.cpu())
    xt, rt = tensor(x.numpy()), tensor(r.numpy())
    with torch.no_grad():
        ref = model(x, r).numpy()
    np.testing.assert_allclose(vm["main"](xt, rt)[0].numpy(), ref, rtol=1e-3, atol=1e-3)
    rules = ", ".join(f"{rec.name}: {rec.schedule}" for rec in leftovers.records)
    return (lambda: vm["main"](xt, rt)), rules


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--cases", default=",".join(CASES))
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    print(f"relu(norm(x)) + r, batch 1 fp32, {THREADS} threads; median (min) of {args.runs} ms")
    print("| case | PyTorch ms | TVM ms | PyTorch / TVM (median) | (min) | rule |")
    print("|---|---|---|---|---|---|")
    for name in args.cases.split(","):
        make, c, hw = CASES[name]
        torch.manual_seed(0)
        model = NormReluAdd(make(c)).eval()
        x, r = torch.randn(1, c, hw, hw) * 2 + 1, torch.randn(1, c, hw, hw)
        call, rules = compiled(model, x, r)
        with torch.no_grad():
            times = torch_around(
                {"torch": lambda m=model, x=x, r=r: m(x, r), "tvm": call}, args.runs
            )
        med = {k: float(np.median(v)) for k, v in times.items()}
        low = {k: min(v) for k, v in times.items()}
        print(
            f"| {name} | {med['torch']:.3f} ({low['torch']:.3f}) | {med['tvm']:.3f} "
            f"({low['tvm']:.3f}) | {med['torch'] / med['tvm']:.2f}x | "
            f"{low['torch'] / low['tvm']:.2f}x | {rules} |"
        )


if __name__ == "__main__":
    main()
