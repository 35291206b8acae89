"""The trial cache never serves a stale trial: every change another process commits shows.

Each check compares the cache with a fresh read of the plain storage after a change: a trial
that finishes, is pruned, fails, or is failed and retried by the heartbeat callback; trials
committed out of id order; deleted trials; edits of finished trials; a deleted or reused study.
On PostgreSQL, two processes write a study while this one polls it through the cache.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from typing import Any

import optuna
import pytest
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from hpsearch.db.storage import mark_trials_edited, open_storage, study_lock
from hpsearch.db.cache import CachedStorage

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
]


def _snapshot(trials: list[FrozenTrial]) -> list[tuple[Any, ...]]:
    return [
        (
            t._trial_id,
            t.number,
            t.state,
            t.values,
            t.params,
            t.user_attrs,
            t.system_attrs,
            t.intermediate_values,
        )
        for t in trials
    ]


def _assert_fresh(cache: CachedStorage, study_id: int) -> None:
    fresh = _snapshot(cache.backend.get_all_trials(study_id, deepcopy=False))
    assert _snapshot(cache.get_all_trials(study_id, deepcopy=False)) == fresh


def test_every_state_change_shows(storage_url: str) -> None:
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    cache = CachedStorage(storage)
    sid = study._study_id

    running = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    study.enqueue_trial({"x": 0.5})
    _assert_fresh(cache, sid)
    assert [t.state for t in cache.get_all_trials(sid)] == [TrialState.RUNNING, TrialState.WAITING]

    running.report(0.1, 1)
    _assert_fresh(cache, sid)  # an intermediate value of a running trial
    study.tell(running, 0.7)
    _assert_fresh(cache, sid)
    assert cache.get_best_trial(sid).number == 0

    waiting = study.ask()  # takes the enqueued trial
    waiting.suggest_float("x", 0, 1)
    study.tell(waiting, state=TrialState.PRUNED)
    _assert_fresh(cache, sid)
    failing = study.ask()
    study.tell(failing, state=TrialState.FAIL)
    _assert_fresh(cache, sid)
    better = study.ask()
    study.tell(better, 0.9)
    _assert_fresh(cache, sid)
    assert cache.get_best_trial(sid).number == better.number
    assert cache.get_n_trials(sid, (TrialState.COMPLETE,)) == 2


def test_a_retried_trial_shows_failed_and_its_retry_waiting(storage_url: str) -> None:
    # A storage of its own with a one-second heartbeat, so the trial goes stale quickly.
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)
    storage = optuna.storages.RDBStorage(
        storage_url, heartbeat_interval=1, grace_period=1, heartbeat_stale_trial_callback=retry
    )
    study = optuna.create_study(storage=storage, study_name="r")
    cache = CachedStorage(storage)
    trial = study.ask()
    trial.suggest_int("n", 1, 9)
    storage.record_heartbeat(trial._trial_id)
    assert [t.state for t in cache.get_all_trials(study._study_id)] == [TrialState.RUNNING]
    time.sleep(2.5)
    optuna.storages.fail_stale_trials(study)
    _assert_fresh(cache, study._study_id)
    states = [t.state for t in cache.get_all_trials(study._study_id)]
    assert states == [TrialState.FAIL, TrialState.WAITING]


def _insert_trial(storage: Any, *, trial_id: int, number: int, study_id: int) -> None:
    with storage.engine.begin() as conn:
        conn.execute(
            sqlalchemy.text(
                "INSERT INTO trials (trial_id, number, study_id, state, datetime_start) "
                "VALUES (:id, :number, :study, 'RUNNING', CURRENT_TIMESTAMP)"
            ),
            {"id": trial_id, "number": number, "study": study_id},
        )


def _delete_trial(storage: Any, trial_id: int) -> None:
    tables = ("trial_heartbeats", "trial_params", "trial_values", "trial_intermediate_values")
    tables += ("trial_user_attributes", "trial_system_attributes", "trials")
    with storage.engine.begin() as conn:
        for table in tables:
            conn.execute(
                sqlalchemy.text(f"DELETE FROM {table} WHERE trial_id = :i"), {"i": trial_id}
            )


def test_trials_committed_out_of_id_order_or_deleted_show(storage_url: str) -> None:
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage, study_name="o")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    sid = study._study_id
    ids = [t._trial_id for t in study.trials]
    _delete_trial(storage, ids[1])  # a gap below the largest id
    cache = CachedStorage(storage)
    _assert_fresh(cache, sid)
    assert [t.number for t in cache.get_all_trials(sid)] == [0, 2]
    # Another process commits a trial whose id is below the largest the cache has seen.
    _insert_trial(storage, trial_id=ids[1], number=1, study_id=sid)
    _assert_fresh(cache, sid)
    assert [t.number for t in cache.get_all_trials(sid)] == [0, 1, 2]
    _delete_trial(storage, ids[1])
    _assert_fresh(cache, sid)
    assert [t.number for t in cache.get_all_trials(sid)] == [0, 2]
    assert cache.cache_info().repairs == 2


def test_edits_of_finished_trials_show_once_marked(storage_url: str) -> None:
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage, study_name="e")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=4)
    sid = study._study_id
    cache = CachedStorage(storage)
    _assert_fresh(cache, sid)
    target = study.trials[2]._trial_id
    with study_lock(storage, sid):
        with storage.engine.begin() as conn:  # what artifact clean-up does: drop an attr row
            conn.execute(
                sqlalchemy.text(
                    "INSERT INTO trial_system_attributes (trial_id, key, value_json) "
                    "VALUES (:i, 'artifacts:x', '\"y\"')"
                ),
                {"i": target},
            )
        mark_trials_edited(storage, sid, [target])
    _assert_fresh(cache, sid)
    assert cache.get_all_trials(sid)[2].system_attrs == {"artifacts:x": "y"}
    assert cache.cache_info().full_loads == 1  # only the edited trial was read again


def test_edits_beyond_what_the_marker_lists_reload_the_study(sqlite_url: str) -> None:
    storage = open_storage(sqlite_url)
    study = optuna.create_study(storage=storage, study_name="m")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    sid = study._study_id
    cache = CachedStorage(storage)
    cache.get_all_trials(sid)
    for _ in range(1001):  # more edits than the marker keeps
        mark_trials_edited(storage, sid, [study.trials[0]._trial_id])
    _assert_fresh(cache, sid)
    assert cache.cache_info().full_loads == 2


def test_a_deleted_study_and_a_reused_id(sqlite_url: str) -> None:
    storage = open_storage(sqlite_url)
    first = optuna.create_study(storage=storage, study_name="first")
    first.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    sid = first._study_id
    cache = CachedStorage(storage)
    assert len(cache.get_all_trials(sid)) == 3
    optuna.delete_study(study_name="first", storage=storage)
    with pytest.raises(KeyError):
        cache.get_all_trials(sid)
    second = optuna.create_study(storage=storage, study_name="second")
    second.optimize(lambda t: t.suggest_float("y", 0, 1), n_trials=1)
    assert second._study_id == sid  # SQLite reuses the largest id after a delete
    _assert_fresh(cache, sid)
    assert list(cache.get_all_trials(sid)[0].params) == ["y"]


def test_memory_stays_within_the_trial_budget(sqlite_url: str) -> None:
    storage = open_storage(sqlite_url)
    sids = []
    for name, n in (("a", 4), ("b", 4), ("big", 9)):
        study = optuna.create_study(storage=storage, study_name=name)
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=n)
        sids.append(study._study_id)
    cache = CachedStorage(storage, max_trials=6)
    for sid in sids[:2]:
        _assert_fresh(cache, sid)
    info = cache.cache_info()
    assert (info.studies, info.trials) == (1, 4)  # "a" made room for "b"
    _assert_fresh(cache, sids[2])  # bigger than the budget: read through, still right
    assert cache.cache_info().trials <= 6


def test_two_writer_processes_while_a_reader_polls(fresh_postgres_url: str) -> None:
    storage = open_storage(fresh_postgres_url)
    study = optuna.create_study(storage=storage, study_name="busy", direction="maximize")
    sid = study._study_id
    cache = CachedStorage(storage)
    writer = textwrap.dedent(
        f"""
        import random, optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name="busy", storage={fresh_postgres_url!r})
        rng = random.Random()
        def objective(trial):
            x = trial.suggest_float("x", 0, 1)
            for step in range(3):
                trial.report(x * step, step)
            roll = rng.random()
            if roll < 0.2:
                raise optuna.TrialPruned()
            if roll < 0.3:
                raise ValueError("boom")
            return x
        study.optimize(objective, n_trials=60, catch=(ValueError,))
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", writer]) for _ in range(2)]
    polls = 0
    try:
        while any(p.poll() is None for p in procs) or polls < 3:
            before = {t._trial_id: t for t in storage.get_all_trials(sid, deepcopy=False)}
            seen = {t._trial_id: t for t in cache.get_all_trials(sid, deepcopy=False)}
            polls += 1
            # Whatever the plain storage showed before this poll, the cache shows too.
            assert before.keys() <= seen.keys()
            for trial_id, old in before.items():
                if old.state.is_finished():
                    assert _snapshot([seen[trial_id]]) == _snapshot([old])
    finally:
        for p in procs:
            p.wait(timeout=120)
    assert [p.returncode for p in procs] == [0, 0]
    _assert_fresh(cache, sid)
    trials = cache.get_all_trials(sid)
    assert len(trials) == 120 and all(t.state.is_finished() for t in trials)
    assert cache.get_best_trial(sid).value == storage.get_best_trial(sid).value
    assert polls > 3


def _dashboard_detail(base: str, study_id: int) -> dict[str, Any]:
    import httpx

    response = httpx.get(f"{base}/api/studies/{study_id}", timeout=30)
    response.raise_for_status()
    body = response.json()
    return {
        "trials": [(t["number"], t["state"], t["params"]) for t in body["trials"]],
        "intersection": body["intersection_search_space"],
        "union": body["union_search_space"],
        "best": [t["number"] for t in body["best_trials"]],
    }


def test_the_dashboard_over_the_cache_answers_as_a_fresh_one(sqlite_url: str) -> None:
    from hpsearch.service.dashboard import start_dashboard

    storage = open_storage(sqlite_url)
    study = optuna.create_study(storage=storage, study_name="d")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    cached = start_dashboard(sqlite_url, port=0, anonymous_reads=True)
    try:
        base = cached.url.rsplit("/dashboard", 1)[0]
        first = _dashboard_detail(base, study._study_id)
        assert len(first["trials"]) == 3 and first["union"]
        # New trials with a parameter the first ones lack, and one left running.
        study.optimize(lambda t: t.suggest_float("x", 0, 1) + t.suggest_int("y", 1, 3), n_trials=2)
        running = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        time.sleep(2.5)  # the dashboard keeps its own copy of a small study for 2 s
        second = _dashboard_detail(base, study._study_id)
        study.tell(running, -1.0)  # finishes, and is the best now
        time.sleep(2.5)
        third = _dashboard_detail(base, study._study_id)
    finally:
        cached.stop()
    for detail in (second, third):
        assert {p["name"] for p in detail["union"]} == {"x", "y"}
        assert [p["name"] for p in detail["intersection"]] == ["x"]
    assert [state for _, state, _ in second["trials"]][-1] == "Running"
    assert [state for _, state, _ in third["trials"]][-1] == "Complete"
    assert third["best"] == [running.number]
    fresh = start_dashboard(sqlite_url, port=0, anonymous_reads=True)  # reads all anew
    try:
        assert _dashboard_detail(fresh.url.rsplit("/dashboard", 1)[0], study._study_id) == third
    finally:
        fresh.stop()
