"""The search's side of latency: candidates' sparsity structure, the memo and the cache."""

from __future__ import annotations

import pytest
import torch
from _search_helpers import SlowStretch

from patsparse.models import build_model
from patsparse.schemes import PruningPlan, make_scheme
from patsparse.search import LatencyCache, structure_model
from patsparse.search.measurement import LatencyMeasurement, structure_key

X = torch.zeros(1, 1, 8, 8)


def _pc8() -> PruningPlan:
    return PruningPlan(default=make_scheme("pattern+connectivity", density=1 / 8))


def test_structure_model_depends_on_structure_not_weights():
    model = build_model("digits-cnn")
    a = structure_model(model, _pc8(), seed=0)
    b = structure_model(model, _pc8(), seed=0)
    c = structure_model(model, PruningPlan(default=None), seed=0)
    assert structure_key(a) == structure_key(b) != structure_key(c)
    w = a.features[3].weight
    assert float((w != 0).float().mean()) == pytest.approx(1 / 8, abs=0.01)


def test_memo_and_cache_measure_a_structure_once(host_measurer):
    model = structure_model(build_model("digits-cnn"), _pc8())
    host_measurer.measure(model, X)
    calls = host_measurer.calls
    host_measurer.measure(structure_model(build_model("digits-cnn"), _pc8()), X)
    assert host_measurer.calls == calls  # same structure, other weights object: memo hit
    cache = LatencyCache()
    runs = []

    def measure():
        runs.append(1)
        return host_measurer.measure(model, X)

    first, hit1 = cache.get_or_measure("k", measure)
    second, hit2 = cache.get_or_measure("k", measure)
    assert (hit1, hit2) == (False, True) and first == second > 0 and len(runs) == 1
    assert (cache.hits, cache.misses) == (1, 1)


def test_measurement_from_seconds_is_in_ms_and_rejects_empty_timings():
    from patsparse.core.errors import LatencyMeasurementError

    m = LatencyMeasurement.from_seconds(
        [0.003, 0.001, 0.002], compile_seconds=1.5, rewritten_convs=2, device="test"
    )
    assert (m.median_ms, m.min_ms, m.max_ms, m.repeat) == pytest.approx((2.0, 1.0, 3.0, 3))
    with pytest.raises(LatencyMeasurementError, match=r"TimingConfig\.number"):
        LatencyMeasurement.from_seconds([], compile_seconds=0, rewritten_convs=0, device="t")


def test_interleaved_rounds_keep_a_slow_stretch_out_of_every_median():
    from patsparse.search.measurement import measure_interleaved

    dense = structure_model(build_model("digits-cnn"), PruningPlan(default=None))
    pruned = structure_model(build_model("digits-cnn"), _pc8())
    truth = {
        k: SlowStretch(range(0)).compile(m, X) * 1e-4 for k, m in (("d", dense), ("p", pruned))
    }
    # back to back, all three timings of the pruned model would fall in the slow stretch;
    # interleaved, the stretch covers one round of each model and the medians are the truth
    measurer = SlowStretch(range(3, 6))
    got = measure_interleaved(measurer, {"d": dense, "p": pruned}, X, rounds=5)
    assert got == pytest.approx(truth)
    assert measurer.compiles == 2 and measurer.calls == 10
    # with one round the slow stretch decides: the pruned model reads slower than dense
    one = measure_interleaved(SlowStretch(range(1, 2)), {"d": dense, "p": pruned}, X, rounds=1)
    assert one["p"] > one["d"]
