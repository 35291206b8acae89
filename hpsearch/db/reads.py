"""Reading whole trials from Optuna's tables, fast: pages, exports and the trial cache.

Optuna's RDB storage builds each trial through its ORM models, about 0.6 ms a trial (a minute
for a 100,000-trial study). :func:`load_trials` reads the same rows with SQLAlchemy Core, one
query per trial table for a few thousand trials at a time, and builds the same
:class:`~optuna.trial.FrozenTrial` Optuna would (``RDBStorage._build_frozen_trial_from_trial_model``
is the reference; a test compares the two on every kind of value). Equal distributions are one
shared object, which also makes a cached trial about a third smaller.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from typing import Any

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution, json_to_distribution
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial

__all__ = ["load_trials"]

#: Trial ids per ``IN (...)`` list (SQLite caps the variables of one statement).
_CHUNK = 5000

_TRIALS = models.TrialModel.__table__
_VALUES = models.TrialValueModel.__table__
_PARAMS = models.TrialParamModel.__table__
_USER_ATTRS = models.TrialUserAttributeModel.__table__
_SYSTEM_ATTRS = models.TrialSystemAttributeModel.__table__
_STEPS = models.TrialIntermediateValueModel.__table__

_value = models.TrialValueModel.stored_repr_to_value
_step_value = models.TrialIntermediateValueModel.stored_repr_to_intermediate_value


@functools.lru_cache(maxsize=4096)
def _distribution(distribution_json: str) -> BaseDistribution:
    # One object per distinct distribution: they are never changed once made.
    return json_to_distribution(distribution_json)


def load_trials(storage: optuna.storages.RDBStorage, trial_ids: Iterable[int]) -> list[FrozenTrial]:
    """The trials with these ids, in the order given (ids with no trial are left out).

    Six queries per :data:`_CHUNK` ids, however many rows each trial has.
    """
    ids = list(trial_ids)
    by_id: dict[int, FrozenTrial] = {}
    with storage.engine.connect() as conn:
        for start in range(0, len(ids), _CHUNK):
            by_id.update(_read_chunk(conn, ids[start : start + _CHUNK]))
    return [by_id[i] for i in ids if i in by_id]


def _rows(conn: sqlalchemy.Connection, table: sqlalchemy.Table, ids: list[int], *columns: str):
    query = sqlalchemy.select(*(table.c[c] for c in columns)).where(table.c.trial_id.in_(ids))
    return conn.execute(query)


def _read_chunk(conn: sqlalchemy.Connection, ids: list[int]) -> dict[int, FrozenTrial]:
    # The trials' own rows first: a trial read as finished has all its rows committed (Optuna
    # writes the values and the state in one transaction), so the reads that follow see them;
    # read the other way round, a trial finishing in between would show as finished without
    # its values. Finished trials' rows never change afterwards.
    heads = list(
        _rows(
            conn, _TRIALS, ids, "trial_id", "number", "state", "datetime_start", "datetime_complete"
        )
    )
    ids = [row[0] for row in heads]
    if not ids:
        return {}
    values: dict[int, dict[int, float]] = {}
    for trial_id, objective, value, value_type in _rows(
        conn, _VALUES, ids, "trial_id", "objective", "value", "value_type"
    ):
        values.setdefault(trial_id, {})[objective] = _value(value, value_type)
    params: dict[int, list[tuple[int, str, float, str]]] = {}
    for row in _rows(
        conn, _PARAMS, ids, "trial_id", "param_id", "param_name", "param_value", "distribution_json"
    ):
        params.setdefault(row[0], []).append(row[1:])
    user_attrs: dict[int, dict[str, Any]] = {}
    for trial_id, key, value_json in _rows(conn, _USER_ATTRS, ids, "trial_id", "key", "value_json"):
        user_attrs.setdefault(trial_id, {})[key] = json.loads(value_json)
    system_attrs: dict[int, dict[str, Any]] = {}
    for trial_id, key, value_json in _rows(
        conn, _SYSTEM_ATTRS, ids, "trial_id", "key", "value_json"
    ):
        system_attrs.setdefault(trial_id, {})[key] = json.loads(value_json)
    steps: dict[int, dict[int, float]] = {}
    for trial_id, step, value, value_type in _rows(
        conn, _STEPS, ids, "trial_id", "step", "intermediate_value", "intermediate_value_type"
    ):
        steps.setdefault(trial_id, {})[step] = _step_value(value, value_type)

    trials: dict[int, FrozenTrial] = {}
    for trial_id, number, state, start, complete in heads:
        trial_params: dict[str, Any] = {}
        distributions: dict[str, BaseDistribution] = {}
        for _param_id, name, internal, distribution_json in sorted(params.get(trial_id, ())):
            distribution = _distribution(distribution_json)
            trial_params[name] = distribution.to_external_repr(internal)
            distributions[name] = distribution
        trial_values = values.get(trial_id)
        trials[trial_id] = FrozenTrial(
            number=number,
            state=state,
            value=None,
            values=[trial_values[k] for k in sorted(trial_values)] if trial_values else None,
            datetime_start=start,
            datetime_complete=complete,
            params=trial_params,
            distributions=distributions,
            user_attrs=user_attrs.get(trial_id, {}),
            system_attrs=system_attrs.get(trial_id, {}),
            intermediate_values=steps.get(trial_id, {}),
            trial_id=trial_id,
        )
    return trials
