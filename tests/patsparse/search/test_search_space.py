"""SearchSpace / SpaceConfig / Choice: enumeration, plans, and typed errors."""

from __future__ import annotations

import pytest

from patsparse.core.errors import InvalidRateError, SearchConfigError, UnknownNameError
from patsparse.models import build_model
from patsparse.schemes import FilterScheme, PatternConnectivityScheme
from patsparse.search import Choice, SearchSpace, SpaceConfig


def test_digits_space_enumerates_supported_choices():
    space = SearchSpace.from_model(build_model("digits-cnn"), SpaceConfig())
    assert list(space.layers) == ["features.3", "features.7"]
    assert space.fixed == {
        "features.0": "first conv (skip_first_conv)",
        "classifier": "last linear (skip_last_linear)",
    }
    labels = space.labels("features.3")
    assert labels[0] == "dense" and "pattern" in labels and "filter@2" in labels
    assert "pattern+connectivity@8" in labels and "block-pattern@4" in labels
    # pattern+connectivity keeps at most 4/9 of the weights: 2x is out of its reach
    assert "pattern+connectivity@2" not in labels
    assert space.size == len(labels) ** 2


def test_linear_layers_get_only_schemes_that_prune_them():
    cfg = SpaceConfig(skip_last_linear=False)
    space = SearchSpace.from_model(build_model("digits-cnn"), cfg)
    labels = space.labels("classifier")
    assert "filter@2" in labels and "block@4" in labels
    assert not any(lab.startswith(("pattern", "block-pattern", "connectivity")) for lab in labels)


def test_plan_from_configuration_resolves_per_layer():
    model = build_model("digits-cnn")
    space = SearchSpace.from_model(model, SpaceConfig())
    plan = space.plan({"features.3": "pattern+connectivity@8", "features.7": "filter@2"})
    decisions = plan.resolve(model)
    s3, s7 = decisions["features.3"].scheme, decisions["features.7"].scheme
    assert isinstance(s3, PatternConnectivityScheme) and s3.density == pytest.approx(1 / 8)
    assert isinstance(s7, FilterScheme) and s7.density == pytest.approx(0.5)
    assert decisions["features.0"].scheme is None and decisions["classifier"].scheme is None
    dense = space.plan(space.dense()).resolve(model)
    assert all(d.scheme is None for d in dense.values())


def test_unknown_scheme_is_a_typed_error():
    with pytest.raises(UnknownNameError, match="Did you mean 'pattern'"):
        SpaceConfig(schemes=("dense", "patern"))
    with pytest.raises(UnknownNameError, match="unknown pruning scheme 'sparse'"):
        Choice.parse("sparse@4")
    space = SearchSpace.from_model(build_model("digits-cnn"), SpaceConfig())
    with pytest.raises(UnknownNameError):
        space.check({"features.3": "nonsense@2", "features.7": "dense"})


def test_bad_configurations_are_typed_errors():
    space = SearchSpace.from_model(build_model("digits-cnn"), SpaceConfig(compressions=(8.0,)))
    with pytest.raises(SearchConfigError, match="not in the search space"):
        space.check({"features.3": "filter@3", "features.7": "dense"})
    with pytest.raises(SearchConfigError, match="outside the search space"):
        space.check({"features.3": "dense", "features.7": "dense", "features.9": "dense"})
    with pytest.raises(SearchConfigError, match="no choice for layer"):
        space.check({"features.3": "dense"})
    with pytest.raises(InvalidRateError):
        SpaceConfig(compressions=(0.5,))
    with pytest.raises(SearchConfigError, match="no layer to search"):
        SearchSpace.from_model(build_model("digits-cnn"), SpaceConfig(schemes=("dense",)))


def test_choice_labels_round_trip_and_config_json():
    for label in ("dense", "pattern", "filter@2", "pattern+connectivity@8"):
        assert Choice.parse(label).label == label
    cfg = SpaceConfig(schemes=("dense", "filter"), compressions=(2, 4), block_size=8)
    assert SpaceConfig.from_dict(cfg.to_dict()) == cfg


def test_extremes_probe_the_most_compressed_corners():
    space = SearchSpace.from_model(
        build_model("digits-cnn"), SpaceConfig(schemes=("dense", "pattern", "filter"))
    )
    corners = space.extremes()
    assert {"features.3": "pattern", "features.7": "pattern"} in corners
    assert {"features.3": "filter@8", "features.7": "filter@8"} in corners
    params = space.to_params(corners[0])
    assert space.from_params(params) == corners[0]
