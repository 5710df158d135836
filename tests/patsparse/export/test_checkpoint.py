from __future__ import annotations

import pytest
import torch
from torch import nn

from patsparse.core.errors import CheckpointError
from patsparse.export import load_pruned, save_pruned
from patsparse.models import build_model
from patsparse.pruning import MagnitudePruner
from patsparse.schemes import PatternConnectivityScheme, PruningPlan


def _pruned():
    torch.manual_seed(0)
    model = build_model("digits-cnn", width=8)
    plan = PruningPlan(default=PatternConnectivityScheme(density=0.125))
    pruner = MagnitudePruner(plan)
    pruner.prepare(model)
    pruner.step()
    masks = pruner.squash_mask()
    schemes = {n: d.scheme for n, d in pruner.decisions.items()}
    return model.eval(), masks, schemes, plan


def _saved_digits(tmp_path):
    """A pruned width-8 digits CNN saved as a zoo checkpoint: (path, masks)."""
    model, masks, schemes, _ = _pruned()
    path = save_pruned(
        tmp_path / "m.pt",
        model,
        masks,
        schemes=schemes,
        arch="digits-cnn",
        arch_kwargs={"width": 8},
    )
    return path, masks


def test_round_trip_is_exact(tmp_path):
    model, masks, schemes, plan = _pruned()
    path = save_pruned(
        tmp_path / "m.pt",
        model,
        masks,
        schemes=schemes,
        plan=plan,
        arch="digits-cnn",
        arch_kwargs={"width": 8},
        metrics={"acc": 99.0},
    )
    # plain torch can read it without executing code
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "patsparse.checkpoint"
    loaded = load_pruned(path)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v), k
    assert set(loaded.masks) == set(masks)
    assert all(torch.equal(loaded.masks[k], masks[k]) for k in masks)
    assert loaded.schemes == schemes and loaded.plan == plan
    assert loaded.metrics == {"acc": 99.0} and loaded.arch_kwargs == {"width": 8}
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(loaded.model(x), model(x), rtol=0, atol=0)


def test_attach_masks_for_retraining(tmp_path):
    path, masks = _saved_digits(tmp_path)
    loaded = load_pruned(path, attach_masks=True)
    layer = loaded.model.features[3]
    with torch.no_grad():
        layer.parametrizations.weight.original.add_(1.0)
    assert bool((layer.weight[~masks["features.3"]] == 0).all())


def test_custom_model_needs_instance(tmp_path):
    model = nn.Sequential(nn.Conv2d(2, 4, 3))
    path = save_pruned(tmp_path / "c.pt", model, {})
    with pytest.raises(CheckpointError, match="pass model="):
        load_pruned(path)
    loaded = load_pruned(path, model=nn.Sequential(nn.Conv2d(2, 4, 3)))
    assert torch.equal(loaded.model[0].weight, model[0].weight)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_pruned(path, model=nn.Sequential(nn.Conv2d(2, 8, 3)))


def test_corrupt_and_foreign_files_are_typed_errors(tmp_path):
    good, _ = _saved_digits(tmp_path)
    data = good.read_bytes()
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_pruned(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        load_pruned(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.ones(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a patsparse checkpoint"):
        load_pruned(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_pruned(tmp_path / "missing.pt")
    # weights that break their masks are detected
    raw = torch.load(good, weights_only=True)
    raw["state_dict"]["features.3.weight"] = torch.ones_like(raw["state_dict"]["features.3.weight"])
    tampered = tmp_path / "tampered.pt"
    torch.save(raw, tampered)
    with pytest.raises(CheckpointError, match="outside its mask"):
        load_pruned(tampered)


def test_save_is_atomic(tmp_path, monkeypatch):
    model, masks, _, _ = _pruned()
    path = save_pruned(tmp_path / "m.pt", model, masks, arch="digits-cnn", arch_kwargs={"width": 8})
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_pruned(path, model, masks, arch="digits-cnn")
    assert path.read_bytes() == before


def test_a_directory_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="is a directory, not a checkpoint") as info:
        load_pruned(tmp_path)
    assert info.value.fix and "directory" in info.value.fix


def test_an_architecture_outside_the_zoo_needs_its_model(tmp_path):
    """The name was stored in the checkpoint: the fix is the Python call with the model,
    not a zoo name that looks alike."""
    model = nn.Sequential(nn.Conv2d(2, 4, 3))
    path = save_pruned(tmp_path / "c.pt", model, {}, arch="digits_cnn")
    with pytest.raises(CheckpointError, match="comes from the checkpoint") as info:
        load_pruned(path)
    assert "Did you mean" not in str(info.value)
    assert info.value.fix == (
        f"load it from Python with its model: "
        f"patsparse.export.load_pruned({str(path)!r}, model=MyNet())"
    )
    loaded = load_pruned(path, model=nn.Sequential(nn.Conv2d(2, 4, 3)))
    assert loaded.arch == "digits_cnn"
