"""Configs a study runs first: checked against its space, then enqueued as waiting trials.

A config given by a user (``POST /studies/{name}/enqueue``) or taken from the best trials of
another study (a spec's ``warm_start``) becomes an Optuna trial in the WAITING state; a
worker's ``ask()`` takes waiting trials before sampling new ones, and they count against the
budget when they run. Every config is checked before any is enqueued, so a refused request
changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState
from pydantic import BaseModel, ConfigDict, Field

from hpsearch.db.storage import study_lock
from hpsearch.errors import SpaceError, SpecError
from hpsearch.spaces import SearchSpace

__all__ = [
    "WarmStart",
    "WarmStartReport",
    "check_config",
    "check_configs",
    "enqueue_params",
    "warm_start_params",
]


class WarmStart(BaseModel):
    """Start a study from the ``top`` best complete trials of another ``study``."""

    model_config = ConfigDict(extra="forbid")

    study: str
    top: int = Field(default=5, ge=1, le=1000)


class WarmStartReport(BaseModel):
    """What a warm start enqueued, and which of the source's configs it skipped and why."""

    source: str
    enqueued: int
    skipped: list[str] = Field(default_factory=list)


def check_config(
    space: SearchSpace, fixed: Mapping[str, Any], config: Mapping[str, Any]
) -> dict[str, Any]:
    """The Optuna params of one config for a study over ``space`` with ``fixed`` values.

    Values are normalized as in :meth:`Param.check_value`. A parameter the study fixes is not a
    param: giving it with its fixed value is allowed and dropped, another value is refused.
    Raises :class:`SpaceError` naming the parameter: not in the space, a value it cannot take,
    or a parameter whose ``when`` condition the config (with the fixed values) does not meet.
    """
    if not config:
        raise SpaceError("the config is empty; give at least one parameter's value")
    params: dict[str, Any] = {}
    for name, value in config.items():
        param = space.params.get(name)
        if param is None:
            raise SpaceError(space._unknown(name))
        try:
            value = param.check_value(value)
        except SpaceError as e:
            raise SpaceError(f"parameter {name!r}: {e}") from None
        if name in fixed:
            if value != fixed[name]:
                raise SpaceError(
                    f"parameter {name!r} is fixed to {fixed[name]!r} in this study, got "
                    f"{value!r}; leave it out"
                )
            continue
        params[name] = value
    merged = {**fixed, **params}
    for name in params:
        if not space.is_active(name, merged):
            when = ", ".join(f"{k} in {v}" for k, v in (space.params[name].when or {}).items())
            raise SpaceError(
                f"parameter {name!r} exists only when {when}, which this config does not meet; "
                f"give those values too, or leave {name!r} out"
            )
    return params


def check_configs(
    space: SearchSpace, fixed: Mapping[str, Any], configs: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """:func:`check_config` on each; raises :class:`SpecError` naming the config's index."""
    checked = []
    for index, config in enumerate(configs):
        try:
            checked.append(check_config(space, fixed, config))
        except SpaceError as e:
            raise SpecError(f"configs[{index}]: {e}") from None
    return checked


def _key(params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


def enqueue_params(
    storage: optuna.storages.RDBStorage,
    study: optuna.Study,
    study_id: int,
    params_list: Sequence[Mapping[str, Any]],
) -> int:
    """Enqueue each params dict as a waiting trial unless a trial with those params exists.

    Returns how many were enqueued. Serialized with other enqueues of the study by the study
    lock, so the count is exact.
    """
    with study_lock(storage, study_id):
        existing = {
            _key(t.system_attrs.get("fixed_params", t.params))
            for t in storage.get_all_trials(study_id, deepcopy=False)
        }
        enqueued = 0
        for params in params_list:
            key = _key(params)
            if key in existing:
                continue
            study.enqueue_trial(dict(params), skip_if_exists=True)
            existing.add(key)
            enqueued += 1
    return enqueued


def warm_start_params(
    storage: optuna.storages.RDBStorage,
    warm_start: WarmStart,
    space: SearchSpace,
    fixed: Mapping[str, Any],
) -> tuple[list[dict[str, Any]], list[str]]:
    """The params of the source study's best complete trials that fit ``space``, and notes.

    Each source trial's params are restricted to parameters ``space`` has and the new study
    does not fix, then checked with :func:`check_config`; a config that fails is skipped with a
    note naming the trial and the reason. Raises :class:`SpecError` when the source study does
    not exist.
    """
    try:
        source_id = storage.get_study_id_from_name(warm_start.study)
    except KeyError as e:
        raise SpecError(
            f"warm_start.study: no study named {warm_start.study!r} to start from"
        ) from e
    (direction,) = storage.get_study_directions(source_id)[:1]
    complete = storage.get_all_trials(source_id, deepcopy=False, states=(TrialState.COMPLETE,))
    reverse = direction == optuna.study.StudyDirection.MAXIMIZE
    scored = [(t.value, t) for t in complete if t.value is not None]  # a complete trial has one
    scored.sort(key=lambda vt: vt[0] if reverse else -vt[0], reverse=True)
    ranked = [t for _, t in scored]
    params_list: list[dict[str, Any]] = []
    notes: list[str] = []
    for trial in ranked[: warm_start.top]:
        config = {k: v for k, v in trial.params.items() if k in space.params and k not in fixed}
        if not config:
            notes.append(f"trial {trial.number}: none of its parameters is searched here")
            continue
        try:
            params_list.append(check_config(space, fixed, config))
        except SpaceError as e:
            notes.append(f"trial {trial.number}: {e}")
    return params_list, notes
