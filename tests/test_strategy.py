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
    study = _run(ImpactSampler(SPACE, seed=0, n_trials=20, widen_at=(0.25, 0.5)), 20)
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
