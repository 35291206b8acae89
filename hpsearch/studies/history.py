"""What happened to a study beyond its trials: the error that failed it, and the changes to it.

Both live in the study database as study user attributes, so that the REST service, the CLI
and optuna-dashboard (which lists a study's user attributes) all show the same thing:

- ``hpsearch:failed``: set by the worker that met an error recurring on every trial (a missing
  dataset or column, an unreadable file, a bad space, an import error in the user's function):
  the study takes no trial until it is changed (:func:`hpsearch.studies.patch_study`) or
  resumed. ``null`` when it is not failed.
- ``hpsearch:history``: every change made to the study after it was created, oldest first, with
  its time, who made it and what changed (``{"budget.trials": [old, new]}``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import optuna
import sqlalchemy
from pydantic import BaseModel, Field, ValidationError

from hpsearch.db.storage import study_lock
from hpsearch.db.timestamps import UtcDatetime
from hpsearch.studies.attrs import FAILED_ATTR, HISTORY_ATTR

__all__ = [
    "FAILED_ATTR",
    "HISTORY_ATTR",
    "StudyChange",
    "StudyFailure",
    "append_change",
    "clear_failure",
    "fail_study",
    "history_lengths",
    "parse_failure",
    "parse_history",
    "study_failure",
]

#: A failure reason is one line of at most this many characters (the failed trial keeps the
#: whole error, and its traceback: ``hpsearch trials NAME N``).
MAX_REASON_CHARS = 300


class StudyFailure(BaseModel):
    """Why a worker failed the study: an error that would recur on every trial."""

    reason: str = Field(description="The error, in one line, as the failed trial recorded it.")
    trial: int | None = Field(default=None, description="The number of the trial that met it.")
    worker: str | None = Field(default=None, description="The worker that ran that trial.")
    at: UtcDatetime


class StudyChange(BaseModel):
    """One change made to a study after it was created."""

    at: UtcDatetime
    by: str | None = Field(default=None, description="The API token's name, when known.")
    changes: dict[str, list[Any]] = Field(
        default_factory=dict, description="Each changed field, as [old value, new value]."
    )
    cleared_failure: str | None = Field(
        default=None, description="The failure reason the change cleared, if the study had one."
    )


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MAX_REASON_CHARS else line[: MAX_REASON_CHARS - 1] + "…"


def parse_failure(value: Any) -> StudyFailure | None:
    """The failure stored in ``hpsearch:failed`` (already decoded), or None."""
    if not value:
        return None
    try:
        failure = StudyFailure.model_validate(value)
    except ValidationError:
        return StudyFailure(reason=_one_line(str(value)), at=dt.datetime.now(dt.UTC))
    # A failure stored before the cap was this short reads as short as a new one.
    return failure.model_copy(update={"reason": _one_line(failure.reason)})


def parse_history(value: Any) -> list[StudyChange]:
    """The changes stored in ``hpsearch:history`` (already decoded); unreadable entries skipped."""
    changes = []
    for entry in value if isinstance(value, list) else []:
        try:
            changes.append(StudyChange.model_validate(entry))
        except ValidationError:
            continue
    return changes


def _user_attr(storage: optuna.storages.RDBStorage, study_id: int, key: str) -> Any:
    # One small query, where get_study_user_attrs would read (and decode) the whole spec too.
    query = sqlalchemy.text(
        "SELECT value_json FROM study_user_attributes WHERE study_id = :study_id AND key = :key"
    )
    with storage.engine.connect() as conn:
        raw = conn.execute(query, {"study_id": study_id, "key": key}).scalar_one_or_none()
    return None if raw is None else json.loads(raw)


def study_failure(storage: optuna.storages.RDBStorage, study_id: int) -> StudyFailure | None:
    """The failure that stopped the study, or None while it is not failed (one query)."""
    return parse_failure(_user_attr(storage, study_id, FAILED_ATTR))


def fail_study(
    storage: optuna.storages.RDBStorage,
    study_id: int,
    *,
    reason: str,
    trial: int | None = None,
    worker: str | None = None,
    unless: Callable[[], bool] | None = None,
) -> StudyFailure | None:
    """Mark the study failed: workers take no new trial of it until it is changed or resumed.

    The first failure is kept: a second worker meeting the same error meanwhile changes
    nothing. ``unless`` is asked under the study's lock, where changes and resumes are made:
    when it says the error is out of date (the task was fixed while the trial ran), nothing
    is marked and None is returned. Returns the failure the study has now.
    """
    with study_lock(storage, study_id):
        if unless is not None and unless():
            return None
        current = study_failure(storage, study_id)
        if current is not None:
            return current
        failure = StudyFailure(
            reason=_one_line(reason), trial=trial, worker=worker, at=dt.datetime.now(dt.UTC)
        )
        storage.set_study_user_attr(study_id, FAILED_ATTR, failure.model_dump(mode="json"))
    return failure


def clear_failure(storage: optuna.storages.RDBStorage, study_id: int) -> None:
    """Take the failed mark off the study (call under the study lock, after the fix is stored)."""
    storage.set_study_user_attr(study_id, FAILED_ATTR, None)


def append_change(
    storage: optuna.storages.RDBStorage, study_id: int, change: StudyChange
) -> list[StudyChange]:
    """Add ``change`` to the study's history (call under the study lock); returns the history."""
    history = parse_history(_user_attr(storage, study_id, HISTORY_ATTR))
    history.append(change)
    storage.set_study_user_attr(
        study_id, HISTORY_ATTR, [c.model_dump(mode="json") for c in history]
    )
    return history


def history_lengths(storage: optuna.storages.RDBStorage) -> dict[int, int]:
    """How many changes each study has had (studies without any are absent); one query.

    Workers cache a study's spec until this count moves.
    """
    query = sqlalchemy.text(
        "SELECT study_id, value_json FROM study_user_attributes WHERE key = :key"
    )
    with storage.engine.connect() as conn:
        rows = conn.execute(query, {"key": HISTORY_ATTR}).all()
    lengths = {}
    for study_id, raw in rows:
        value = json.loads(raw)
        lengths[study_id] = len(value) if isinstance(value, list) else 0
    return lengths

