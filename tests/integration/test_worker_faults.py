"""Workers through the faults real clusters have: many workers, SIGKILL, SIGTERM, a database
restart, CUDA out of memory. Real processes on a real PostgreSQL (and SQLite where it applies).

Heartbeats run at 1 s here (grace 3 s) through ``$HPSEARCH_HEARTBEAT_SECONDS``, so that a killed
worker's trial is found in seconds; the default is 10 s (grace 30 s).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from hpsearch import studies
from hpsearch.db import fleet
from hpsearch.db.storage import open_storage
from hpsearch.worker import run_worker

TESTS = Path(__file__).parents[1]  # the objectives modules beside conftest.py
FAST_HEARTBEAT = {"HPSEARCH_HEARTBEAT_SECONDS": "1"}


def _create(url, name="f", trials=4, **overrides):
    spec = {"name": name, "space": "demo", "task": {"epochs": 20}, "budget": {"trials": trials}}
    spec.update({"pruner": {"name": "none"}, "seed": 0, **overrides})
    return studies.create_study(open_storage(url), spec)


def _trials(url, name="f"):
    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


def _worker(url, *args, env=None):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        **(env or {}),
    }
    cmd = [sys.executable, "-m", "hpsearch", "worker", "--storage", url, "--gpus", "none", *args]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _resumable_args(checkpoint_dir):
    """Worker arguments for study "f" with the checkpointing test objective."""
    return ["--study", "f", "--objective", "objectives:resumable",
            "--checkpoint-dir", str(checkpoint_dir)]  # fmt: skip


def _wait_for(predicate, what, timeout=60.0, *, worker=None):
    """Poll ``predicate`` until it holds; fail at once, with its output, if ``worker`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        if worker is not None and worker.poll() is not None:
            raise AssertionError(f"the worker exited ({worker.returncode}) before {what}: "
                                 f"{worker.stdout.read()}")  # fmt: skip
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _running_with_steps(url, name="f", steps=2):
    def check():
        return [
            t
            for t in _trials(url, name)
            if t.state == TrialState.RUNNING and len(t.intermediate_values) >= steps
        ]

    return check


def _finished(trials):
    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


@pytest.mark.postgres
def test_eight_workers_share_one_study_exactly(fresh_postgres_url):
    url = fresh_postgres_url
    _create(url, trials=40)
    workers = [
        _worker(url, "--study", "f", "--objective", "objectives:quadratic") for _ in range(8)
    ]
    outputs = [w.communicate(timeout=240)[0] for w in workers]  # a deadlock would time out
    assert [w.returncode for w in workers] == [0] * 8, outputs
    trials = _trials(url)
    assert len(trials) == 40  # exactly the budget: not one extra trial was even created
    assert sorted(t.number for t in trials) == list(range(40))  # no duplicated numbers
    assert all(t.state == TrialState.COMPLETE for t in trials)
    for out in outputs:
        assert "already finished" not in out and "ended elsewhere" not in out, out
        assert "Traceback" not in out, out
    assert len({t.user_attrs["worker"] for t in trials}) >= 4  # the work was spread


@pytest.mark.postgres
def test_a_killed_workers_trial_is_failed_retried_and_resumed(fresh_postgres_url, tmp_path):
    url = fresh_postgres_url
    _create(url, trials=3)
    args = _resumable_args(tmp_path)
    doomed = _worker(url, *args, env=FAST_HEARTBEAT)
    try:
        (victim,) = _wait_for(_running_with_steps(url, steps=3), "a trial with 3 steps")
        doomed.kill()  # SIGKILL: no handler runs, the trial is left RUNNING
        doomed.wait(timeout=30)
        killed_at = time.time()
        survivor = _worker(url, *args, env=FAST_HEARTBEAT)
        out, _ = survivor.communicate(timeout=120)
    finally:
        doomed.kill()
    assert survivor.returncode == 0, out
    trials = _trials(url)
    killed = trials[victim.number]
    assert killed.state == TrialState.FAIL
    # Found stale within the grace period (3 s) plus a poll, not minutes later.
    assert killed.datetime_complete.timestamp() - killed_at < 20
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    assert retry.value > 1  # it resumed from the checkpoint the killed worker saved
    assert sorted(retry.intermediate_values) == list(range(1, 21))  # inherited + its own steps
    # The study ends with exactly its budget of finished trials, and no trial left running.
    assert len(_finished(trials)) == 3
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    status = studies.study_status(open_storage(url), "f")
    assert status.done and "3 of 3" in status.done_reason
    assert not [p for p in tmp_path.rglob("trial-*") if p.is_file()]


@pytest.mark.postgres
def test_a_postgres_restart_costs_a_pause_not_results(restartable_postgres):
    url, cluster = restartable_postgres
    _create(url, trials=12)
    workers = [_worker(url, "--study", "f", "--objective", "objectives:steady") for _ in range(2)]
    try:
        _wait_for(lambda: len(_finished(_trials(url))) >= 2, "two finished trials")
        open_storage(url).engine.dispose()  # this process's connections die with the server
        cluster.restart(down_seconds=3)
        outputs = [w.communicate(timeout=180)[0] for w in workers]
    finally:
        for w in workers:
            w.kill()
    assert [w.returncode for w in workers] == [0, 0], outputs
    assert any("study database unreachable" in out for out in outputs), outputs
    trials = _trials(url)
    assert len(_finished(trials)) == 12  # every result reached the database
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    # A trial cut by the restart is retried, never lost.
    retried = {t.system_attrs["failed_trial"] for t in trials if "failed_trial" in t.system_attrs}
    assert {t.number for t in trials if t.state == TrialState.FAIL} <= retried


def test_sigterm_stops_within_the_bound_and_the_trial_resumes(storage_url, tmp_path):
    _create(storage_url, trials=1)
    args = _resumable_args(tmp_path)
    worker = _worker(storage_url, *args)
    try:
        _wait_for(_running_with_steps(storage_url, steps=3), "a trial with 3 steps", worker=worker)
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=30)  # the bound on stopping
    finally:
        worker.kill()
    assert worker.returncode == 0, out
    assert not [t for t in _trials(storage_url) if t.state == TrialState.RUNNING], out
    assert not fleet.live_workers(open_storage(storage_url))  # it retired from the fleet
    run_worker(storage_url, study="f", objective="objectives:resumable", checkpoint_dir=tmp_path)
    stopped, retry = _trials(storage_url)
    assert stopped.state == TrialState.FAIL and "SIGTERM" in stopped.user_attrs["fail_reason"]
    assert retry.state == TrialState.COMPLETE and retry.value > 1  # resumed, not restarted


def test_workers_without_a_study_serve_a_later_study_alongside_an_earlier_big_one(sqlite_url):
    _create(sqlite_url, name="big", trials=50)
    _create(sqlite_url, name="later", trials=5)
    run_worker(sqlite_url, objective="objectives:quadratic", max_trials=6)
    assert len(_trials(sqlite_url, "later")) == 3 and len(_trials(sqlite_url, "big")) == 3


@pytest.mark.postgres
def test_two_studies_both_progress_with_two_worker_processes(fresh_postgres_url):
    url = fresh_postgres_url
    _create(url, name="a", trials=6)
    _create(url, name="b", trials=6)
    workers = [_worker(url, "--objective", "objectives:steady") for _ in range(2)]
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    for name in ("a", "b"):
        assert len(_finished(_trials(url, name))) == 6
    # Each worker served both studies at some point, or they split them: both progressed.
    assert all("serving every open study" in out for out in outputs)


def test_cuda_out_of_memory_retries_with_half_the_batch(sqlite_url):
    _create(sqlite_url, trials=1, fixed={"train.batch_size": 64})
    run_worker(sqlite_url, study="f", objective="objectives:needs_small_batches")
    (trial,) = _trials(sqlite_url)
    assert trial.state == TrialState.COMPLETE
    assert trial.value == 64  # the same effective batch: 16 rows x 4 accumulated
    assert trial.user_attrs["oom_retries"] == [
        {"train.batch_size": 32, "train.grad_accum": 2},
        {"train.batch_size": 16, "train.grad_accum": 4},
    ]


def test_a_config_that_never_fits_fails_with_the_reason_and_the_worker_goes_on(sqlite_url):
    _create(sqlite_url, trials=2, budget={"trials": 2, "max_failures": 2})
    ran = run_worker(sqlite_url, study="f", objective="objectives:never_fits")
    trials = _trials(sqlite_url)
    assert ran == 3 and all(t.state == TrialState.FAIL for t in trials)
    assert "does not fit even at the smallest batch" in trials[0].user_attrs["fail_reason"]


def test_a_worker_records_itself_in_the_fleet_while_it_runs(storage_url):
    _create(storage_url, trials=1)
    worker = _worker(storage_url, "--study", "f", "--objective", "objectives:resumable")
    storage = open_storage(storage_url)
    try:
        (running,) = _wait_for(_running_with_steps(storage_url, steps=1), "a running trial")
        (record,) = _wait_for(lambda: fleet.live_workers(storage, study="f"), "a live worker")
        out, _ = worker.communicate(timeout=60)
    finally:
        worker.kill()
    assert worker.returncode == 0, out
    assert record.pid == worker.pid and record.device == "cpu" and record.gpu_name is None
    assert record.trial_number == running.number and record.version
    assert not fleet.live_workers(storage)  # it retired when it exited
    (gone,) = fleet.list_workers(storage, live_only=False)
    assert gone.trials_run == 1 and not gone.live


@contextlib.contextmanager
def _tables_held(url, *tables):
    """Hold ``tables`` locked (ACCESS EXCLUSIVE) on a connection of its own: every other
    client's read or write of them waits until the block ends or the server goes away."""
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    conn = engine.connect()
    try:
        conn.execute(sqlalchemy.text(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE"))
        yield
    finally:
        try:
            conn.close()
        except sqlalchemy.exc.DBAPIError:
            pass  # the server that held the lock is gone, and the lock with it
        engine.dispose()


def _waiting_on_locks(url):
    """The application names of the server's other sessions that wait for a lock."""
    with open_storage(url).engine.connect() as conn:
        return set(conn.execute(sqlalchemy.text(
            "SELECT DISTINCT application_name FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )).scalars())  # fmt: skip


def _orphans(url, name="f"):
    """Numbers of the study's RUNNING trials that have no heartbeat row: Optuna's stale-trial
    check never looks at those, so before issue 14 nothing ever ended them."""
    query = sqlalchemy.text(
        "SELECT t.number FROM trials t JOIN studies s ON s.study_id = t.study_id"
        " LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id"
        " WHERE s.study_name = :name AND t.state = 'RUNNING' AND h.trial_id IS NULL"
    )
    with open_storage(url).engine.connect() as conn:
        return sorted(n for (n,) in conn.execute(query, {"name": name}))


@pytest.mark.postgres
@pytest.mark.slow
def test_rapid_postgres_restarts_during_claims_end_with_exactly_the_budget(restartable_postgres):
    url, cluster = restartable_postgres
    budget = 80
    _create(url, trials=budget, strategy="random")
    # An objective that takes no time: the workers spend their time claiming and telling, so
    # the restarts land inside claims (between creating a trial and its first heartbeat).
    args = ["--study", "f", "--objective", "instant_objectives:instant"]
    # Each worker's connections carry its name (libpq's $PGAPPNAME), for _waiting_on_locks.
    workers = [_worker(url, *args, env={**FAST_HEARTBEAT, "PGAPPNAME": f"w{i}"}) for i in (0, 1)]
    try:
        _wait_for(lambda: len(_trials(url)) >= 4, "claims under way")
        # The first restart must cut both workers mid-call, however fast they run: hold the
        # trials table until each of them waits on it, then restart. The other restarts land
        # wherever the workers are.
        with _tables_held(url, "trials"):
            _wait_for(lambda: _waiting_on_locks(url) == {"w0", "w1"}, "both workers blocked")
            cluster.restart(down_seconds=0.2)
        time.sleep(0.4)
        open_storage(url).engine.dispose()  # this process's connections died with the server
        for _ in range(4):
            cluster.restart(down_seconds=0.2)
            time.sleep(0.4)
        # Grace (3 s) for any trial left behind by a cut claim, then the rest of the budget.
        deadline = time.monotonic() + 90  # 16-34 s on 2 idle cores
        outputs = []
        for w in workers:
            try:
                outputs.append(w.communicate(timeout=max(1, deadline - time.monotonic()))[0])
            except subprocess.TimeoutExpired:
                w.kill()
                outputs.append(w.communicate()[0])
    finally:
        for w in workers:
            w.kill()
    trials = _trials(url)
    by_state = {s.name: sum(t.state == s for t in trials) for s in TrialState}
    detail = f"{by_state}, orphans (RUNNING, no heartbeat row): {_orphans(url)}"
    assert [w.returncode for w in workers] == [0, 0], (detail, [o[-3000:] for o in outputs])
    # Both felt the first restart at least: it cut them while they waited on the study.
    assert all("study database unreachable" in out for out in outputs), outputs
    assert len(_finished(trials)) == budget, detail  # exactly the budget: no more, no fewer
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)], detail
    assert sorted(t.number for t in trials) == list(range(len(trials)))  # no number twice
    # Every failed trial was one a restart cut, and it was run again.
    retried = {t.system_attrs["failed_trial"] for t in trials if "failed_trial" in t.system_attrs}
    assert {t.number for t in trials if t.state == TrialState.FAIL} <= retried, detail
    for out in outputs:
        assert "Traceback" not in out, out
    cut = sum(out.count("unreachable (claiming a trial)") for out in outputs)
    recovered = sum(out.count("although the reply was lost") for out in outputs)
    print(f"\nrestart test: {detail}; claims cut: {cut}, of which committed: {recovered}")
