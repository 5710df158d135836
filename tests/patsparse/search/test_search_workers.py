"""``patsparse search`` as users run it: a killed search resumed through the CLI (``--json``,
the saved model, the plot), CLI errors, two workers sharing one SQLite study (each a real
subprocess compiling and timing its candidates)."""

from __future__ import annotations

import json
import subprocess
import time

import optuna
import pytest
from _search_helpers import ROOT, search_cmd, subprocess_env
from optuna.trial import TrialState

from patsparse.cli import main


def _completed(storage: str) -> list[optuna.trial.FrozenTrial]:
    try:
        study = optuna.load_study(study_name="nps", storage=storage)
    except KeyError:  # not created yet
        return []
    return study.get_trials(states=(TrialState.COMPLETE,))


def test_cli_errors_are_clear(digits_checkpoint, capsys):
    args = ["search", str(digits_checkpoint), "--storage", "memory", "--repeat", "3"]
    assert main([*args, "--latency-ms", "1", "--schemes", "dense,patern"]) == 2
    assert "Did you mean 'pattern'" in capsys.readouterr().err
    assert main([*args, "--latency-ms", "1", "--tracker", "127.0.0.1:1", "--key", "k"]) == 2
    assert "cannot reach the RPC tracker" in capsys.readouterr().err
    rc = main(
        [
            *args,
            "--latency-ms",
            "1e-6",
            "--schemes",
            "dense,pattern+connectivity",
            "--compressions",
            "8",
            "--phase1-epochs",
            "0",
        ]
    )
    assert rc == 3
    assert "no feasible configuration" in capsys.readouterr().err


def test_killed_search_resumes(digits_checkpoint, tmp_path):
    storage = f"sqlite:///{tmp_path / 'nps.db'}"
    cmd = search_cmd(digits_checkpoint, storage, "--budget", "4", "--search-only")
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=subprocess_env(), cwd=ROOT)
    try:
        deadline = time.time() + 240
        while not _completed(storage):
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.time() < deadline, "no trial finished in time"
            time.sleep(0.3)
    finally:
        proc.kill()  # SIGKILL: no cleanup, a trial may be left running
        proc.wait()
    before = {t.number: (t.params, t.value) for t in _completed(storage)}
    assert 1 <= len(before) < 4
    # the restart also runs phase 3 and writes the result: the CLI's --json smoke test
    out, plot = tmp_path / "chosen.pt", tmp_path / "pareto.png"
    resumed = [*cmd[:-1], "--out", str(out), "--plot", str(plot), "--json"]
    again = subprocess.run(
        resumed, capture_output=True, text=True, env=subprocess_env(), cwd=ROOT, timeout=300
    )
    assert again.returncode == 0, again.stderr[-3000:]
    after = {t.number: (t.params, t.value) for t in _completed(storage)}
    assert len(after) >= 4 > len(before)
    assert all(after[n] == before[n] for n in before)  # no finished trial lost
    assert min(set(after) - set(before)) > max(before)  # numbering continued

    summary = json.loads(again.stdout)
    assert summary["status"] == "ok"
    assert f"trial {max(after)} [" in again.stderr  # progress per trial on stderr
    assert [r["layer"] for r in summary["layers"]] == ["features.3", "features.7"]
    assert len(summary["search"]["trials"]) == len(after)
    assert summary["search"]["best"]["latency_ms"] <= summary["search"]["constraint_ms"]
    assert summary["search"]["pareto"]
    verified = summary["search"]["verification"]  # the winner was measured again
    assert verified["trials"][0]["latency_ms"] > 0 and verified["dense_ms"] > 0
    final = summary["final"]
    assert final["latency_ms"] > 0 and 0 <= final["test_accuracy"] <= 100
    assert plot.stat().st_size > 1000
    from patsparse.export import load_pruned

    loaded = load_pruned(out)  # what 'patsparse compile' loads
    assert loaded.arch == "digits-cnn" and loaded.metrics["method"] == "magnitude"


@pytest.mark.slow
def test_two_workers_share_one_study_slow(digits_checkpoint, tmp_path):
    _two_workers(digits_checkpoint, tmp_path, budget=8)


def test_two_workers_share_one_study(digits_checkpoint, tmp_path):
    _two_workers(digits_checkpoint, tmp_path, budget=4)


#: ``patsparse search`` whose first trial waits until the other worker has one running too
#: (``sys.argv[1]``: the folder both write to), so neither can finish the budget alone however
#: the two starts are spread out on a loaded machine
WORKER_AT_THE_BARRIER = """
import os, sys, time
from pathlib import Path
import patsparse.search.trials as trials
barrier = Path(sys.argv[1])
evaluate = trials.fast_evaluate
def at_barrier(*args, **kwargs):
    if not (barrier / str(os.getpid())).exists():
        (barrier / str(os.getpid())).touch()
        deadline = time.time() + 300
        while len(list(barrier.iterdir())) < 2 and time.time() < deadline:
            time.sleep(0.1)
    return evaluate(*args, **kwargs)
trials.fast_evaluate = at_barrier
from patsparse.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _two_workers(checkpoint, tmp_path, *, budget):
    storage = f"sqlite:///{tmp_path / 'nps.db'}"
    # --no-overlap: two workers with a compile process each would be four on two cores
    cmd = search_cmd(checkpoint, storage, "--budget", str(budget), "--search-only", "--no-overlap")
    assert cmd[1:3] == ["-m", "patsparse"], cmd
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    worker = [cmd[0], "-c", WORKER_AT_THE_BARRIER, str(barrier), *cmd[3:], "--seed", "0"]
    logs = [(tmp_path / f"w{i}.log").open("w") for i in range(2)]
    procs = [
        subprocess.Popen(worker, stdout=f, stderr=f, env=subprocess_env(), cwd=ROOT) for f in logs
    ]
    for i, p in enumerate(procs):
        assert p.wait(timeout=400) == 0, (tmp_path / f"w{i}.log").read_text()[-3000:]
    done = _completed(storage)
    assert budget <= len(done) <= budget + 1  # the other worker's last trial may finish
    workers = {t.user_attrs["worker"] for t in done}
    assert len(workers) == 2, workers
    assert len({t.number for t in done}) == len(done)
