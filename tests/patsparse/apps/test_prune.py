"""Pruning an app's model: the plan (thin convs dense), per-layer rates, both methods."""

from __future__ import annotations

import pytest
import torch

from patsparse.apps.base import AppTrainConfig
from patsparse.apps.photos import PhotoSet, load_photo
from patsparse.apps.prune import AppPruneConfig, app_plan, compare_methods, prune_app
from patsparse.apps.sr import SuperResolution
from patsparse.schemes import PatternConnectivityScheme

TRAIN = AppTrainConfig(steps=1, batch_size=4, patch=16, lr=1e-3, pairs=8)
TINY = AppPruneConfig(admm_epochs=1, retrain_epochs=1, pairs=8)


@pytest.fixture(scope="module")
def photos() -> PhotoSet:
    return PhotoSet(
        train={"brick": load_photo("brick")[:64, :64]},
        held_out={"coins": load_photo("coins")[:32, :40]},
        source="test crops",
    )


def test_plan_prunes_3x3_with_patterns_1x1_with_blocks_and_keeps_thin_convs_dense():
    app = SuperResolution()
    decisions = app_plan(app, app.build(), AppPruneConfig()).resolve(app.build())
    by = {n: (d.scheme.name if d.scheme else None) for n, d in decisions.items()}
    assert by["head"] is None and by["tail"] is None and by["skip.1"] is None
    assert by["body.0.expand"] == "pattern+connectivity" and by["body.0.reduce"] == "block"
    none = app_plan(app, app.build(), AppPruneConfig(fallback=None)).resolve(app.build())
    assert none["body.0.reduce"].scheme is None


def test_thin_compression_column_prunes_the_image_out_convs_only(photos):
    app = SuperResolution()
    cfg = AppPruneConfig(thin_compression=4, admm_epochs=0, retrain_epochs=1, pairs=8)
    decisions = app_plan(app, app.build(), cfg).resolve(app.build())
    by = {n: (d.scheme.name if d.scheme else None) for n, d in decisions.items()}
    # the tail (32 -> 4) is pruned; the head (1 -> 32) and skip (1 -> 4) read the image: dense
    assert by["tail"] == "column" and by["head"] is None and by["skip.1"] is None
    res = prune_app(app, app.build(), photos, config=cfg, train=TRAIN)
    w = res.model.tail.weight.detach()
    columns = (w != 0).reshape(w.shape[0], -1)
    # whole columns: every filter keeps the same (input channel, tap) positions, a quarter
    assert torch.equal(columns, columns[:1].expand_as(columns))
    assert int(columns[0].sum()) == columns.shape[1] // 4
    assert {r["layer"]: r["compression"] for r in res.layers}["tail"] == pytest.approx(4.0)


def test_prune_states_each_layers_rate_and_leaves_the_dense_model_alone(photos):
    app = SuperResolution()
    torch.manual_seed(0)
    dense = app.build()
    before = {k: v.clone() for k, v in dense.state_dict().items()}
    res = prune_app(app, dense, photos, config=TINY, train=TRAIN)
    for k, v in dense.state_dict().items():
        torch.testing.assert_close(v, before[k])
    rows = {r["layer"]: r for r in res.layers}
    assert rows["head"]["compression"] == 1.0 and rows["head"]["scheme"] == "dense"
    assert rows["body.0.expand"]["compression"] == pytest.approx(8.0, rel=0.05)
    w = res.model.body[0].expand.weight.detach()
    assert torch.equal(PatternConnectivityScheme(density=1 / 8).project(w) != 0, w != 0)
    assert [h["phase"] for h in res.history] == ["admm", "retrain"]
    assert set(res.quality) == {"psnr", "ssim"}


def test_compare_runs_both_methods_on_the_headline_metric(photos):
    app = SuperResolution()
    out = compare_methods(app, app.build(), photos, config=TINY, train=TRAIN)
    assert set(out) == {"admm", "magnitude"}
    assert all("psnr" in r and r["seconds"] >= 0 for r in out.values())


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="method"):
        AppPruneConfig(method="random")
    with pytest.raises(ValueError, match="compression"):
        AppPruneConfig(compression=0.5)
    with pytest.raises(ValueError, match="thin_compression"):
        AppPruneConfig(thin_compression=0)


def test_too_few_pairs_for_a_batch_is_an_error(photos):
    app = SuperResolution()
    with pytest.raises(ValueError, match="fill a batch"):
        prune_app(app, app.build(), photos, config=AppPruneConfig(pairs=2), train=TRAIN)
