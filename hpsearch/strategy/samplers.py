"""Build the Optuna sampler a study spec names."""

from __future__ import annotations

import optuna

from hpsearch.spaces import SearchSpace
from hpsearch.strategy.impact import ImpactSampler

__all__ = ["STRATEGIES", "make_sampler"]

#: Strategy names a study spec may give, with what each is.
STRATEGIES: dict[str, str] = {
    "impact": "checklist-tiered search: high-impact knobs first, then medium, then low (default)",
    "tpe": "Optuna's default TPESampler over every knob at once",
    "random": "uniform random search",
    "gp": "Optuna's Gaussian-process sampler",
    "cmaes": "Optuna's CMA-ES sampler",
}


def make_sampler(
    strategy: str, space: SearchSpace, *, seed: int | None = None, n_trials: int | None = None
) -> optuna.samplers.BaseSampler:
    """The sampler for ``strategy`` over ``space``; ``n_trials`` is the study's trial budget."""
    if strategy == "impact":
        return ImpactSampler(space, seed=seed, n_trials=n_trials)
    if strategy == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if strategy == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if strategy == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if strategy == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    raise ValueError(f"unknown strategy {strategy!r}; choose one of {sorted(STRATEGIES)}")
