"""Samplers and pruners from a spec; the impact-tiered sampler with plain Optuna."""

from __future__ import annotations

import optuna
import pytest

from hpsearch.spaces import SearchSpace, load_space, suggest_config
from hpsearch.strategy import ImpactSampler, make_pruner, make_sampler

SPACE = SearchSpace.model_validate(
    {
        "name": "toy",
        "task": "tabular_classification",
        "params": {
            "lr": {
                "type": "float",
                "low": 1e-4,
                "high": 1.0,
                "log": True,
                "default": 1e-2,
                "impact": "high",
                "checklist": "Learining Rate (LR)",
            },
            "depth": {
                "type": "int",
                "low": 1,
                "high": 8,
                "default": 2,
                "impact": "medium",
                "checklist": "Num of layers (depth)",
            },
            "act": {
                "type": "categorical",
                "choices": ["relu", "gelu", "silu"],
                "default": "relu",
                "impact": "low",
                "checklist": "Nonlinearity (act fn)",
            },
        },
    }
)


def _run(sampler, n, objective=lambda c: -abs(c["lr"] - 0.1)):
    study = optuna.create_study(sampler=sampler, direction="maximize")
    for _ in range(n):
        trial = study.ask()
        config = suggest_config(trial, SPACE)
        study.tell(trial, objective(config))
    return study


def test_impact_sampler_starts_from_defaults_then_widens_tier_by_tier():
    # patience=0: only the budget widens the search, as documented by `widen_at`.
    sampler = ImpactSampler(SPACE, seed=0, n_trials=20, widen_at=(0.25, 0.5), patience=0)
    study = _run(sampler, 20)
    trials = study.trials
    assert trials[0].params == {"lr": 1e-2, "depth": 2, "act": "relu"}
    early = trials[1:5]  # high tier only
    assert len({t.params["lr"] for t in early}) == 4
    assert all(t.params["depth"] == 2 and t.params["act"] == "relu" for t in early)
    middle = trials[5:10]  # high + medium
    assert len({t.params["depth"] for t in middle}) > 1
    assert all(t.params["act"] == "relu" for t in middle)
    late = trials[10:]  # everything
    assert len({t.params["act"] for t in late}) > 1
    assert sampler.searched_tiers(0) == ()
    assert sampler.searched_tiers(4) == ("high",)
    assert sampler.searched_tiers(5) == ("high", "medium")
    assert sampler.searched_tiers(10) == ("high", "medium", "low")


def test_impact_sampler_searches_the_searched_tier_jointly():
    sampler = ImpactSampler(SPACE, seed=0, n_trials=100, patience=0)
    study = _run(sampler, 12)
    number = study.ask().number
    running = study.trials[number]
    # Only the high tier goes to the inner (multivariate) sampler; the rest are held.
    assert set(sampler.infer_relative_search_space(study, running)) == {"lr"}
    late = ImpactSampler(SPACE, seed=0, n_trials=12, patience=0)  # budget spent: all tiers
    late.before_trial(study, running)
    assert set(late.infer_relative_search_space(study, running)) == {"lr", "depth", "act"}


def test_impact_sampler_widens_early_when_the_prior_is_wrong():
    # Only the low-impact `act` matters: the high tier stalls, so the next tiers join long
    # before the budget rule (50% of 200 trials) would let `act` vary.
    sampler = ImpactSampler(SPACE, seed=0, n_trials=200, patience=5)
    study = _run(sampler, 40, objective=lambda c: {"relu": 0.0, "gelu": 0.5, "silu": 1.0}[c["act"]])
    assert sampler.searched_tiers(40) == ("high",)  # what the budget rule alone would search
    assert sampler.searched_tiers(40, study) == ("high", "medium", "low")
    assert {t.params["act"] for t in study.trials} == {"relu", "gelu", "silu"}
    assert study.best_value == 1.0
    # The same study with a rule that waits for the budget keeps `act` at its default.
    patient = _run(
        ImpactSampler(SPACE, seed=0, n_trials=200, patience=0),
        40,
        objective=lambda c: float(c["act"] == "silu"),
    )
    assert {t.params["act"] for t in patient.trials} == {"relu"}


def test_impact_sampler_keeps_the_high_tier_while_it_improves():
    # Every trial improves on the last: no stall, so only the budget widens.
    values = iter(range(100))
    sampler = ImpactSampler(SPACE, seed=0, n_trials=100, patience=3)
    study = _run(sampler, 20, objective=lambda c: next(values))
    assert sampler.searched_tiers(20, study) == ("high",)
    assert all(t.params["act"] == "relu" and t.params["depth"] == 2 for t in study.trials)


def test_impact_sampler_holds_a_default_only_where_the_objective_allows_it():
    sampler = ImpactSampler(SPACE, seed=0, n_trials=10)
    study = optuna.create_study(sampler=sampler)
    # The objective suggests `lr` on a range without the space's default (1e-2).
    study.optimize(lambda t: t.suggest_float("lr", 0.5, 1.0) + t.suggest_int("depth", 1, 8), 3)
    assert all(0.5 <= t.params["lr"] <= 1.0 for t in study.trials)
    assert study.trials[0].params["depth"] == 2


def test_impact_sampler_with_several_trials_running_at_once():
    sampler = ImpactSampler(SPACE, seed=0, n_trials=40)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    for _ in range(10):  # four workers: ask four trials, then tell them
        batch = [study.ask() for _ in range(4)]
        configs = [suggest_config(t, SPACE) for t in batch]
        for trial, config in zip(batch, configs):
            study.tell(trial, -abs(config["lr"] - 0.1) - 0.01 * config["depth"])
    trials = study.trials
    assert len(trials) == 40 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert trials[0].params == {"lr": 1e-2, "depth": 2, "act": "relu"}
    # Trials running side by side are not copies of each other.
    assert all(len({t.params["lr"] for t in trials[i : i + 4]}) == 4 for i in range(4, 40, 4))
    assert study.best_value > -0.05


def test_impact_sampler_with_pruned_trials():
    sampler = ImpactSampler(SPACE, seed=0, n_trials=30, patience=3)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    for i in range(30):
        trial = study.ask()
        config = suggest_config(trial, SPACE)
        trial.report(-abs(config["lr"] - 0.1), step=0)
        if i % 2:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, -abs(config["lr"] - 0.1))
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.PRUNED) == 15
    assert study.trials[0].params == {"lr": 1e-2, "depth": 2, "act": "relu"}
    # Pruned trials are no evidence of a stall: all pruned, nothing widens early.
    all_pruned = optuna.create_study(sampler=ImpactSampler(SPACE, seed=0, n_trials=200))
    for _ in range(30):
        trial = all_pruned.ask()
        suggest_config(trial, SPACE)
        all_pruned.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert ImpactSampler(SPACE, n_trials=200, patience=3).searched_tiers(30, all_pruned) == (
        "high",
    )


def test_impact_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="widen_at"):
        ImpactSampler(SPACE, widen_at=(0.6, 0.3))
    with pytest.raises(ValueError, match="patience"):
        ImpactSampler(SPACE, patience=-1)


def test_impact_sampler_leaves_parameters_outside_the_space_to_its_inner_sampler():
    sampler = ImpactSampler(SPACE, seed=0, n_trials=10)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=5)
    assert len({t.params["x"] for t in study.trials}) == 5


def test_impact_sampler_on_a_bundled_space_respects_conditions():
    space = load_space("demo")
    study = optuna.create_study(
        sampler=ImpactSampler(space, seed=1, n_trials=30), direction="maximize"
    )
    for _ in range(30):
        trial = study.ask()
        config = suggest_config(trial, space)
        assert ("optim.momentum" in config) == (config["optim.name"] == "sgd")
        study.tell(trial, config["optim.lr"])


@pytest.mark.parametrize(
    "strategy, cls",
    [
        ("impact", ImpactSampler),
        ("tpe", optuna.samplers.TPESampler),
        ("random", optuna.samplers.RandomSampler),
        ("gp", optuna.samplers.GPSampler),
        ("cmaes", optuna.samplers.CmaEsSampler),
    ],
)
def test_make_sampler(strategy, cls):
    assert isinstance(make_sampler(strategy, SPACE, seed=0, n_trials=10), cls)


def test_make_pruner_uses_epochs_as_the_resource():
    hyperband = make_pruner("hyperband", epochs=27)
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    assert hyperband._max_resource == 27
    assert isinstance(
        make_pruner("median", epochs=10, n_startup_trials=2), optuna.pruners.MedianPruner
    )
    with pytest.raises(ValueError, match="unknown pruner"):
        make_pruner("sometimes", epochs=5)
    with pytest.raises(ValueError, match="does not take"):
        make_pruner("asha", epochs=5, patience=3)
