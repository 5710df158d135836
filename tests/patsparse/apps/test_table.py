"""Table 1: interleaved timing, the text table, and (slow) the whole table at a tiny size."""

from __future__ import annotations

import pytest
import torch

from patsparse.apps import get_app
from patsparse.apps.photos import PhotoSet, load_photo
from patsparse.apps.prune import AppPruneConfig, app_plan
from patsparse.apps.table import (
    ENGINES,
    TableConfig,
    app_table,
    format_table,
    timing_input,
)
from patsparse.pruning.pruners import MagnitudePruner


def test_cpu_clock_counts_this_process_only():
    # Table 1 times its engines with bench's interleaved rounds (turn-taking is tested with
    # them in tests/patsparse/bench); --clock cpu counts this process's CPU time only
    import time

    from patsparse.bench.torch_timing import interleaved

    times = interleaved({"sleep": lambda: time.sleep(0.02)}, 2, clock="cpu")
    assert max(times["sleep"]) < 15  # asleep: no CPU time, however long it took


def test_timing_input_is_a_real_valued_input():
    x = timing_input(get_app("sr"), 24)
    assert x.shape == (1, 1, 24, 24) and float(x.std()) > 0
    torch.testing.assert_close(x, timing_input(get_app("sr"), 24))


def test_config_is_checked():
    with pytest.raises(ValueError, match="sizes"):
        TableConfig(sizes=())
    with pytest.raises(ValueError, match="runs"):
        TableConfig(runs=0)
    with pytest.raises(ValueError, match="clock"):
        TableConfig(clock="sundial")
    with pytest.raises(ValueError, match="pytorch_dense"):
        TableConfig(engines=("patsparse",))


@pytest.mark.slow
def test_whole_table_at_a_tiny_size():
    app = get_app("sr")
    torch.manual_seed(0)
    dense = app.build().eval()
    pruned = app.build().eval()
    pruned.load_state_dict(dense.state_dict())
    p = MagnitudePruner(app_plan(app, pruned, AppPruneConfig()))
    p.prepare(pruned)
    p.step()
    p.squash_mask()
    photos = PhotoSet(
        train={"a": load_photo("brick")[:32, :32]},
        held_out={"b": load_photo("coins")[:40, :40]},
        source="test",
    )
    res = app_table(app, dense, pruned, photos, config=TableConfig(sizes=(16,), runs=2))
    (row,) = res["rows"]
    assert list(row["engines"]) == list(ENGINES)
    for e in row["engines"].values():
        assert e["median"] > 0 and e["max_abs_error_vs_pytorch"] < 1e-4
    assert row["engines"]["patsparse"]["quality"] == res["quality"]["pruned"]
    text = format_table(res)
    assert "patsparse" in text and "16²" in text
    assert "mmap and trim thresholds" in res["allocator"]  # PyTorch timed at its steady speed
    assert len(res["core_round_trip_ns"]) == 2
    far = format_table(res | {"core_round_trip_ns": [55.0, 330.0]})
    assert far.splitlines()[-1].startswith("CORES FAR APART") and "55, 330 ns" in far
    assert "CORES FAR APART" not in format_table(res | {"core_round_trip_ns": [55.0, 60.0]})
