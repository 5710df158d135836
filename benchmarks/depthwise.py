"""MobileNet-V2's depthwise 3x3 layers: PyTorch vs the depthwise kernel (``DepthwiseConv2D``),
dense and pattern-pruned, and vs the pipeline without it.

    python benchmarks/depthwise.py [--runs 25] [--shapes 32x112x1,96x112x2]
    python benchmarks/depthwise.py --blocks [24x24x56x1,96x96x14x1]   # chained blocks

``--blocks``: whole MobileNet-V2 inverted residual blocks (``in x out x HW x stride``,
expansion 6; 1x1 -> ReLU6 -> depthwise 3x3 -> ReLU6 -> 1x1, the residual at stride 1),
dense, compiled with the depthwise kernel chained between the 1x1 convs (``chained``) and
with ``ChainConvLayouts(depthwise=False)`` (``unchained``: NCHW around the depthwise conv;
both through ``tvm_ext.pipeline.pattern_sparse_pipeline`` on the host target),
both checked against PyTorch, timed interleaved; min and median ms.

Each layer (``C x HW x stride``) is ``nn.Conv2d(C, C, 3, stride, 1, groups=C)`` + ReLU6,
batch 1, compiled through ``patsparse.compiler.compile_torch`` (the bias and ReLU6 run in the
kernel's epilogue) with ``TVM_NUM_THREADS`` threads (default 2, set before TVM loads); PyTorch
runs the same layer with as many threads. Pruned weights come from the project's pruner:
``pattern`` (every channel keeps one of the 8 designed patterns: tap tables) and
``block-pattern`` at 8x (``patsparse bench``'s default: every channel keeps the same
pattern). ``stock`` is the pipeline with ``depthwise=False`` (the conv left to TVM's lowering
and ``ScheduleLeftovers``). Every engine is checked against PyTorch, then all are timed in
interleaved rounds in this one process (a slow spell of the host hits all of them alike; each
timed call follows an untimed call of the same engine, as in steady inference, so PyTorch's
OpenMP threads spinning after its call do not slow the next engine's), median of ``--runs``
calls, ms; ratios are PyTorch's time over ours.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

THREADS = int(os.environ.setdefault("TVM_NUM_THREADS", "2"))

from patsparse.compiler import compile_torch  # noqa: E402  (after TVM_NUM_THREADS)
from patsparse.compiler.compile import import_torch  # noqa: E402
from patsparse.pruning import MagnitudePruner  # noqa: E402
from patsparse.schemes import PruningPlan  # noqa: E402
from patsparse.schemes.options import scheme_from_options  # noqa: E402
from tvm_ext._compat import tensor, tvm  # noqa: E402
from tvm_ext.pipeline import CompiledModel, compile_module  # noqa: E402

#: MobileNet-V2 (ImageNet) depthwise layers: channels, input size, stride
SHAPES = "32x112x1,96x112x2,144x56x1,144x56x2,192x28x1,192x28x2,384x14x1,576x14x1,576x14x2,960x7x1"
PRUNED = (("pattern", None), ("block-pattern", 8.0))
#: MobileNet-V2 (ImageNet) inverted residual blocks: in, out, input size, stride
BLOCKS = "24x24x56x1,24x32x56x2,32x32x28x1,64x64x14x1,96x96x14x1,96x160x14x2,160x160x7x1"


def layer(c: int, stride: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(c, c, 3, stride, 1, groups=c), nn.ReLU6()).eval()


def pruned(model: nn.Module, scheme: str, rate: float | None) -> nn.Module:
    out = layer(model[0].in_channels, model[0].stride[0], 0)
    out.load_state_dict(model.state_dict())
    plan = PruningPlan(
        default=scheme_from_options(scheme, rate, fixed_rate="ignore"), skip_first_conv=False
    )
    pruner = MagnitudePruner(plan)
    pruner.prepare(out)
    pruner.step()
    pruner.squash_mask()
    return out


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    """Milliseconds of ``runs`` calls of ``fn`` (after one untimed call)."""
    fn()
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def vm_call(compiled: CompiledModel, x: np.ndarray) -> Callable[[], object]:
    """One call of the compiled model's VM on an input already on the device."""
    xt = tensor(x, tvm.cpu())
    fn = compiled.vm["main"]  # type: ignore[index]
    return lambda: fn(xt)


def blocks(spec: str, runs: int) -> None:
    """The ``--blocks`` table (module docstring)."""
    from patsparse.models.mobilenet import InvertedResidual
    from tvm_ext._compat import host_target, relax
    from tvm_ext.passes import ChainConvLayouts
    from tvm_ext.pipeline import pattern_sparse_pipeline

    target = host_target()

    print(f"threads: {THREADS}; {runs} interleaved runs, min / median ms")
    head = f"{'block':<22}{'PyTorch':>16}{'unchained':>16}{'chained':>16}{'x chain/unch (min)':>20}"
    print(head)
    print("-" * len(head))
    for item in spec.split(","):
        inp, oup, hw, stride = (int(v) for v in item.split("x"))
        torch.manual_seed(0)
        block = InvertedResidual(inp, oup, stride, 6).eval()
        x = torch.randn(1, inp, hw, hw, generator=torch.Generator().manual_seed(1))
        xn = x.numpy()
        engines: dict[str, Callable[[], object]] = {}
        with torch.no_grad():
            ref = block(x).numpy()
            for name, on in (("unchained", False), ("chained", True)):
                chain = ChainConvLayouts(depthwise=on, target=target)
                pipeline = pattern_sparse_pipeline(target, chain=chain)
                ex = tvm.compile(import_torch(block, x), target=target, relax_pipeline=pipeline)
                vm = relax.VirtualMachine(ex, tvm.cpu())
                kinds = [r.kind for r in chain.records if r.chained_input]
                assert ("depthwise" in kinds) == on, chain.records
                xt = tensor(xn, tvm.cpu())
                fn = vm["main"]
                np.testing.assert_allclose(fn(xt)[0].numpy(), ref, rtol=1e-4, atol=1e-4)
                engines[name] = functools.partial(fn, xt)
            engines["PyTorch"] = functools.partial(block, x)
            times: dict[str, list[float]] = {k: [] for k in engines}
            for _ in range(runs):
                for name, fn in engines.items():
                    times[name] += timed(fn, 1)
        cells = "".join(
            f"{min(times[k]):>8.4f}/{statistics.median(times[k]):<7.4f}"
            for k in ("PyTorch", "unchained", "chained")
        )
        gain = min(times["unchained"]) / min(times["chained"])
        label = f"{inp}->{inp * 6}->{oup} {hw}x{hw} /{stride}"
        print(f"{label:<22}{cells}{gain:>19.2f}x", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default=SHAPES)
    ap.add_argument("--runs", type=int, default=25)
    ap.add_argument("--blocks", nargs="?", const=BLOCKS, default=None)
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    if args.blocks is not None:
        blocks(args.blocks, args.runs)
        return
    print(f"threads: {THREADS} (PyTorch and TVM); median of {args.runs} interleaved runs, ms")
    head = (
        f"{'layer':<16}{'PyTorch':>9}{'stock':>9}{'dense':>9}{'pattern':>9}{'blk-pat':>9}"
        f"{'x dense':>9}{'x pattern':>11}{'x blk-pat':>11}  strategy (dense/pattern/blk-pat)"
    )
    print(head)
    print("-" * len(head))
    for item in args.shapes.split(","):
        c, hw, stride = (int(v) for v in item.split("x"))
        dense = layer(c, stride, 0)
        x = torch.randn(1, c, hw, hw, generator=torch.Generator().manual_seed(1))
        xn = x.numpy()
        models = {"dense": dense, **{name: pruned(dense, name, rate) for name, rate in PRUNED}}
        engines: dict[str, Callable[[], object]] = {}
        strategies = []
        with torch.no_grad():
            stock = compile_module(import_torch(dense, x), depthwise=False)
            np.testing.assert_allclose(stock(xn), dense(x).numpy(), rtol=1e-4, atol=1e-4)
            engines["stock"] = vm_call(stock, xn)
            for name, model in models.items():
                compiled = compile_torch(model, x)
                (rec,) = compiled.depthwise_records
                assert rec.rewritten, rec.reason
                strategies.append(f"{rec.strategy}:{rec.taps}")
                np.testing.assert_allclose(compiled(xn), model(x).numpy(), rtol=1e-4, atol=1e-4)
                engines[name] = vm_call(compiled, xn)
            engines["PyTorch"] = functools.partial(dense, x)
            times: dict[str, list[float]] = {k: [] for k in engines}
            for _ in range(args.runs):
                for name, fn in engines.items():
                    times[name] += timed(fn, 1)
        ms = {k: statistics.median(v) for k, v in times.items()}
        ratio = {k: ms["PyTorch"] / ms[k] for k in ("dense", "pattern", "block-pattern")}
        print(
            f"{f'{c}ch {hw}x{hw} /{stride}':<16}{ms['PyTorch']:>9.4f}{ms['stock']:>9.4f}"
            f"{ms['dense']:>9.4f}{ms['pattern']:>9.4f}{ms['block-pattern']:>9.4f}"
            f"{ratio['dense']:>8.2f}x{ratio['pattern']:>10.2f}x{ratio['block-pattern']:>10.2f}x"
            f"  {' / '.join(strategies)}",
            flush=True,
        )


if __name__ == "__main__":
    main()
