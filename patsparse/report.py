"""Sparsity report: per-layer kept weights, kernels, FLOPs, compression and pattern histogram.

Works on any model (it reads the weights' zeros); given the layer decisions of a pruning run
it also names each layer's scheme and counts ``pattern_violations``: kept 3x3 kernels of a
pattern-scheme layer whose support is not exactly one pattern of that scheme's library.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from patsparse.core.patterns import positions_from_code
from patsparse.schemes.pattern import kernel_codes
from patsparse.schemes.plan import LayerDecision, module_weight, prunable_layers


@dataclass
class LayerReport:
    name: str
    kind: str
    shape: list[int]
    scheme: str
    weights: int
    kept: int
    kernels: int
    kept_kernels: int
    flops_dense: int
    flops_pruned: int
    pattern_histogram: dict[str, int] = field(default_factory=dict)
    pattern_violations: int = 0
    #: ``depthwise`` (one filter per channel), ``grouped`` or ``dense`` (:func:`conv_kind`)
    conv_kind: str = "dense"
    #: e.g. ``depthwise 3x3, 576 channels`` or ``3x3, 64->128`` (:func:`describe_layer`)
    description: str = ""

    @property
    def compression(self) -> float:
        return self.weights / max(self.kept, 1)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["compression"] = round(self.compression, 4)
        return d


@dataclass
class SparsityReport:
    layers: list[LayerReport]

    @property
    def weights(self) -> int:
        return sum(r.weights for r in self.layers)

    @property
    def kept(self) -> int:
        return sum(r.kept for r in self.layers)

    @property
    def compression(self) -> float:
        """Over every conv/linear weight of the model, pruned or not."""
        return self.weights / max(self.kept, 1)

    @property
    def pruned_compression(self) -> float:
        """Over the layers a scheme pruned only."""
        pr = [r for r in self.layers if r.scheme != "dense"]
        return sum(r.weights for r in pr) / max(sum(r.kept for r in pr), 1)

    @property
    def flop_reduction(self) -> float:
        return sum(r.flops_dense for r in self.layers) / max(
            sum(r.flops_pruned for r in self.layers), 1
        )

    @property
    def pattern_violations(self) -> int:
        return sum(r.pattern_violations for r in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": [r.to_dict() for r in self.layers],
            "total": {
                "weights": self.weights,
                "kept": self.kept,
                "compression": round(self.compression, 4),
                "pruned_layers_compression": round(self.pruned_compression, 4),
                "flops_dense": sum(r.flops_dense for r in self.layers),
                "flops_pruned": sum(r.flops_pruned for r in self.layers),
                "flop_reduction": round(self.flop_reduction, 4),
                "pattern_violations": self.pattern_violations,
            },
        }

    def format(self) -> str:
        """A fixed-width table for terminals."""
        head = (
            f"{'layer':<22}{'shape':<30}{'scheme':<22}{'kept/weights':>18}"
            f"{'kernels':>14}{'comp':>8}{'MFLOPs':>16}  patterns"
        )
        lines = [head, "-" * len(head)]
        for r in self.layers:
            kern = f"{r.kept_kernels}/{r.kernels}" if r.kernels else "-"
            top = sorted(r.pattern_histogram.items(), key=lambda kv: -kv[1])[:4]
            pats = " ".join(f"{k}:{v}" for k, v in top)
            lines.append(
                f"{r.name:<22}{r.description[:29]:<30}{r.scheme[:21]:<22}"
                f"{f'{r.kept}/{r.weights}':>18}"
                f"{kern:>14}{r.compression:>7.2f}x"
                f"{f'{r.flops_pruned / 1e6:.2f}/{r.flops_dense / 1e6:.2f}':>16}  {pats}"
            )
        lines.append("-" * len(head))
        lines.append(
            f"total: {self.kept}/{self.weights} weights kept, compression {self.compression:.2f}x "
            f"(pruned layers {self.pruned_compression:.2f}x), FLOP reduction "
            f"{self.flop_reduction:.2f}x, pattern violations {self.pattern_violations}"
        )
        return "\n".join(lines)


def _output_positions(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """Output spatial positions (H*W) of every conv; 1 for linear layers."""
    positions: dict[str, int] = {}
    hooks = []
    for name, module in prunable_layers(model).items():

        def hook(mod: nn.Module, inp: Any, out: torch.Tensor, name: str = name) -> None:
            positions[name] = int(out.shape[-1] * out.shape[-2]) if out.dim() == 4 else 1

        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return positions


def sparsity_report(
    model: nn.Module,
    example: torch.Tensor,
    *,
    decisions: Mapping[str, LayerDecision] | None = None,
) -> SparsityReport:
    """Report on ``model``'s current weights; ``example`` is one input batch (batch 1)."""
    positions = _output_positions(model, example)
    reports = []
    for name, module in prunable_layers(model).items():
        w = module_weight(module).detach()
        decision = decisions.get(name) if decisions else None
        scheme = decision.scheme if decision else None
        kind = decision.kind if decision else type(module).__name__.lower()
        kept = int((w != 0).sum())
        pos = positions.get(name, 1)
        kernels = kept_kernels = 0
        hist: dict[str, int] = {}
        violations = 0
        if w.dim() == 4:
            per_kernel = (w != 0).reshape(*w.shape[:2], -1).any(-1)
            kernels, kept_kernels = per_kernel.numel(), int(per_kernel.sum())
            if tuple(w.shape[2:]) == (3, 3):
                codes = kernel_codes(w)[per_kernel]
                counter = Counter(int(c) for c in codes.tolist())
                hist = {
                    _code_label(c): n for c, n in sorted(counter.items(), key=lambda kv: -kv[1])
                }
                library = getattr(scheme, "library", None)
                if library is not None:
                    violations = sum(n for c, n in counter.items() if c not in library)
        # A conv's MACs per output position are its weights (per group); x2 for FLOPs.
        reports.append(
            LayerReport(
                name=name,
                kind=kind,
                shape=list(w.shape),
                scheme=scheme.describe() if scheme else "dense",
                weights=w.numel(),
                kept=kept,
                kernels=kernels,
                kept_kernels=kept_kernels,
                flops_dense=2 * w.numel() * pos,
                flops_pruned=2 * kept * pos,
                pattern_histogram=hist,
                pattern_violations=violations,
                conv_kind=conv_kind(module),
                description=describe_layer(module),
            )
        )
    return SparsityReport(reports)


def conv_kind(module: nn.Module) -> str:
    """``depthwise`` (groups == input channels == output channels), ``grouped`` (other
    groups > 1) or ``dense`` (groups 1, and linear layers)."""
    groups = int(getattr(module, "groups", 1))
    if groups == 1:
        return "dense"
    if isinstance(module, nn.Conv2d) and groups == module.in_channels == module.out_channels:
        return "depthwise"
    return "grouped"


def describe_layer(module: nn.Module) -> str:
    """A layer's shape in words: ``depthwise 3x3, 576 channels``, ``grouped 3x3 (4 groups),
    64->64``, ``3x3, 64->128``, ``linear, 512->10``."""
    if isinstance(module, nn.Linear):
        return f"linear, {module.in_features}->{module.out_features}"
    if not isinstance(module, nn.Conv2d):
        return type(module).__name__
    kh, kw = module.kernel_size
    kind = conv_kind(module)
    if kind == "depthwise":
        return f"depthwise {kh}x{kw}, {module.in_channels} channels"
    prefix = f"grouped {kh}x{kw} ({module.groups} groups)" if kind == "grouped" else f"{kh}x{kw}"
    return f"{prefix}, {module.in_channels}->{module.out_channels}"


def _code_label(code: int) -> str:
    """Pattern code as a 3-row bit string, e.g. ``110-110-000`` (rows top to bottom)."""
    kept = set(positions_from_code(code))
    return "-".join("".join("1" if (r, c) in kept else "0" for c in range(3)) for r in range(3))
