"""Scale-out on a real database: a PostgreSQL server on loopback (started here in a temporary
directory; ``.ci/run`` installs ``postgresql`` from apt), two ``patsparse search`` workers on
one study, one killed mid-trial: the other finishes the budget and no trial is lost. The
victim's candidate evaluation is made to stall, so the kill lands in a trial whatever the
machine's speed.

"No trial lost" means: every trial that completed stays complete with its result, the budget
counts completed trials only, so the survivor completes the whole budget; the killed
worker's trial never counts as complete: it stays RUNNING with a stopped heartbeat until a
worker's stale check (after ``grace_period``) marks it FAIL.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from _search_helpers import ROOT, search_cmd, subprocess_env
from optuna.trial import TrialState

pytestmark = pytest.mark.postgres

#: the OS user that runs the server when the tests run as root (initdb refuses root); the
#: Debian package creates it
SERVER_USER = "postgres"


def _server_bin() -> Path | None:
    """The directory of ``initdb`` and ``pg_ctl``: on PATH, else the newest Debian install."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    installed = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    return Path(installed[-1]).parent if installed else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1 (trust auth, loopback only); its URL."""
    import psycopg  # noqa: F401  (the dev extra installs the postgres extra: no skip for it)

    bindir = _server_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql)")
    user: str | None = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(SERVER_USER)
        except KeyError:
            pytest.skip(f"running as root and no {SERVER_USER!r} user to run the server as")
        user = SERVER_USER
    tmp = Path(tempfile.mkdtemp(prefix="patsparse-pg-"))
    data, log = tmp / "data", tmp / "server.log"
    if user is not None:
        tmp.chmod(0o755)
        os.chown(tmp, owner.pw_uid, owner.pw_gid)
    port = _free_port()

    def run(*cmd: str) -> None:
        out = subprocess.run(cmd, user=user, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, f"{cmd[0]} failed:\n{out.stdout}\n{out.stderr}"

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "patsparse", "-A", "trust")
        opts = f"-h 127.0.0.1 -p {port} -k {tmp} -c fsync=off"
        run(str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(log), "-w", "start")
        yield f"postgresql://patsparse@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                user=user,
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with _postgres_server() as url:
        yield url


def _trials(url: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name="nps", storage=url).get_trials(deepcopy=False)
    except KeyError:  # the study does not exist yet
        return []


#: the victim worker: ``patsparse search`` whose candidate evaluation stalls, so its first trial
#: is RUNNING until the kill however fast trials are (a digits trial takes well under a
#: second: polling for a real one raced the worker, which could finish the budget unseen)
STALLING_WORKER = """
import sys, time
import patsparse.search.trials as trials
evaluate = trials.fast_evaluate
def stalled(*args, **kwargs):
    time.sleep(900)
    return evaluate(*args, **kwargs)
trials.fast_evaluate = stalled
from patsparse.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _wait_for(
    proc: subprocess.Popen,
    log: Path,
    url: str,
    what: str,
    ready: Callable[[list[optuna.trial.FrozenTrial]], bool],
) -> None:
    """Poll the study at ``url`` until ``ready(trials)``; fail with the worker's log if the
    worker exits first or nothing happens in 4 minutes."""
    deadline = time.time() + 240
    while True:
        assert proc.poll() is None, f"the worker exited before {what}:\n{log.read_text()[-3000:]}"
        assert time.time() < deadline, f"no {what} in time:\n{log.read_text()[-3000:]}"
        if ready(_trials(url)):
            return
        time.sleep(0.2)


def test_two_workers_on_postgres_one_killed_mid_trial(digits_checkpoint, postgres_url, tmp_path):
    budget = 2
    cmd = search_cmd(
        digits_checkpoint, postgres_url, "--budget", str(budget), "--search-only", "--no-overlap"
    )
    env = subprocess_env()
    logs = [tmp_path / "killed.log", tmp_path / "survivor.log"]
    files = [p.open("w") for p in logs]
    # the victim starts first and stalls in its first trial; the survivor joins the study
    victim = subprocess.Popen(
        [sys.executable, "-c", STALLING_WORKER, *cmd[3:]],
        stdout=files[0],
        stderr=files[0],
        env=env,
        cwd=ROOT,
    )
    victim_name = f"{socket.gethostname()}:{victim.pid}"
    survivor: subprocess.Popen | None = None
    try:
        _wait_for(
            victim,
            logs[0],
            postgres_url,
            "the victim's trial started",
            lambda ts: any(
                t.user_attrs.get("worker") == victim_name and t.state == TrialState.RUNNING
                for t in ts
            ),
        )
        survivor = subprocess.Popen(cmd, stdout=files[1], stderr=files[1], env=env, cwd=ROOT)
        survivor_name = f"{socket.gethostname()}:{survivor.pid}"
        # both work on the study at once: kill the victim (SIGKILL, no cleanup) once the
        # survivor has a trial of its own
        _wait_for(
            survivor,
            logs[1],
            postgres_url,
            "the survivor's first trial",
            lambda ts: any(t.user_attrs.get("worker") == survivor_name for t in ts),
        )
        at_kill = _trials(postgres_url)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        (killed,) = [t for t in at_kill if t.user_attrs.get("worker") == victim_name]
        assert killed.state == TrialState.RUNNING
        complete_at_kill = {t.number: t.value for t in at_kill if t.state == TrialState.COMPLETE}
        assert survivor.wait(timeout=300) == 0, logs[1].read_text()[-3000:]
    finally:
        for p in (victim, survivor):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        for f in files:
            f.close()

    after = {t.number: t for t in _trials(postgres_url)}
    complete = {n: t for n, t in after.items() if t.state == TrialState.COMPLETE}
    # the survivor finished the budget: completed trials only, the killed one not among them
    assert budget <= len(complete) <= budget + 1
    assert killed.number not in complete
    # completed trials are kept as they were (none lost or rewritten by the survivor)
    assert all(complete[n].value == v for n, v in complete_at_kill.items())
    # every trial completed after the kill is the survivor's (none when the budget was already
    # complete at the kill)
    after_kill = {t.user_attrs["worker"] for n, t in complete.items() if n not in complete_at_kill}
    assert after_kill <= {survivor_name}
    assert len(complete_at_kill) >= budget or after_kill == {survivor_name}
    # the killed trial's heartbeat stopped: RUNNING until a stale check fails it (the survivor
    # does at its next trial once grace_period has passed; on a slow machine it already has)
    assert after[killed.number].state in (TrialState.RUNNING, TrialState.FAIL)
    time.sleep(1.5)
    storage = optuna.storages.RDBStorage(postgres_url, heartbeat_interval=1, grace_period=1)
    study = optuna.load_study(study_name="nps", storage=storage)
    optuna.storages.fail_stale_trials(study)
    assert study.trials[killed.number].state == TrialState.FAIL
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == len(complete)
