"""App checkpoints: round trip, the app and kind checked, the shipped ones load and beat
their baseline as recorded."""

from __future__ import annotations

import pytest
import torch

from patsparse.apps import get_app
from patsparse.apps.checkpoints import (
    load_app_checkpoint,
    save_app_checkpoint,
    shipped_path,
)
from patsparse.core.errors import CheckpointError


def test_round_trip_keeps_weights_masks_and_metrics(tmp_path):
    app = get_app("sr")
    torch.manual_seed(0)
    model = app.build()
    masks = {"tail": torch.ones_like(model.tail.weight, dtype=torch.bool)}
    path = save_app_checkpoint(
        tmp_path / "x.pt", app, "pruned", model, masks=masks, metrics={"quality": {"psnr": 1.0}}
    )
    ck = load_app_checkpoint(app, "pruned", path)
    assert ck.app == "sr" and ck.kind == "pruned" and not ck.model.training
    assert ck.metrics["quality"] == {"psnr": 1.0} and set(ck.masks) == {"tail"}
    for k, v in model.state_dict().items():
        torch.testing.assert_close(ck.model.state_dict()[k], v)


def test_wrong_kind_or_app_or_missing_shipped_file_is_a_typed_error(tmp_path, monkeypatch):
    app = get_app("sr")
    path = save_app_checkpoint(tmp_path / "d.pt", app, "dense", app.build())
    with pytest.raises(CheckpointError, match="dense sr model, not the pruned"):
        load_app_checkpoint(app, "pruned", path)

    class Other(type(app)):  # the same model under another app's name
        name = "other"

    with pytest.raises(CheckpointError, match="checkpoint of 'sr', not of 'other'"):
        load_app_checkpoint(Other(), "dense", path)
    monkeypatch.setattr(
        "patsparse.apps.checkpoints.shipped_path", lambda _a, _k: tmp_path / "none.pt"
    )
    with pytest.raises(CheckpointError, match="ships no pruned checkpoint") as err:
        load_app_checkpoint(app, "pruned")
    assert "patsparse app train sr" in (err.value.fix or "")
    with pytest.raises(ValueError, match="kind"):
        load_app_checkpoint(app, "sparse")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["sr", "sr4"])
@pytest.mark.parametrize("kind", ["dense", "pruned"])
def test_shipped_sr_checkpoints_load_small_and_recorded_beating_bicubic(name, kind):
    app = get_app(name)
    path = shipped_path(app, kind)
    assert path.is_file() and path.stat().st_size < 2_000_000
    ck = load_app_checkpoint(app, kind)
    q = ck.metrics["quality"] if kind == "pruned" else ck.metrics["train"]["quality"]
    base = ck.metrics["baseline"] if kind == "pruned" else ck.metrics["train"]["baseline"]
    assert q["psnr"] > base["psnr"] and q["ssim"] > base["ssim"]
    if kind == "pruned":
        assert q["psnr"] > ck.metrics["dense_quality"]["psnr"] - 0.3
        assert ck.masks  # pruned layers carry their masks


def test_shipped_style_checkpoint_is_recorded_within_its_bounds_of_dense():
    app = get_app("style")
    path = shipped_path(app, "pruned")
    assert path.is_file() and path.stat().st_size < 2_000_000
    ck = load_app_checkpoint(app, "pruned")
    q, dense, base = (ck.metrics[k] for k in ("quality", "dense_quality", "baseline"))
    # docs/apps.md: the pruned style loss within 1.5x of dense, content within 5 %, both
    # far below the baseline (the photo itself)
    assert q["style_loss"] < 1.5 * dense["style_loss"] < base["style_loss"] / 100
    assert q["content_loss"] < 1.05 * dense["content_loss"]
    layers = {r["layer"]: r for r in ck.metrics["prune"]["layers"]}
    assert layers["decode.5"]["scheme"] == "column"  # the 9x9 image-out conv is pruned
    assert layers["encode.0.1"]["scheme"] == "dense"  # the image-in one is not
    assert set(ck.metrics["compare"]) == {"admm", "magnitude"}


def test_shipped_color_checkpoint_is_block_pattern_and_beats_its_baseline():
    app = get_app("color")
    ck = load_app_checkpoint(app, "pruned")
    q, dense = ck.metrics["quality"], ck.metrics["dense_quality"]
    base = ck.metrics["baseline"]
    # the headline metric: far below the mean-chroma baseline, near dense
    assert q["colorfulness_err"] < base["colorfulness_err"] / 2
    assert q["colorfulness_err"] < 1.3 * dense["colorfulness_err"]
    assert q["chroma_psnr"] > dense["chroma_psnr"] - 1.0
    layers = {r["layer"]: r for r in ck.metrics["prune"]["layers"]}
    assert {layers[n]["scheme"] for n in ("low.1.0", "mid.0.0", "decode.0.0")} == {"block-pattern"}
    assert layers["decode.5"]["scheme"] == "column" and layers["low.0.0"]["scheme"] == "dense"
