"""Trial statistics kept per process agree with a computation from every trial, after each change.

The reference here reads the whole study through Optuna and computes each figure directly; the
statistics under test read only what changed. Changes come from this process and from another
connection, in every state, out of id order, and with the study id reused.
"""

from __future__ import annotations

import math
import time
from typing import Any

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from hpsearch.db.storage import RETRY_OF_ATTR, open_storage
from hpsearch.db.stats import TrialStats, trial_stats
from hpsearch.db.timestamps import as_utc

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
]

EPOCHS = 5


def _reference(storage: Any, study_id: int, direction: str) -> TrialStats:
    trials = storage.get_all_trials(study_id, deepcopy=False)
    counts = dict.fromkeys(TrialState, 0)
    for t in trials:
        counts[t.state] += 1
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = None
    if complete:
        sign = -1 if direction == "maximize" else 1
        best = min(complete, key=lambda t: (sign * t.value, t.number))
    finished = [
        t
        for t in trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.datetime_complete
    ]
    seconds = [(t.datetime_complete - t.datetime_start).total_seconds() for t in finished]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    saved = sum(EPOCHS - max(t.intermediate_values, default=0) for t in pruned)
    ended = [as_utc(t.datetime_complete) for t in trials if t.datetime_complete]
    return TrialStats(
        counts=counts,
        retries=sum(RETRY_OF_ATTR in t.system_attrs for t in trials),
        best_number=None if best is None else best.number,
        best_value=None if best is None or not math.isfinite(best.value) else best.value,
        mean_seconds=sum(seconds) / len(seconds) if seconds else None,
        pruned=len(pruned),
        epochs_saved=saved,
        last_finished_at=max(ended, default=None),
    )


def _check(storage: Any, study: optuna.Study, direction: str = "maximize") -> TrialStats:
    stats = trial_stats(storage, study._study_id, epochs=EPOCHS)
    expected = _reference(storage, study._study_id, direction)
    assert stats.mean_seconds == pytest.approx(expected.mean_seconds, abs=1e-3)
    assert {**stats.__dict__, "mean_seconds": 0} == {**expected.__dict__, "mean_seconds": 0}
    return stats


def test_statistics_follow_every_change(storage_url: str) -> None:
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    assert _check(storage, study).best_number is None
    running = study.ask()
    running.suggest_float("x", 0, 1)
    study.enqueue_trial({"x": 0.25})
    _check(storage, study)
    study.tell(running, 0.5)
    assert _check(storage, study).best_number == 0
    waiting = study.ask()
    waiting.report(0.1, 1)
    waiting.report(0.2, 2)
    study.tell(waiting, state=TrialState.PRUNED)  # saved EPOCHS - 2 epochs
    assert _check(storage, study).epochs_saved == EPOCHS - 2
    study.tell(study.ask(), state=TrialState.FAIL)
    study.tell(study.ask(), math.inf)  # infinity in the good direction is the best
    stats = _check(storage, study)
    assert (stats.best_number, stats.best_value) == (3, None)
    study.tell(study.ask(), 0.5)  # ties go to the lowest number
    # Another connection writes a trial: a fresh read sees it.
    other = optuna.load_study(study_name="s", storage=storage_url)
    other.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    assert _check(storage, study).counts[TrialState.COMPLETE] == 6


def test_a_retry_counts_while_waiting_and_after(storage_url: str) -> None:
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)
    storage = optuna.storages.RDBStorage(
        storage_url, heartbeat_interval=1, grace_period=1, heartbeat_stale_trial_callback=retry
    )
    study = optuna.create_study(storage=storage, study_name="r")
    trial = study.ask()
    storage.record_heartbeat(trial._trial_id)
    _check(storage, study, "minimize")
    time.sleep(2.5)
    optuna.storages.fail_stale_trials(study)
    assert _check(storage, study, "minimize").retries == 1
    study.tell(study.ask(), 1.0)  # the retry runs and completes
    assert _check(storage, study, "minimize").retries == 1


def test_a_trial_committed_out_of_id_order(sqlite_url: str) -> None:
    storage = open_storage(sqlite_url)
    study = optuna.create_study(storage=storage, study_name="o")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    ids = [t._trial_id for t in study.trials]
    with storage.engine.begin() as conn:
        for table in ("trial_heartbeats", "trial_params", "trial_values", "trials"):
            conn.execute(sqlalchemy.text(f"DELETE FROM {table} WHERE trial_id = :i"), {"i": ids[1]})
    _check(storage, study, "minimize")
    with storage.engine.begin() as conn:  # a trial lands below the largest id seen
        conn.execute(
            sqlalchemy.text(
                "INSERT INTO trials (trial_id, number, study_id, state, datetime_start, "
                "datetime_complete) VALUES (:i, 1, :s, 'PRUNED', CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP)"
            ),
            {"i": ids[1], "s": study._study_id},
        )
    assert _check(storage, study, "minimize").pruned == 1


def test_a_reused_study_id_starts_over(sqlite_url: str) -> None:
    storage = open_storage(sqlite_url)
    first = optuna.create_study(storage=storage, study_name="first")
    first.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=4)
    _check(storage, first, "minimize")
    optuna.delete_study(study_name="first", storage=storage)
    second = optuna.create_study(storage=storage, study_name="second")
    assert second._study_id == first._study_id  # SQLite reuses the largest id after a delete
    second.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert _check(storage, second, "minimize").counts[TrialState.COMPLETE] == 1
    with pytest.raises(KeyError):
        trial_stats(storage, 10_000, epochs=EPOCHS)


def test_an_edit_of_a_finished_trial_shows_once_marked(storage_url: str) -> None:
    from hpsearch.db.storage import TRIALS_EDITED_ATTR, mark_trials_edited, study_lock

    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)
    storage = optuna.storages.RDBStorage(
        storage_url, heartbeat_interval=1, grace_period=1, heartbeat_stale_trial_callback=retry
    )
    study = optuna.create_study(storage=storage, study_name="e")
    storage.record_heartbeat(study.ask()._trial_id)
    time.sleep(2.5)
    optuna.storages.fail_stale_trials(study)
    study.tell(study.ask(), 1.0)  # the retry completes: a finished trial with the retry marker
    assert _check(storage, study, "minimize").retries == 1
    retried = study.trials[1]._trial_id
    with study_lock(storage, study._study_id):
        with storage.engine.begin() as conn:  # an edit of the finished trial's attribute rows
            conn.execute(
                sqlalchemy.text(
                    "DELETE FROM trial_system_attributes WHERE trial_id = :i AND key = :k"
                ),
                {"i": retried, "k": RETRY_OF_ATTR},
            )
        mark_trials_edited(storage, study._study_id, [retried])
    assert _check(storage, study, "minimize").retries == 0
    # The marker moved on by more edits than it lists (as after 1,000 more): the totals start
    # over, and still agree.
    marker = {"seq": 5000, "recent": [[5000, retried]]}
    storage.set_study_system_attr(study._study_id, TRIALS_EDITED_ATTR, marker)
    study.tell(study.ask(), 0.5)
    assert _check(storage, study, "minimize").best_number == 2


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_the_best_trial_in_one_query_is_optunas(storage_url: str, direction: str) -> None:
    from hpsearch.db.queries import best_trial_id

    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage, study_name=direction, direction=direction)
    sid = study._study_id
    assert best_trial_id(storage, sid, study.direction) is None
    for value in (3.0, -1.0, 7.0, -1.0):  # a tie: the lower number wins, as in Optuna
        study.add_trial(optuna.trial.create_trial(value=value))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
    assert best_trial_id(storage, sid, study.direction) == study.best_trial._trial_id
    # Infinite values rank beyond every finite one, each at its own end.
    study.add_trial(optuna.trial.create_trial(value=math.inf))
    study.add_trial(optuna.trial.create_trial(value=-math.inf))
    assert best_trial_id(storage, sid, study.direction) == study.best_trial._trial_id
