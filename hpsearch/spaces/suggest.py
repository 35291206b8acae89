"""Turning a search space into one trial's config: conditions, fixed values, defaults."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

from hpsearch.spaces.schema import Param, SearchSpace

__all__ = ["suggest_config", "default_config"]


def suggest_config(
    trial: optuna.trial.BaseTrial,
    space: SearchSpace,
    fixed: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Ask ``trial`` for a value of every active parameter and return the config ``{name: value}``.

    Parameters are visited in :meth:`SearchSpace.ordered_names` order, so a condition is decided
    on values already chosen. An inactive parameter is neither suggested nor in the result. A
    parameter in ``fixed`` takes that value without a suggest call, so it is not among the
    trial's params. ``fixed`` is checked with :meth:`SearchSpace.check_fixed` (raises
    :class:`~hpsearch.errors.SpaceError`). Works with any trial, ``optuna.trial.FixedTrial``
    included, which replays a config.
    """
    pinned = space.check_fixed(fixed or {})
    config: dict[str, Any] = {}
    for name in space.ordered_names():
        if not space.is_active(name, config):
            continue
        if name in pinned:
            config[name] = pinned[name]
        else:
            config[name] = _suggest(trial, name, space.params[name])
    return config


def default_config(space: SearchSpace, fixed: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The config of every active parameter's default, or its ``fixed`` value.

    Conditions and ``fixed`` are handled as in :func:`suggest_config`; this is the config the
    impact samplers' first trial runs.
    """
    pinned = space.check_fixed(fixed or {})
    config: dict[str, Any] = {}
    for name in space.ordered_names():
        if space.is_active(name, config):
            config[name] = pinned.get(name, space.params[name].default)
    return config


def _suggest(trial: optuna.trial.BaseTrial, name: str, param: Param) -> Any:
    if param.type == "categorical":
        assert param.choices is not None
        return trial.suggest_categorical(name, param.choices)
    assert param.low is not None and param.high is not None
    if param.type == "int":
        step = 1 if param.step is None else int(param.step)
        return trial.suggest_int(name, int(param.low), int(param.high), step=step, log=param.log)
    return trial.suggest_float(
        name, float(param.low), float(param.high), step=param.step, log=param.log
    )
