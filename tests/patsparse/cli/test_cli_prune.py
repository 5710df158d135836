"""``patsparse prune`` (and ``report`` of what it saved)."""

from __future__ import annotations

import json

import pytest

from patsparse.cli import main

FAST = ["--dense-epochs", "6", "--admm-epochs", "3", "--retrain-epochs", "3"]


def _json(capsys):
    out = capsys.readouterr().out
    return json.loads(out)


def test_prune_json_reports_accuracy_compression_and_violations(tmp_path, capsys):
    ckpt = tmp_path / "p.pt"
    rc = main(["prune", "--json", "--compression", "5", "--out", str(ckpt), *FAST])
    assert rc == 0
    data = _json(capsys)
    assert data["model"] == "digits-cnn" and data["method"] == "admm"
    assert data["dense_accuracy"] > 80 and data["pruned_accuracy"] > 80
    assert data["pattern_violations"] == 0
    assert data["pruned_layers_compression"] == pytest.approx(5.0, rel=0.05)
    layers = {r["name"]: r for r in data["report"]["layers"]}
    assert layers["features.0"]["scheme"] == "dense"
    assert layers["features.3"]["scheme"].startswith("pattern+connectivity")
    assert ckpt.is_file() and data["checkpoint"] == str(ckpt)

    assert main(["report", str(ckpt), "--json"]) == 0
    rep = _json(capsys)
    assert rep["total"]["pattern_violations"] == 0
    assert rep["total"]["pruned_layers_compression"] == data["pruned_layers_compression"]


def test_per_layer_overrides_and_magnitude(capsys):
    rc = main(
        [
            "prune",
            "--json",
            "--method",
            "magnitude",
            "--layer",
            "features.7=filter:2",
            "--layer",
            "features.3=dense",
            *FAST,
        ]
    )
    assert rc == 0
    layers = {r["name"]: r for r in _json(capsys)["report"]["layers"]}
    assert layers["features.3"]["scheme"] == "dense"
    assert layers["features.7"]["scheme"].startswith("filter")
    assert layers["features.7"]["compression"] == pytest.approx(2.0)


def test_prune_options_left_out_take_the_jobs_defaults():
    """Options left out take PruneJob's / DataSpec's / PruneConfig's defaults (one source)."""
    from patsparse.cli.prune import defaults, prune_job
    from patsparse.pruning.api import PruneConfig
    from patsparse.workflow import DataSpec, PruneJob

    job = prune_job(defaults())
    plain = PruneJob(plan=job.plan)
    assert (job.model, job.dense_epochs, job.seed) == (
        plain.model,
        plain.dense_epochs,
        plain.seed,
    )
    assert job.data == DataSpec() and job.config.method == PruneConfig().method
