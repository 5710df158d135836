"""The search on the super-resolution task: PSNR is the metric, latency on a larger image."""

from __future__ import annotations

import json

import pytest
from _search_helpers import search_cmd

from patsparse.cli import main
from patsparse.core.errors import SearchConfigError


def test_sr_search_end_to_end_reports_psnr(tmp_path, capsys):
    out = tmp_path / "sr.pt"
    # the shared tiny-search arguments (small space, 1 retrain epoch, magnitude only), on SR
    argv = search_cmd("sr-net", "memory", "--data", "sr", "--input-shape", "1,1,48,48")[3:]
    rc = main([*argv, "--budget", "2", "--dense-epochs", "1", "--out", str(out), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0, summary
    assert summary["metric"] == "PSNR" and summary["unit"] == "dB"
    assert summary["dataset"] == "sr" and summary["input_shape"] == [1, 1, 48, 48]
    assert summary["search"]["metric"] == "PSNR"
    # scores are PSNRs (nearest-neighbour alone gives ~36 dB here), not percentages
    for t in summary["search"]["trials"]:
        assert 25.0 < t["accuracy"] < 60.0 and t["latency_ms"] > 0
    assert 25.0 < summary["dense_test_accuracy"] < 60.0
    assert 25.0 < summary["final"]["test_accuracy"] < 60.0
    assert summary["final"]["meets_constraint"] and out.exists()


def test_sr_search_bad_input_is_refused_before_training(capsys):
    from patsparse.search.config import SearchConfig
    from patsparse.search.workflow import NPSJob

    with pytest.raises(SearchConfigError, match="batch-1 NCHW"):
        NPSJob(search=SearchConfig(latency_fraction=0.5), input_shape=(2, 1, 8, 8))
    base = ["search", "--latency-fraction", "0.5", "--storage", "memory"]
    assert main([*base, "sr-net", "--data", "sr", "--input-shape", "1,1,a,8"]) == 2
    assert "write N,C,H,W integers" in capsys.readouterr().err
    # a classifier on SR patches: a typed error naming the fix, before any pre-training
    assert main([*base, "digits-cnn", "--data", "sr", "--dense-epochs", "50"]) == 2
    assert "sr-net for --data sr" in capsys.readouterr().err
