"""Lifecycle, masks and ADMM mechanics on small models (no accuracy claims here)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from patsparse.models import build_model
from patsparse.pruning import (
    ADMMPruner,
    ADMMSettings,
    MagnitudePruner,
    PatternSelector,
    PrunerStateError,
    collect_masks,
    project_simplex,
)
from patsparse.pruning.masks import original_weight
from patsparse.schemes import PatternConnectivityScheme, PatternScheme, PruningPlan


def _plan(density=0.125):
    return PruningPlan(default=PatternConnectivityScheme(density=density))


def test_magnitude_lifecycle_is_non_destructive_until_squash():
    torch.manual_seed(0)
    model = build_model("digits-cnn")
    before = model.features[3].weight.detach().clone()
    pruner = MagnitudePruner(_plan())
    pruner.prepare(model)
    pruner.step()
    masks = collect_masks(model)
    assert set(masks) == {"features.3", "features.7"}
    # the original weight is kept; the visible weight is masked
    assert torch.equal(original_weight(model.features[3]), before)
    assert torch.equal(model.features[3].weight, before * masks["features.3"])
    # gradients do not flow into pruned positions
    model(torch.randn(2, 1, 8, 8)).sum().backward()
    grad = original_weight(model.features[3]).grad
    assert grad is not None and bool((grad[~masks["features.3"]] == 0).all())
    squashed = pruner.squash_mask()
    assert not hasattr(model.features[3], "parametrizations")
    assert torch.equal(model.features[3].weight, before * squashed["features.3"])
    assert set(model.state_dict()) == set(build_model("digits-cnn").state_dict())


def test_step_before_prepare_is_a_clear_error():
    with pytest.raises(PrunerStateError, match="prepare"):
        MagnitudePruner(_plan()).step()


def test_admm_penalty_is_half_rho_squared_frobenius():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3))
    plan = PruningPlan(default=PatternScheme(), skip_first_conv=False)
    pruner = ADMMPruner(plan, ADMMSettings(rho=0.3, pattern_selection=False))
    pruner.prepare(model)
    for name in pruner.U:
        pruner.U[name] = torch.randn_like(pruner.U[name])
    expected = sum(
        0.5 * 0.3 * float(((m.weight.detach() - pruner.Z[n] + pruner.U[n]) ** 2).sum())
        for n, m in pruner.modules.items()
    )
    assert float(pruner.penalty().detach()) == pytest.approx(expected, rel=1e-5)
    # squared, not a plain or square-rooted norm: doubling the gap quadruples the penalty
    for name in pruner.U:
        pruner.U[name] *= 2
        pruner.Z[name] = (
            pruner.modules[name].weight.detach()
            + (pruner.Z[name] - pruner.modules[name].weight.detach()) * 2
        )
    assert float(pruner.penalty().detach()) == pytest.approx(4 * expected, rel=1e-5)


def test_admm_updates_follow_the_algorithm():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 8, 3))
    plan = PruningPlan(default=PatternConnectivityScheme(density=0.2), skip_first_conv=False)
    pruner = ADMMPruner(plan, ADMMSettings(rho=0.1, rho_growth=2.0, pattern_selection=False))
    pruner.prepare(model)
    w = model[0].weight.detach().clone()
    u0 = torch.randn_like(w) * 0.1
    pruner.U["0"] = u0.clone()
    pruner.step()
    z = PatternConnectivityScheme(density=0.2).project(w + u0)
    torch.testing.assert_close(pruner.Z["0"], z)
    # U is rescaled by rho_old / rho_new when rho grows (scaled-dual ADMM)
    torch.testing.assert_close(pruner.U["0"], (u0 + w - z) * 0.5)
    assert pruner.rho == pytest.approx(0.2)
    masks = pruner.hard_prune()
    assert torch.equal(masks["0"], PatternConnectivityScheme(density=0.2).mask(w))
    with pytest.raises(PrunerStateError):
        pruner.step()


def test_project_simplex():
    v = torch.tensor([[0.2, 0.9, -1.0, 0.4], [5.0, 5.0, 5.0, 5.0]])
    a = project_simplex(v)
    torch.testing.assert_close(a.sum(-1), torch.ones(2))
    assert bool((a >= 0).all())
    torch.testing.assert_close(a[1], torch.full((4,), 0.25))
    # already on the simplex: unchanged
    p = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    torch.testing.assert_close(project_simplex(p), p)
    # brute-force check of optimality on one vector: no simplex point on a grid is closer
    x = v[0]
    best = min(
        float((x - torch.tensor([i, j, k, 10 - i - j - k]) / 10).norm())
        for i in range(11)
        for j in range(11 - i)
        for k in range(11 - i - j)
    )
    assert float((x - a[0]).norm()) <= best + 1e-6


def test_pattern_selector_converges_to_dominant_pattern():
    lib = PatternScheme().library
    sel = PatternSelector(lib, (1, 1), step=0.2)
    w = torch.zeros(1, 1, 3, 3)
    target = torch.from_numpy(lib.masks()[5])
    w[0, 0] = target * 2.0 + 0.01
    ids = [int(sel.update(w)) for _ in range(10)]
    assert ids[-1] == 5
    assert float(sel.a[0, 0, 5]) > 0.5
