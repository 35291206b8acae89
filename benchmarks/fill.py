"""Fill a study with finished trials fast, for the benchmarks: bulk INSERT into Optuna's tables.

    from fill import build_study, add_trials
    build_study(url, "bench-100000", 100_000)   # a new study of the demo space
    add_trials(url, "bench-100000", 100, seed=1) # 100 more finished trials, next numbers

Training (or even ``study.tell``) would take hours at 100,000 trials; these functions write the
rows Optuna itself would write, with SQLAlchemy Core, in a few seconds per 10,000 trials: 80%
complete, 15% pruned, 5% failed; every active parameter of the demo space; 10 intermediate
values per complete trial (fewer for pruned and failed ones); a ``config`` and a ``seed`` user
attribute. Optuna then reads the first rows back to check they are what it would have written.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)
from optuna.storages._rdb import models
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hpsearch import studies
from hpsearch.spaces import Param, SearchSpace
from hpsearch.db.storage import open_storage

__all__ = ["EPOCHS", "STATE_MIX", "add_trials", "build_study"]

STATE_MIX = ((TrialState.COMPLETE, 0.80), (TrialState.PRUNED, 0.15), (TrialState.FAIL, 0.05))
EPOCHS = 10
FINITE_INTERMEDIATE = models.TrialIntermediateValueModel.TrialIntermediateValueType.FINITE
_CHUNK = 50_000  # rows per INSERT statement


def _distribution(param: Param) -> BaseDistribution:
    if param.type == "categorical":
        return CategoricalDistribution(param.choices)
    if param.type == "int":
        step = 1 if param.step is None or param.log else int(param.step)
        return IntDistribution(int(param.low), int(param.high), log=param.log, step=step)
    return FloatDistribution(param.low, param.high, log=param.log, step=param.step)


def _sample(param: Param, rng: random.Random) -> Any:
    if param.type == "categorical":
        return rng.choice(param.choices)
    if param.log:
        x = math.exp(rng.uniform(math.log(param.low), math.log(param.high)))
        return round(x) if param.type == "int" else x
    if param.type == "int":
        return rng.randint(int(param.low), int(param.high))
    return rng.uniform(param.low, param.high)


def _value(config: dict[str, Any], rng: random.Random) -> float:
    return 0.97 - 0.05 * (math.log10(config["optim.lr"]) + 2.5) ** 2 - rng.uniform(0, 0.02)


def build_study(url: str, name: str, n_trials: int, *, seed: int = 0) -> float:
    """Create study ``name`` of the demo space with ``n_trials`` finished trials; returns seconds."""
    start = time.perf_counter()
    storage = open_storage(url)
    spec = studies.create_study(
        storage, {"name": name, "space": "demo", "budget": {"trials": n_trials}, "seed": seed}
    )
    study_id = storage.get_study_id_from_name(name)
    _insert(storage, study_id, spec.search_space, first_number=0, n_trials=n_trials, seed=seed)
    with storage.engine.connect() as conn:
        n_stored = conn.execute(
            sqlalchemy.select(sqlalchemy.func.count()).where(models.TrialModel.study_id == study_id)
        ).scalar_one()
    assert n_stored == n_trials, (name, n_stored, n_trials)
    return time.perf_counter() - start


def add_trials(url: str, name: str, n: int, *, seed: int) -> float:
    """Append ``n`` finished trials to hpsearch study ``name`` (next numbers and ids); seconds.

    ``seed`` picks the new trials' configs; use another one than the study was built with, or
    the new trials repeat the first ones' configs.
    """
    start = time.perf_counter()
    storage = open_storage(url)
    space = studies.load_spec(storage, name).search_space
    study_id = storage.get_study_id_from_name(name)
    with storage.engine.connect() as conn:
        last = conn.execute(
            sqlalchemy.select(sqlalchemy.func.max(models.TrialModel.number)).where(
                models.TrialModel.study_id == study_id
            )
        ).scalar_one_or_none()
    first_number = 0 if last is None else last + 1
    _insert(storage, study_id, space, first_number=first_number, n_trials=n, seed=seed)
    return time.perf_counter() - start


def _insert(
    storage: optuna.storages.RDBStorage,
    study_id: int,
    space: SearchSpace,
    *,
    first_number: int,
    n_trials: int,
    seed: int,
) -> None:
    """Insert trials ``first_number ..`` of ``study_id`` in one transaction, then check them."""
    dists = {n: _distribution(p) for n, p in space.params.items()}
    dist_json = {n: distribution_to_json(d) for n, d in dists.items()}
    rng = random.Random(seed * 1_000_003 + first_number)
    engine = storage.engine
    t0 = dt.datetime(2026, 1, 1)
    states = [s for s, _ in STATE_MIX]
    weights = [w for _, w in STATE_MIX]
    with engine.begin() as conn:
        if engine.url.get_backend_name() == "postgresql":
            # Ids come from max+1 below: keep another writer out until the sequence is moved.
            conn.exec_driver_sql("LOCK TABLE trials IN EXCLUSIVE MODE")
        first_id = (
            conn.execute(
                sqlalchemy.select(sqlalchemy.func.max(models.TrialModel.trial_id))
            ).scalar_one_or_none()
            or 0
        ) + 1
        trials, params, values, inters, attrs = [], [], [], [], []
        for offset in range(n_trials):
            trial_id = first_id + offset
            number = first_number + offset
            state = rng.choices(states, weights)[0]
            config: dict[str, Any] = {}
            for pname in space.ordered_names():
                if space.is_active(pname, config):
                    config[pname] = _sample(space.params[pname], rng)
            for pname, value in config.items():
                params.append(
                    {
                        "trial_id": trial_id,
                        "param_name": pname,
                        "param_value": dists[pname].to_internal_repr(value),
                        "distribution_json": dist_json[pname],
                    }
                )
            final = _value(config, rng)
            epochs = EPOCHS if state == TrialState.COMPLETE else rng.randint(1, EPOCHS - 1)
            if state == TrialState.FAIL:
                epochs = rng.randint(0, 3)
            for step in range(epochs):
                inters.append(
                    {
                        "trial_id": trial_id,
                        "step": step,
                        "intermediate_value": final - 0.3 * (EPOCHS - 1 - step) / EPOCHS,
                        "intermediate_value_type": FINITE_INTERMEDIATE,
                    }
                )
            if state == TrialState.COMPLETE:
                values.append(
                    {
                        "trial_id": trial_id,
                        "objective": 0,
                        "value": final,
                        "value_type": models.TrialValueModel.TrialValueType.FINITE,
                    }
                )
            attrs.append({"trial_id": trial_id, "key": "config", "value_json": json.dumps(config)})
            attrs.append({"trial_id": trial_id, "key": "seed", "value_json": str(seed + number)})
            begun = t0 + dt.timedelta(seconds=30 * number)
            trials.append(
                {
                    "trial_id": trial_id,
                    "number": number,
                    "study_id": study_id,
                    "state": state,
                    "datetime_start": begun,
                    "datetime_complete": begun + dt.timedelta(seconds=3 * max(epochs, 1)),
                }
            )
        for table, rows in (
            (models.TrialModel.__table__, trials),
            (models.TrialParamModel.__table__, params),
            (models.TrialValueModel.__table__, values),
            (models.TrialIntermediateValueModel.__table__, inters),
            (models.TrialUserAttributeModel.__table__, attrs),
        ):
            for i in range(0, len(rows), _CHUNK):
                conn.execute(sqlalchemy.insert(table), rows[i : i + _CHUNK])
        if engine.url.get_backend_name() == "postgresql":
            # The inserted ids must not collide with the ids Optuna hands out next.
            conn.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('trials', 'trial_id'), "
                "(SELECT MAX(trial_id) FROM trials))"
            )
    if engine.url.get_backend_name() == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    _check(storage, trials, values)


def _check(
    storage: optuna.storages.RDBStorage,
    trials: list[dict[str, Any]],
    values: list[dict[str, Any]],
) -> None:
    # Optuna must read back what was inserted: the first trials through its own storage API.
    value_of = {v["trial_id"]: v["value"] for v in values}
    for row in trials[:3]:
        frozen = storage.get_trial(row["trial_id"])
        assert frozen.number == row["number"] and frozen.state == row["state"], frozen
        assert frozen.params == frozen.user_attrs["config"], frozen
        if frozen.state == TrialState.COMPLETE:
            assert abs(frozen.value - value_of[row["trial_id"]]) < 1e-9, frozen
            assert len(frozen.intermediate_values) == EPOCHS, frozen
