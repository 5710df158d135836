from __future__ import annotations

import torch

from patsparse.core.patterns import ALL_CANDIDATES, DESIGNED_8, mask_from_code
from patsparse.models import build_model
from patsparse.pruning import MagnitudePruner
from patsparse.report import sparsity_report
from patsparse.schemes import PatternConnectivityScheme, PruningPlan


def _magnitude_pruned():
    torch.manual_seed(0)
    model = build_model("digits-cnn", width=8)
    pruner = MagnitudePruner(PruningPlan(default=PatternConnectivityScheme(density=0.125)))
    pruner.prepare(model)
    pruner.step()
    pruner.squash_mask()
    return model, pruner


def test_report_counts_weights_kernels_flops_and_patterns():
    model, pruner = _magnitude_pruned()
    rep = sparsity_report(model, torch.zeros(1, 1, 8, 8), decisions=pruner.decisions)
    by = {r.name: r for r in rep.layers}
    f3 = by["features.3"]  # 8 -> 16, 3x3, 8x8 output
    assert f3.weights == 16 * 8 * 9 and f3.kernels == 128
    assert f3.kept == 4 * f3.kept_kernels == round(0.125 * 9 / 4 * 128) * 4
    assert f3.flops_dense == 2 * f3.weights * 64 and f3.flops_pruned == 2 * f3.kept * 64
    assert sum(f3.pattern_histogram.values()) == f3.kept_kernels
    assert f3.pattern_violations == 0 and by["features.0"].scheme == "dense"
    total = rep.to_dict()["total"]
    assert total["weights"] == sum(r.weights for r in rep.layers)
    assert rep.pruned_compression == (f3.weights + by["features.7"].weights) / (
        f3.kept + by["features.7"].kept
    )
    assert "pattern violations 0" in rep.format()


def test_report_flags_kernels_outside_the_library():
    model, pruner = _magnitude_pruned()
    bad = next(c for c in ALL_CANDIDATES if c not in DESIGNED_8)
    with torch.no_grad():
        model.features[3].weight[0, 0] = torch.tensor(mask_from_code(bad), dtype=torch.float32)
        model.features[3].weight[0, 1] = 1.0  # a dense kernel: also not a pattern
    rep = sparsity_report(model, torch.zeros(1, 1, 8, 8), decisions=pruner.decisions)
    assert rep.pattern_violations == 2


def test_report_names_depthwise_and_grouped_layers():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(8, 16, 3, padding=1),
        torch.nn.Conv2d(16, 16, 3, padding=1, groups=16),
        torch.nn.Conv2d(16, 32, 3, padding=1, groups=4),
        torch.nn.Flatten(),
        torch.nn.Linear(32 * 4 * 4, 10),
    )
    rep = sparsity_report(model, torch.zeros(1, 8, 4, 4))
    by = {r.name: r for r in rep.layers}
    assert [by[n].conv_kind for n in ("0", "1", "2", "4")] == [
        "dense",
        "depthwise",
        "grouped",
        "dense",
    ]
    assert by["1"].description == "depthwise 3x3, 16 channels"
    assert by["2"].description == "grouped 3x3 (4 groups), 16->32"
    assert by["0"].description == "3x3, 8->16" and by["4"].description == "linear, 512->10"
    text = rep.format()
    assert "depthwise 3x3, 16 channels" in text and "16->16" not in text
    assert rep.to_dict()["layers"][1]["conv_kind"] == "depthwise"
