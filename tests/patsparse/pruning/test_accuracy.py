"""Real accuracy on real data (scikit-learn digits): the claims the pruner must keep."""

from __future__ import annotations

import copy

import torch

from patsparse.models import default_input_shape
from patsparse.pruning import PruneConfig, prune
from patsparse.pruning.api import PruneResult
from patsparse.report import sparsity_report
from patsparse.schemes import (
    BlockPatternScheme,
    PatternConnectivityScheme,
    PruningPlan,
)
from patsparse.train import accuracy


def _run(model, loaders, scheme, config, seed=1) -> tuple[float, PruneResult]:
    torch.manual_seed(seed)
    result = prune(model, PruningPlan(default=scheme), loaders[0], config=config)
    return accuracy(model, loaders[1]), result


def test_admm_pattern_connectivity_4x_loses_at_most_1_5_points(trained_digits, digits_loaders):
    model, dense_acc = trained_digits
    acc, result = _run(
        model,
        digits_loaders,
        PatternConnectivityScheme(density=1 / 6),
        PruneConfig(method="admm", admm_epochs=10, retrain_epochs=10),
    )
    report = sparsity_report(
        model, torch.zeros(default_input_shape("digits-cnn")), decisions=result.decisions
    )
    assert report.compression >= 4.0  # over every weight, incl. the skipped first/last layers
    assert report.pruned_compression >= 5.9
    assert report.pattern_violations == 0
    assert dense_acc >= 97.0
    assert dense_acc - acc <= 1.5, (dense_acc, acc)
    # ADMM converged: the primal residual ||W - Z|| / ||W|| fell by more than 3x
    residuals = [h["residual"] for h in result.history if "residual" in h]
    assert residuals[-1] < residuals[0] / 3, residuals


def test_admm_beats_one_shot_magnitude_at_equal_sparsity(trained_digits, digits_loaders):
    # Same sparsity (20x on the pruned layers), same fine-tuning budget after pruning (none):
    # ADMM's weights are already close to the constraint set, one-shot magnitude's are not.
    scheme = PatternConnectivityScheme(density=0.05)
    admm_model, _ = trained_digits
    mag_model = copy.deepcopy(admm_model)
    admm_acc, _ = _run(
        admm_model,
        digits_loaders,
        scheme,
        PruneConfig(method="admm", admm_epochs=10, retrain_epochs=0),
    )
    mag_acc, _ = _run(
        mag_model, digits_loaders, scheme, PruneConfig(method="magnitude", retrain_epochs=0)
    )
    assert admm_acc >= mag_acc + 20.0, (admm_acc, mag_acc)
    assert admm_acc >= 90.0


def test_block_pattern_accuracy_cost_is_measured(trained_digits, digits_loaders):
    # Equal compression (8x on pruned layers): per-kernel patterns vs block-shared patterns.
    cfg = PruneConfig(method="admm", admm_epochs=8, retrain_epochs=8)
    m1, dense = trained_digits
    m2 = copy.deepcopy(m1)
    per_kernel, _ = _run(m1, digits_loaders, PatternConnectivityScheme(density=0.125), cfg)
    block, _ = _run(m2, digits_loaders, BlockPatternScheme(density=0.125, block_size=8), cfg)
    assert dense - per_kernel <= 2.0
    assert dense - block <= 3.0  # block sharing costs some accuracy; it must stay bounded
    # the block model really has block structure: 8 filters share each support
    w = m2.features[7].weight.detach()
    supports = {bytes((w[f] != 0).flatten().to(torch.uint8).tolist()) for f in range(w.shape[0])}
    assert len(supports) <= w.shape[0] // 8
