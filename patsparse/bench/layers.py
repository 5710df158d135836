"""The per-layer table of ``patsparse bench``: every 3x3 conv timed inside each engine's
whole-model runs (PyTorch by forward hooks, the compiled engines by their conv kernels),
the PyTorch conv also alone, with FLOP reduction and efficiency."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from patsparse.bench.config import BenchConfig
from patsparse.bench.spread import summary_ms, unsteady
from patsparse.bench.torch_timing import CLOCKS, layer_calls, timed, torch_layer_times
from patsparse.report import conv_kind

if TYPE_CHECKING:
    from patsparse.compiler.engines import KernelCall


def layer_table(
    cfg: BenchConfig, dense: nn.Module, pruned: nn.Module, x: torch.Tensor, engines: dict[str, Any]
) -> list[dict[str, Any]]:
    """One row per 3x3 conv: its times in every engine, speed-ups and efficiency."""
    from patsparse.compiler.engines import conv_kernel_times, more_runs
    from patsparse.compiler.op_profile import narrowed_channels, same_shape

    calls = layer_calls(dense, x)
    pruned_mods = dict(pruned.named_modules())
    # Every layer is timed inside whole-model runs, PyTorch's as the compiled kernels, one
    # run of each engine in turn (a slow spell of the host hits all of them alike). Each
    # timed run follows an untimed run of its own engine, as in steady inference, not the
    # other engines' runs: the warm-up per round is deliberate.
    torch_in_model: dict[str, list[float]] = {}
    timed_kernels: dict[str, list[KernelCall] | None] = dict.fromkeys(engines)
    for _ in range(cfg.repeat):
        for layer, ms in torch_layer_times(dense, x, 1, cfg.clock).items():
            torch_in_model.setdefault(layer, []).extend(ms)
        for engine, comp in engines.items():
            timed_kernels[engine] = more_runs(
                timed_kernels[engine], conv_kernel_times(comp, x.numpy(), 1, CLOCKS[cfg.clock])
            )
    # Each conv's kernel call is found by its input and output shapes, identical layers in
    # call order (the VM may order independent calls differently from PyTorch); a conv that
    # computes only the filters the next conv reads (DropUnreadFilters) writes fewer
    # channels, and the conv after it reads fewer.
    per_engine = {name: list(kernels or []) for name, kernels in timed_kernels.items()}
    narrowed = {name: narrowed_channels(comp) for name, comp in engines.items()}
    rows = []
    conv_index = -1
    for name, conv, inp, out_shape in calls:
        if not isinstance(conv, nn.Conv2d):
            continue
        conv_index += 1
        taps = int(conv.kernel_size[0]) * int(conv.kernel_size[1])
        found = {}
        for engine, kernels in per_engine.items():
            for k, call in enumerate(kernels):
                if (
                    call.taps == taps
                    and same_shape(call.in_shape, tuple(inp.shape), narrowed[engine])
                    and same_shape(call.out_shape, tuple(out_shape), narrowed[engine])
                ):
                    found[engine] = kernels.pop(k)
                    break
        if tuple(conv.kernel_size) != (3, 3):
            continue
        weight: torch.Tensor = pruned_mods[name].weight
        oh, ow = out_shape[2:]
        reduction = float(conv.weight.numel()) / max(int(torch.count_nonzero(weight)), 1)
        torch_ms = summary_ms(torch_in_model[name])
        with torch.no_grad():
            # the conv alone, called again and again on its input: warm caches
            alone_ms = summary_ms(timed(functools.partial(conv, inp), cfg.repeat, cfg.clock))
        row: dict[str, Any] = {
            "index": conv_index,
            "layer": name,
            "shape": (
                f"dw {conv.in_channels}"
                if conv_kind(conv) == "depthwise"
                else f"{conv.in_channels}->{conv.out_channels}"
            )
            + f" @ {inp.shape[2]}x{inp.shape[3]}"
            + (f" /{conv.stride[0]}" if conv.stride[0] > 1 else ""),
            "flop_reduction": round(reduction, 3),
            "pytorch_dense_ms": torch_ms,
            "pytorch_dense_alone_ms": alone_ms,
            "pytorch_gflops": round(
                2 * conv.weight.numel() * oh * ow / torch_ms["median"] / 1e6, 1
            ),
        }
        for engine, call in found.items():
            row[f"{engine}_ms"] = summary_ms(call.times)
            row[f"{engine}_kernel"] = call.function
            if call.out_shape[1] != out_shape[1]:  # the filters the next conv reads
                row[f"{engine}_filters"] = call.out_shape[1]
        if "patsparse_ms" in row:
            sparse_ms = row["patsparse_ms"]["median"]
            speed = torch_ms["median"] / sparse_ms
            row["speedup_vs_pytorch"] = round(speed, 3)
            row["efficiency"] = round(speed / reduction, 3)
            row["efficiency_vs_alone"] = round(alone_ms["median"] / sparse_ms / reduction, 3)
            for other in ("tvm_dense_blocked", "tvm_dense_stock_tuned"):
                if f"{other}_ms" in row:
                    row[f"speedup_vs_{other}"] = round(row[f"{other}_ms"]["median"] / sparse_ms, 3)
        timings = {k[: -len("_ms")]: v for k, v in row.items() if k.endswith("_ms")}
        # the engines whose times of this layer spread wider than the bound
        row["unsteady"] = unsteady(timings, cfg.max_spread)
        rows.append(row)
    return rows
