"""Sampling a claimed trial's config with one write instead of one per parameter.

``Trial.suggest_*`` asks the sampler for a value and writes it to the storage at once, each in
a transaction of its own with a read of the trial: twelve commits for the demo space, most of a
no-op trial's cost on PostgreSQL (issue 19). A worker's trial is its own until it ends, and no
sampler reads the unfinished trial it samples back from the storage (the values it chose are in
the :class:`optuna.Trial`'s own copy), so while the worker samples the config
(:func:`sample_config`) the parameters are held, and written afterwards with the trial's
attributes in one transaction (:func:`hpsearch.db.storage.write_running_trial`), before the
objective runs.

Nothing is lost that was not lost before: a worker that dies while sampling leaves a RUNNING
trial whose heartbeat goes stale, which is failed and retried as any dead worker's trial.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from optuna.distributions import BaseDistribution

from hpsearch.db.storage import TrialParam, write_running_trial
from hpsearch.spaces import suggest_config
from hpsearch.spaces.schema import SearchSpace

__all__ = ["TrialStorage", "sample_config"]


class TrialStorage:
    """A claimed trial's storage: the study's, except that the trial's own parameters are
    written by :func:`~hpsearch.db.storage.write_running_trial` on ``rdb`` (one transaction
    each, as Optuna writes them), or held while :func:`sample_config` samples.

    Optuna's cached storage can only write a parameter of a trial it has read (``Study.ask``
    reads all of the study's new and running trials for that); this needs no read first.
    ``known`` caches the study's distributions checked so far, by name.
    """

    def __init__(
        self,
        storage: optuna.storages.BaseStorage,
        rdb: optuna.storages.RDBStorage,
        trial_id: int,
        known: dict[str, BaseDistribution],
    ) -> None:
        self.storage = storage
        self.rdb = rdb
        self.trial_id = trial_id
        self.known = known
        self.holding = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.storage, name)

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        if trial_id != self.trial_id:
            self.storage.set_trial_param(trial_id, param_name, param_value_internal, distribution)
        elif not self.holding:  # the Trial keeps a held value in its copy: sample_config's
            param = (param_name, param_value_internal, distribution)
            write_running_trial(self.rdb, trial_id, params=[param], known=self.known)


def sample_config(
    trial: optuna.Trial, space: SearchSpace, fixed: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], list[TrialParam]]:
    """``trial``'s config (:func:`hpsearch.spaces.suggest_config`) and all its parameters, to
    write with :func:`hpsearch.db.storage.write_running_trial` (which replaces those stored).

    ``trial`` is one :func:`hpsearch.worker.claim.new_trial` gave (its storage a
    :class:`TrialStorage`). The parameters are the trial's own copy, so sampling again after a
    failure (the database went away mid-way) gives the values already chosen back, and all of
    them are written.
    """
    storage = trial.storage
    assert isinstance(storage, TrialStorage), "a trial of hpsearch.worker.claim.new_trial"
    storage.holding = True
    try:
        config = suggest_config(trial, space, fixed)
    finally:
        storage.holding = False
    values = trial.params
    return config, [
        (name, dist.to_internal_repr(values[name]), dist)
        for name, dist in trial.distributions.items()
    ]
