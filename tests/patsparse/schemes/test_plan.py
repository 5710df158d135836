from __future__ import annotations

import pytest
from torch import nn

from patsparse.core.errors import UnknownLayerError, UnsupportedLayerError
from patsparse.models import build_model
from patsparse.schemes import (
    BlockScheme,
    ConnectivityScheme,
    FilterScheme,
    PatternConnectivityScheme,
    PruningPlan,
)


def test_default_skip_rules_and_overrides():
    model = build_model("digits-cnn")
    plan = PruningPlan(
        default=PatternConnectivityScheme(density=0.125),
        layers={"features.7": FilterScheme(density=0.5)},
    )
    d = plan.resolve(model)
    assert list(d) == ["features.0", "features.3", "features.7", "classifier"]
    assert d["features.0"].scheme is None and "first conv" in d["features.0"].reason
    assert d["classifier"].scheme is None and "last linear" in d["classifier"].reason
    assert d["features.3"].scheme == PatternConnectivityScheme(density=0.125)
    assert d["features.7"].scheme == FilterScheme(density=0.5)


def test_skip_rules_configurable_and_fallback_for_1x1_and_linear():
    model = build_model("resnet18-cifar")
    plan = PruningPlan(
        default=PatternConnectivityScheme(density=0.2),
        skip_first_conv=False,
        skip_last_linear=False,
        fallback=BlockScheme(density=0.25, block_rows=8),
    )
    d = plan.resolve(model)
    assert d["conv1"].scheme is not None
    one_by_one = [n for n, x in d.items() if x.shape[2:] == (1, 1)]
    assert one_by_one and all(d[n].scheme == plan.fallback for n in one_by_one)
    assert d["fc"].scheme == plan.fallback
    # without a fallback those layers stay dense with the reason
    d2 = PruningPlan(default=PatternConnectivityScheme(density=0.2)).resolve(model)
    assert d2[one_by_one[0]].scheme is None and "3x3" in d2[one_by_one[0]].reason


def test_unknown_layer_name_is_a_typed_error_with_suggestion():
    model = build_model("digits-cnn")
    plan = PruningPlan(default=None, layers={"features.8": FilterScheme()})
    with pytest.raises(UnknownLayerError, match=r"features\.8.*did you mean 'features\.[037]'"):
        plan.resolve(model)


def test_explicit_unsupported_override_raises():
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3))
    plan = PruningPlan(default=None, layers={"0": PatternConnectivityScheme()})
    with pytest.raises(UnsupportedLayerError, match="3x3"):
        plan.resolve(model)


def test_plan_json_round_trip():
    plan = PruningPlan(
        default=PatternConnectivityScheme(density=0.1, balanced=True),
        layers={"features.3": None, "features.7": ConnectivityScheme(density=0.5)},
        skip_first_conv=False,
        fallback=BlockScheme(density=0.5, block_rows=4),
    )
    assert PruningPlan.from_json(plan.to_json()) == plan
