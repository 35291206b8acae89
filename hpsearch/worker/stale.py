"""Finding a study's trials whose worker is gone, failing them and queueing their retries.

Optuna's ``fail_stale_trials`` fails the RUNNING trials whose heartbeat is older than the grace
period; it skips RUNNING trials that have no heartbeat row at all. Such a trial is what a claim
cut by a database restart left behind before claims wrote the first heartbeat in the same
transaction (``hpsearch.worker.claim``), or what an older hpsearch or a plain ``Study.ask()``
leaves: nothing beats for it, so it would stay RUNNING for ever and hold a slot of the budget.
:func:`fail_stale_trials` fails those too once they started more than a grace period ago,
exactly as Optuna fails a stale trial, so the storage's retry callback queues them again.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import time
import warnings

import optuna
import sqlalchemy
from optuna.storages._rdb import models
from optuna.trial import TrialState

from hpsearch.db.storage import grace_seconds, through_pgbouncer
from hpsearch.studies import FAIL_REASON_ATTR

__all__ = ["UNBEATEN_REASON", "fail_stale_trials", "unbeaten_trial_ids"]

log = logging.getLogger("hpsearch.worker")

#: The ``fail_reason`` of a trial failed for never having had a heartbeat.
UNBEATEN_REASON = (
    "its worker never recorded a heartbeat for it (the study database went away while the "
    "trial was being claimed); it is run again"
)

_trials = models.TrialModel.__table__
_heartbeats = models.TrialHeartbeatModel.__table__


#: (database URL, study id) -> {trial id: when this process first saw it RUNNING unbeaten}.
_FIRST_SEEN: dict[tuple[str, int], dict[int, float]] = {}


def unbeaten_trial_ids(
    storage: optuna.storages.RDBStorage, study_id: int, *, older_than: float
) -> list[int]:
    """Ids of the study's RUNNING trials that have had no heartbeat row for ``older_than``
    seconds.

    A trial qualifies when its start time (the claiming process's local clock, as Optuna writes
    it) is more than ``older_than`` seconds behind this process's clock, or when this process
    has seen it unbeaten for that long (its own monotonic clock): the second holds whatever the
    two machines' clocks and time zones say, the first finds an old orphan without waiting.
    One query over the (study_id, state) index and the heartbeat table's unique trial_id: its
    cost follows the study's RUNNING trials, not its size.
    """
    query = (
        sqlalchemy.select(_trials.c.trial_id, _trials.c.datetime_start)
        .select_from(_trials.outerjoin(_heartbeats, _heartbeats.c.trial_id == _trials.c.trial_id))
        .where(
            _trials.c.study_id == study_id,
            _trials.c.state == TrialState.RUNNING,
            _heartbeats.c.trial_id.is_(None),
        )
        .order_by(_trials.c.trial_id)
    )
    with storage.engine.connect() as conn:
        rows = conn.execute(query).all()
    cutoff = dt.datetime.now() - dt.timedelta(seconds=older_than)
    now = time.monotonic()
    seen_before = _FIRST_SEEN.get((str(storage.url), study_id), {})
    seen = {int(trial_id): seen_before.get(int(trial_id), now) for trial_id, _ in rows}
    _FIRST_SEEN[(str(storage.url), study_id)] = seen  # only the ones still unbeaten
    return [
        int(trial_id)
        for trial_id, started in rows
        if (started is not None and started < cutoff) or now - seen[int(trial_id)] >= older_than
    ]


def _server_started_within(storage: optuna.storages.RDBStorage, seconds: float) -> bool:
    """Through a pooler: whether the PostgreSQL server started less than ``seconds`` ago."""
    if not through_pgbouncer(storage):
        return False
    query = sqlalchemy.text("SELECT extract(epoch FROM now() - pg_postmaster_start_time())")
    with storage.engine.connect() as conn:
        return float(conn.execute(query).scalar_one()) < seconds


def fail_stale_trials(storage: optuna.storages.RDBStorage, study: optuna.Study) -> list[int]:
    """Fail the study's trials whose worker is gone, and queue their retries.

    First Optuna's own check (a heartbeat older than the grace period), then the RUNNING trials
    that never had a heartbeat and started more than a grace period ago, failed the way Optuna
    fails a stale trial: state FAIL (only if still RUNNING), then the storage's heartbeat-stale
    callback (hpsearch's queues a retry). Returns the ids of the unbeaten trials failed here.

    Through PgBouncer (:func:`~hpsearch.db.storage.through_pgbouncer`) nothing is failed
    within a grace period of the PostgreSQL server's start: right after a restart every trial's
    heartbeat looks old. The worker skips this check after an outage it saw itself, but through
    a pooler it may have seen none: its queries waited in the pooler's queue until the server
    was back.
    """
    grace = grace_seconds(storage)
    if _server_started_within(storage, grace):
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    failed: list[int] = []
    for trial_id in unbeaten_trial_ids(storage, study._study_id, older_than=grace):
        try:
            storage.set_trial_user_attr(trial_id, FAIL_REASON_ATTR, UNBEATEN_REASON)
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                failed.append(trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker failed it first, and queued its retry
    retry = storage.get_heartbeat_stale_trial_callback()
    for trial_id in failed:
        trial = copy.deepcopy(storage.get_trial(trial_id))
        log.warning(
            "study %s: trial %d was RUNNING without a heartbeat since %s; failed it%s",
            study.study_name,
            trial.number,
            trial.datetime_start,
            " and queued it again" if retry is not None else "",
        )
        if retry is not None:
            retry(study, trial)
    return failed
