"""Trials nothing beats for: the claim writes the first heartbeat with the trial, and a RUNNING
trial without a heartbeat row is failed and retried once it is older than the grace period
(issue 14). On every storage backend."""

from __future__ import annotations

import contextlib
import datetime as dt
import signal
import time

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from hpsearch import studies
from hpsearch.db.storage import open_storage
from hpsearch.worker import run_worker
from hpsearch.worker.claim import CLAIM_ATTR, claim_trial, find_claimed, new_trial
from hpsearch.worker.stale import UNBEATEN_REASON, fail_stale_trials, unbeaten_trial_ids

HOUR_AGO = dt.datetime.now() - dt.timedelta(hours=1)  # naive local, as Optuna writes it


def _study(url, trials=4):
    spec = {"name": "s", "space": "demo", "budget": {"trials": trials}, "seed": 0}
    studies.create_study(open_storage(url), {**spec, "pruner": {"name": "none"}})
    return optuna.load_study(study_name="s", storage=open_storage(url))


def _unbeaten_trial(storage, study, *, started=None):
    """A RUNNING trial with no heartbeat row, as a claim cut by a database restart left one."""
    trial_id = storage.create_new_trial(study._study_id)
    if started is not None:
        with storage.engine.begin() as conn:
            conn.execute(
                sqlalchemy.text("UPDATE trials SET datetime_start = :t WHERE trial_id = :id"),
                {"t": started, "id": trial_id},
            )
    return trial_id


@contextlib.contextmanager
def _time_limit(seconds):
    def give_up(_signum, _frame):
        raise TimeoutError(f"the worker did not finish the study within {seconds} s")

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _has_heartbeat(storage, trial_id):
    query = sqlalchemy.text("SELECT COUNT(*) FROM trial_heartbeats WHERE trial_id = :id")
    with storage.engine.connect() as conn:
        return conn.execute(query, {"id": trial_id}).scalar_one() == 1


def test_an_old_unbeaten_trial_is_failed_and_retried_and_a_fresh_one_left_alone(storage_url):
    storage = open_storage(storage_url)
    study = _study(storage_url)
    old = _unbeaten_trial(storage, study, started=HOUR_AGO)
    fresh = _unbeaten_trial(storage, study)  # just created: its claim may still be under way
    assert unbeaten_trial_ids(storage, study._study_id, older_than=30) == [old]

    assert fail_stale_trials(storage, study) == [old]

    failed = storage.get_trial(old)
    assert failed.state == TrialState.FAIL and failed.user_attrs["fail_reason"] == UNBEATEN_REASON
    assert storage.get_trial(fresh).state == TrialState.RUNNING
    (retry,) = study.get_trials(states=(TrialState.WAITING,))
    assert retry.system_attrs["failed_trial"] == failed.number  # queued again, as for a crash
    assert fail_stale_trials(storage, study) == []  # found once, retried once


def test_an_unbeaten_trial_from_a_clock_ahead_of_ours_is_failed_once_seen_for_the_grace(
    storage_url,
):
    # A claimer whose clock (or time zone) is ahead wrote a start time in our future.
    storage = open_storage(storage_url)
    study = _study(storage_url)
    ahead = _unbeaten_trial(storage, study, started=dt.datetime.now() + dt.timedelta(hours=5))
    assert unbeaten_trial_ids(storage, study._study_id, older_than=0.5) == []
    time.sleep(0.6)
    assert unbeaten_trial_ids(storage, study._study_id, older_than=0.5) == [ahead]


def test_a_claim_writes_the_trial_and_its_heartbeat_together(storage_url):
    storage = open_storage(storage_url)
    study = _study(storage_url)
    first = claim_trial(storage, study._study_id, "token-1")
    assert _has_heartbeat(storage, first)  # Optuna's stale check sees it from the start
    assert find_claimed(storage, study._study_id, "token-1") == first  # a retried claim finds it
    assert find_claimed(storage, study._study_id, "token-2") is None

    # A queued retry is taken before a new trial is created, and it carries the new claim.
    study.enqueue_trial({"optim.lr": 0.01})
    queued = claim_trial(storage, study._study_id, "token-2")
    assert _has_heartbeat(storage, queued)
    trial = new_trial(study, storage, queued)
    taken = storage.get_trial(queued)
    assert trial.number == 1 and taken.state == TrialState.RUNNING
    assert taken.system_attrs[CLAIM_ATTR] == "token-2"
    assert trial.suggest_float("optim.lr", 1e-5, 1e-1, log=True) == 0.01  # the queued config
    third = new_trial(study, storage, claim_trial(storage, study._study_id, "token-3"))
    assert third.suggest_int("model.width", 8, 8) == 8  # a trial this study object can write to
    assert [t.number for t in study.get_trials()] == [0, 1, 2]
    assert storage.get_trial(third._trial_id).datetime_start is not None
    study.tell(trial, 0.5)
    assert find_claimed(storage, study._study_id, "token-2") is None  # only RUNNING trials


@pytest.mark.parametrize("serve", ["the study", "every study"])
def test_a_fresh_worker_frees_the_budget_an_unbeaten_trial_held(storage_url, serve):
    storage = open_storage(storage_url)
    study = _study(storage_url, trials=1)
    orphan = _unbeaten_trial(storage, study, started=HOUR_AGO)  # holds the only slot
    with _time_limit(60):  # before issue 14 the worker waited for the orphan for ever
        ran = run_worker(
            storage_url,
            study="s" if serve == "the study" else None,
            objective="objectives:quadratic",
        )
    assert ran == 1
    failed, retry = study.get_trials()
    assert failed._trial_id == orphan and failed.state == TrialState.FAIL
    assert retry.state == TrialState.COMPLETE and retry.system_attrs["failed_trial"] == 0
    assert studies.study_status(storage, "s").done  # exactly its budget of 1 trial


def test_a_claim_whose_reply_was_lost_runs_the_trial_it_committed(storage_url, monkeypatch):
    # The claim commits, then the connection drops before the worker hears back (a restart at
    # the worst moment): the retried claim must take that trial, not a second one.
    from hpsearch.worker import loop

    cuts = []

    def commit_then_lose_the_reply(*args, **kwargs):
        trial_id = claim_trial(*args, **kwargs)
        if not cuts:
            cuts.append(trial_id)
            lost = ConnectionResetError("server closed the connection unexpectedly")
            raise sqlalchemy.exc.OperationalError("COMMIT", {}, lost)
        return trial_id

    monkeypatch.setattr(loop, "claim_trial", commit_then_lose_the_reply)
    storage = open_storage(storage_url)
    study = _study(storage_url, trials=2)
    with _time_limit(60):
        ran = run_worker(storage_url, study="s", objective="objectives:quadratic")
    trials = study.get_trials()
    assert ran == 2 and [t.number for t in trials] == [0, 1]  # no trial claimed twice over
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert trials[0]._trial_id == cuts[0]
    assert not unbeaten_trial_ids(storage, study._study_id, older_than=0)
