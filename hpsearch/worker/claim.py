"""Claiming a trial: the trial, its first heartbeat and the claim's token in one transaction.

``Study.ask()`` commits the new RUNNING trial, and the worker recorded its first heartbeat in a
second transaction. A database restart between the two left a RUNNING trial without a
heartbeat row, which Optuna's stale-trial check never looks at: it stayed RUNNING for ever and
held a slot of the budget (issue 14). Here both rows are written by one commit.

A commit can also succeed while the client only sees the connection drop. The claim therefore
stores a token of the caller's on the trial; the caller retries with the same token, and
:func:`find_claimed` gives back the trial the lost reply was about instead of claiming another.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution
from optuna.storages._rdb import models
from optuna.trial import TrialState

from hpsearch.worker.sampling import TrialStorage

__all__ = ["CLAIM_ATTR", "claim_trial", "find_claimed", "new_trial"]

#: Trial system attribute: the token of the claim that last took the trial.
CLAIM_ATTR = "hpsearch:claim"

_trials = models.TrialModel.__table__
_heartbeats = models.TrialHeartbeatModel.__table__
_system_attrs = models.TrialSystemAttributeModel.__table__
_studies = models.StudyModel.__table__


def find_claimed(storage: optuna.storages.RDBStorage, study_id: int, token: str) -> int | None:
    """The id of the study's RUNNING trial claimed with ``token``, or ``None``.

    One indexed query: the study's RUNNING trials, then their attribute of that key.
    """
    query = (
        sqlalchemy.select(_trials.c.trial_id)
        .join(_system_attrs, _system_attrs.c.trial_id == _trials.c.trial_id)
        .where(
            _trials.c.study_id == study_id,
            _trials.c.state == TrialState.RUNNING,
            _system_attrs.c.key == CLAIM_ATTR,
            _system_attrs.c.value_json == json.dumps(token),
        )
    )
    with storage.engine.connect() as conn:
        return conn.execute(query).scalar()


def claim_trial(
    storage: optuna.storages.RDBStorage,
    study_id: int,
    token: str,
    *,
    also: Callable[[sqlalchemy.Connection, int], None] | None = None,
) -> int:
    """Take a trial of the study for running, as ``Study.ask()`` would, and return its id.

    The study's oldest WAITING trial (a retry, an enqueued config) is taken first, else a new
    trial is created. In the same transaction the trial gets its first heartbeat and the claim's
    ``token`` (a new one for every claim; see :func:`find_claimed`), and ``also`` runs with the
    transaction's connection and the trial's number (the worker's fleet row,
    :func:`hpsearch.db.fleet.beat`). The budget is the caller's business: hold
    :func:`hpsearch.db.storage.study_lock` around the check and this call.
    """
    # As Optuna's own trial creation writes it: the local clock, naive (``datetime.now()``).
    now = dt.datetime.now()
    with storage.engine.begin() as conn:
        _lock_study(conn, study_id)
        taken = _take_waiting(conn, study_id, now)
        if taken is not None:
            trial_id, number = taken
        else:
            # Numbered as Optuna numbers them: the count of the study's trials, under the lock
            # on the study's row that Optuna's own trial creation takes too.
            number = conn.execute(
                sqlalchemy.select(sqlalchemy.func.count())
                .select_from(_trials)
                .where(_trials.c.study_id == study_id)
            ).scalar_one()
            inserted = conn.execute(
                _trials.insert().values(
                    study_id=study_id, number=number, state=TrialState.RUNNING, datetime_start=now
                )
            )
            key = inserted.inserted_primary_key
            assert key is not None  # a one-row INSERT always reports the key it made
            trial_id = int(key[0])
        if taken is not None:  # a trial taken again (a retry) may have both already
            conn.execute(_heartbeats.delete().where(_heartbeats.c.trial_id == trial_id))
            conn.execute(
                _system_attrs.delete().where(
                    _system_attrs.c.trial_id == trial_id, _system_attrs.c.key == CLAIM_ATTR
                )
            )
        # The column's own default, as Optuna's record_heartbeat writes it: the server's clock.
        conn.execute(
            _heartbeats.insert().values(
                trial_id=trial_id, heartbeat=sqlalchemy.func.current_timestamp()
            )
        )
        conn.execute(
            _system_attrs.insert().values(
                trial_id=trial_id, key=CLAIM_ATTR, value_json=json.dumps(token)
            )
        )
        if also is not None:
            also(conn, number)
    return trial_id


def new_trial(
    study: optuna.Study,
    storage: optuna.storages.RDBStorage,
    trial_id: int,
    known: dict[str, BaseDistribution] | None = None,
) -> optuna.Trial:
    """The :class:`optuna.Trial` of a claimed trial, set up as ``Study.ask()`` sets it up.

    ``storage`` is the study's database; the trial writes its parameters there itself
    (:class:`hpsearch.worker.sampling.TrialStorage`, with ``known``, the study's distributions
    checked so far), so the read of the study's new trials that ``Study.ask`` makes first, for
    Optuna's cached storage to know the trial, is not needed.
    """
    # Study.ask drops the per-trial cache of the study's trials that samplers read.
    study._thread_local.cached_all_trials = None
    trial = optuna.Trial(study, trial_id)
    held = TrialStorage(trial.storage, storage, trial_id, {} if known is None else known)
    trial.storage = held  # type: ignore[assignment]  # Trial only calls the storage's methods
    return trial


def _lock_study(conn: sqlalchemy.Connection, study_id: int) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(
            sqlalchemy.select(_studies.c.study_id)
            .where(_studies.c.study_id == study_id)
            .with_for_update()
        )
    else:
        # SQLite: write first, so the transaction holds the database's write lock before it
        # reads (a read first could find its snapshot outdated when it comes to write).
        conn.execute(
            _studies.update()
            .where(_studies.c.study_id == study_id)
            .values(study_id=_studies.c.study_id)
        )


def _take_waiting(
    conn: sqlalchemy.Connection, study_id: int, now: dt.datetime
) -> tuple[int, int] | None:
    """Set the study's oldest WAITING trial RUNNING, started now; its id and number, or None."""
    waiting = (
        sqlalchemy.select(_trials.c.trial_id, _trials.c.number)
        .where(_trials.c.study_id == study_id, _trials.c.state == TrialState.WAITING)
        .order_by(_trials.c.number)
    )
    for trial_id, number in conn.execute(waiting).all():
        # Another process (plain Optuna's ask) may pop the same trial: only one update wins.
        taken = conn.execute(
            _trials.update()
            .where(_trials.c.trial_id == trial_id, _trials.c.state == TrialState.WAITING)
            .values(state=TrialState.RUNNING, datetime_start=now)
        )
        if taken.rowcount == 1:
            return int(trial_id), int(number)
    return None
