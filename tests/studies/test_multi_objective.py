"""Several objectives and constraints: the spec, the study, the worker's tell, infeasible trials."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from hpsearch import studies
from hpsearch.db.storage import open_storage
from hpsearch.errors import SpecError
from hpsearch.studies.objectives import INFEASIBLE_ATTR, METRICS_ATTR
from hpsearch.worker import run_worker

_SPACE = {
    "params": {
        "x": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.5, "impact": "high"},
        "y": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.5, "impact": "low"},
    }
}
_TWO = {"error": "minimize", "size": "minimize"}


def _create(storage_url, name="mo", **overrides):
    spec = {"name": name, "space": _SPACE, "budget": {"trials": 12}, "seed": 0, **overrides}
    return studies.create_study(open_storage(storage_url), spec)


def _trials(storage_url, name="mo"):
    return optuna.load_study(study_name=name, storage=storage_url).get_trials(deepcopy=False)


def test_a_spec_with_two_objectives_resolves_to_a_two_direction_study(storage_url):
    spec = _create(storage_url, objectives=_TWO)
    assert [(o.metric, o.direction) for o in spec.objectives] == [
        ("error", "minimize"),
        ("size", "minimize"),
    ]
    assert spec.metric == "error" and spec.direction == "minimize"  # the first, for old readers
    assert spec.pruner.name == "none"  # a one-metric pruner cannot judge a trade-off
    study = optuna.load_study(study_name="mo", storage=storage_url)
    assert study.directions == [
        optuna.study.StudyDirection.MINIMIZE,
        optuna.study.StudyDirection.MINIMIZE,
    ]
    assert study.metric_names == ["error", "size"]  # the dashboard's Pareto-front axes
    stored = studies.load_spec(open_storage(storage_url), "mo")
    assert stored.multi_objective and stored.objectives == spec.objectives


def test_one_objective_is_the_plain_metric_spec(storage_url):
    spec = _create(storage_url, objectives=[{"metric": "error", "direction": "minimize"}])
    assert spec.objectives == [] and (spec.metric, spec.direction) == ("error", "minimize")
    assert not spec.multi_objective


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"objectives": {"error": "minimize", "size": None}}, "size.*which way is better"),
        ({"objectives": ["error", "error"]}, "named twice"),
        ({"objectives": _TWO, "metric": "size"}, "not the first objective"),
        ({"objectives": _TWO, "pruner": "median"}, "cannot prune a trade-off"),
        ({"objectives": _TWO, "strategy": "cmaes"}, "optimizes one metric"),
        ({"objectives": _TWO, "constraints": {"size": {}}}, "give `min`, `max` or both"),
        (
            {"objectives": _TWO, "constraints": {"size": {"min": 2, "max": 1}}},
            "min 2.0 is above max 1.0",
        ),
    ],
)
def test_bad_objectives_and_constraints_are_refused_in_one_line(storage_url, overrides, message):
    with pytest.raises(SpecError, match=message) as e:
        _create(storage_url, **overrides)
    assert "\n" not in str(e.value).strip() or "invalid study spec" in str(e.value)


def test_a_trainer_family_constrains_only_what_it_reports(storage_url):
    spec = {"name": "t", "space": "demo", "budget": {"trials": 2}}
    with pytest.raises(SpecError, match="constraint on 'val_f1'.*does not report it"):
        studies.create_study(
            open_storage(storage_url), {**spec, "constraints": {"val_f1": {"max": 1}}}
        )


@pytest.mark.parametrize("strategy", ["impact", "tpe", "nsga2", "random"])
def test_a_worker_tells_every_objective_and_the_front_is_optunas(storage_url, strategy):
    _create(storage_url, objectives=_TWO, strategy=strategy)
    assert run_worker(storage_url, study="mo", objective="objectives:trade_off") == 12
    trials = _trials(storage_url)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 12
    for t in trials:
        x, y = t.params["x"], t.params["y"]
        assert t.values == pytest.approx([(1 - x) ** 2 + 0.1 * y, x + 0.1 * y])
        assert t.user_attrs[METRICS_ATTR]["aux"] == pytest.approx(10 * x)
    if strategy == "impact":
        assert trials[0].params == {"x": 0.5, "y": 0.5}  # the defaults first, as for one


def test_a_trial_that_breaks_a_constraint_ends_pruned_and_the_sampler_knows(storage_url):
    _create(storage_url, objectives=_TWO, constraints={"aux": {"max": 5.0}}, strategy="tpe")
    assert run_worker(storage_url, study="mo", objective="objectives:trade_off") == 12
    trials = _trials(storage_url)
    broken = [t for t in trials if 10 * t.params["x"] > 5.0]
    kept = [t for t in trials if 10 * t.params["x"] <= 5.0]
    assert broken and kept
    for t in broken:
        assert t.state == TrialState.PRUNED
        assert t.user_attrs[INFEASIBLE_ATTR].startswith("infeasible: aux ")
        assert "is not <= 5" in t.user_attrs[INFEASIBLE_ATTR]
        assert t.constraints["aux"] > 0  # what the samplers read (Trial.set_constraint)
    for t in kept:
        assert t.state == TrialState.COMPLETE and t.constraints == {"aux": 0.0}
    study = optuna.load_study(study_name="mo", storage=storage_url)
    assert {t.number for t in study.best_trials} <= {t.number for t in kept}


def test_a_function_that_returns_one_number_for_two_objectives_fails_its_trial(storage_url):
    _create(storage_url, objectives=_TWO, budget={"trials": 2, "max_failures": 1})
    run_worker(storage_url, study="mo", objective="objectives:quadratic_xy")
    trials = _trials(storage_url)
    assert trials and all(t.state == TrialState.FAIL for t in trials)
    assert "must return a dict of them" in trials[0].user_attrs["fail_reason"]


def test_the_trainer_serves_a_trade_off_and_a_cost_constraint_costs_no_epoch(sqlite_url):
    # Accuracy against latency on digits, parameters capped: a wide or deep MLP breaks the cap
    # before it trains; the others train and are told both objectives.
    spec = {
        "name": "acc-lat",
        "space": "demo",
        "task": {"epochs": 2},
        "objectives": {"val_accuracy": "maximize", "latency_ms": "minimize"},
        "constraints": {"params": {"max": 30000}},
        "budget": {"trials": 8},
        "seed": 0,
        "fixed": {"model.depth": 2},
    }
    resolved = studies.create_study(open_storage(sqlite_url), spec)
    assert resolved.pruner.name == "pareto"  # the default pruner of a trade-off
    assert run_worker(sqlite_url, study="acc-lat", device="cpu") == 8
    trials = _trials(sqlite_url, "acc-lat")
    for t in trials:
        params = t.user_attrs[METRICS_ATTR]["params"]
        if params > 30000:
            assert t.state == TrialState.PRUNED
            assert t.user_attrs[INFEASIBLE_ATTR].startswith("infeasible before training: params")
            assert t.intermediate_values == {} and "rungs" not in t.user_attrs  # no epoch ran
            assert t.constraints["params"] > 0
        elif t.state == TrialState.COMPLETE:
            accuracy, latency = t.values
            assert 0 < accuracy <= 1 and latency > 0
            assert t.user_attrs[METRICS_ATTR]["latency_ms"] == pytest.approx(latency)
            assert t.constraints["params"] == 0
    assert any(t.user_attrs[METRICS_ATTR]["params"] > 30000 for t in trials)
    assert any(t.state == TrialState.COMPLETE for t in trials)
