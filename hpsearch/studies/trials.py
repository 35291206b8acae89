"""The trials of a study as users see them, and the one thing users ask of a running trial.

:class:`TrialRecord` is a trial's user-facing view (its resolved config, value, learning curve
and why it ended), what the service, the CLI and the CSV export show. A user may ask a running
trial to prune (:func:`request_prune`); its worker checks after each report
(:func:`prune_requested`).
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, Field

from hpsearch.db.queries import page_trial_ids
from hpsearch.db.reads import load_trials
from hpsearch.db.stats import trial_stats
from hpsearch.db.timestamps import UtcDatetime
from hpsearch.errors import SpecError, TrialNotFound, TrialNotRunning
from hpsearch.studies._lookup import FoundStudy, find_study
from hpsearch.studies.objectives import INFEASIBLE_ATTR, METRICS_ATTR
from hpsearch.studies.attrs import (
    CONFIG_ATTR,
    FAIL_REASON_ATTR,
    FAIL_TRACEBACK_ATTR,
    PRUNE_REASON_ATTR,
    PRUNE_REQUEST_ATTR,
    SEED_ATTR,
    WORKER_ATTR,
)

__all__ = [
    "TrialRecord",
    "best_trial",
    "best_trial_id",
    "get_trial",
    "list_trials",
    "prune_requested",
    "request_prune",
    "trial_record",
    "trial_states",
]


class TrialRecord(BaseModel):
    """One trial as users see it: its resolved config, value and learning curve."""

    number: int
    state: str
    value: float | None
    config: dict[str, Any]
    params: dict[str, Any]
    intermediate_values: dict[int, float]
    datetime_start: UtcDatetime | None
    datetime_complete: UtcDatetime | None
    duration_seconds: float | None
    fail_reason: str | None
    fail_traceback: str | None = None  # your objective's traceback, when it raised
    prune_reason: str | None
    worker: str | None
    seed: int | None
    values: list[float | None] | None = Field(
        default=None,
        description="One value per objective (a study of several; null where not finite), "
        "else null.",
    )
    metrics: dict[str, float] | None = Field(
        default=None,
        description="Every metric the trial reported at its end (costs included), when kept.",
    )
    infeasible: str | None = Field(
        default=None, description="The constraint the trial broke (it ended pruned), else null."
    )


def trial_record(trial: FrozenTrial) -> TrialRecord:
    """The user-facing view of an Optuna trial."""
    duration = trial.duration.total_seconds() if trial.duration is not None else None
    value = trial.value if trial.values is not None and len(trial.values) == 1 else None
    if value is not None and not math.isfinite(value):
        value = None
    several = None
    if trial.values is not None and len(trial.values) > 1:
        several = [float(v) if math.isfinite(v) else None for v in trial.values]
    return TrialRecord(
        number=trial.number,
        state=trial.state.name.lower(),
        value=value,
        config=trial.user_attrs.get(CONFIG_ATTR, dict(trial.params)),
        params=dict(trial.params),
        intermediate_values={
            k: v for k, v in trial.intermediate_values.items() if math.isfinite(v)
        },
        datetime_start=trial.datetime_start,
        datetime_complete=trial.datetime_complete,
        duration_seconds=duration,
        fail_reason=trial.user_attrs.get(FAIL_REASON_ATTR),
        fail_traceback=trial.user_attrs.get(FAIL_TRACEBACK_ATTR),
        prune_reason=trial.user_attrs.get(PRUNE_REASON_ATTR),
        seed=trial.user_attrs.get(SEED_ATTR),
        worker=trial.user_attrs.get(WORKER_ATTR),
        values=several,
        metrics=trial.user_attrs.get(METRICS_ATTR),
        infeasible=trial.user_attrs.get(INFEASIBLE_ATTR),
    )


def list_trials(
    storage: optuna.storages.RDBStorage,
    name: str,
    *,
    offset: int = 0,
    limit: int = 50,
    state: str | None = None,
) -> tuple[list[TrialRecord], int]:
    """A page of a study's trials by number, optionally of one state, and the total count.

    A bounded number of queries whatever the page size: the page's ids and the count, then one
    query per trial table (see :func:`load_trials`).
    """
    study_id = find_study(storage, name).study_id
    states = trial_states(state)
    trial_ids, total = page_trial_ids(storage, study_id, offset=offset, limit=limit, states=states)
    return [trial_record(t) for t in load_trials(storage, trial_ids)], total


def trial_states(state: str | None) -> tuple[TrialState, ...] | None:
    """The trial states a ``state`` filter names (``None``: every state); raises SpecError."""
    if state is None:
        return None
    try:
        return (TrialState[state.upper()],)
    except KeyError as e:
        raise SpecError(
            f"unknown trial state {state!r}; use one of "
            f"{', '.join(s.name.lower() for s in TrialState)}"
        ) from e


def best_trial_id(storage: optuna.storages.RDBStorage, name: str) -> tuple[int, int]:
    """The id and number of the best complete trial of study ``name`` (any Optuna study).

    The best is Optuna's (an infinite value in the good direction beats every finite one),
    ties to the lowest number, from the study's trial statistics. Raises
    :class:`StudyNotFound`, and :class:`TrialNotFound` when no trial is complete yet.
    """
    return _best_trial_id(storage, find_study(storage, name, hpsearch_only=False))


def _best_trial_id(storage: optuna.storages.RDBStorage, found: FoundStudy) -> tuple[int, int]:
    stats = trial_stats(storage, found.study_id, epochs=0)  # the best needs no epochs
    if stats.best_number is None:
        raise TrialNotFound(f"study {found.name!r} has no complete trial yet")
    return found.trial_id(stats.best_number), stats.best_number


def best_trial(storage: optuna.storages.RDBStorage, name: str) -> TrialRecord:
    """The best complete trial of the hpsearch study ``name`` (:func:`best_trial_id`), with
    its full resolved config."""
    trial_id, _ = _best_trial_id(storage, find_study(storage, name))
    return trial_record(storage.get_trial(trial_id))


def get_trial(storage: optuna.storages.BaseStorage, name: str, number: int) -> TrialRecord:
    """One trial of the study by number."""
    return trial_record(storage.get_trial(find_study(storage, name).trial_id(number)))


def request_prune(storage: optuna.storages.BaseStorage, name: str, number: int) -> TrialRecord:
    """Ask the worker running trial ``number`` to prune it at its next report.

    The worker checks after each epoch's report: a request that arrives during the last epoch
    comes too late, and the trial completes.
    """
    trial_id = find_study(storage, name).trial_id(number)
    trial = storage.get_trial(trial_id)
    if trial.state != TrialState.RUNNING:
        raise TrialNotRunning(
            f"trial {number} of study {name!r} is {trial.state.name.lower()}, not running: "
            "only a running trial can be pruned"
        )
    try:
        storage.set_trial_user_attr(trial_id, PRUNE_REQUEST_ATTR, True)
    except RuntimeError as e:  # it finished between the read and the write
        raise TrialNotRunning(f"trial {number} of study {name!r} finished meanwhile") from e
    return trial_record(storage.get_trial(trial_id))


def prune_requested(storage: optuna.storages.BaseStorage, trial_id: int) -> bool:
    """Whether someone asked to prune this trial (the worker checks after each report)."""
    return bool(storage.get_trial_user_attrs(trial_id).get(PRUNE_REQUEST_ATTR))
