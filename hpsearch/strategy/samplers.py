"""Build the Optuna sampler a study spec names."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import optuna

from hpsearch.spaces import SearchSpace
from hpsearch.strategy.impact import ImpactSampler
from hpsearch.strategy.prior import PriorSampler

__all__ = ["STRATEGIES", "make_sampler"]


class _Strategy(NamedTuple):
    build: Callable[[SearchSpace, int | None, int | None], optuna.samplers.BaseSampler]
    summary: str


_TABLE: dict[str, _Strategy] = {
    "impact": _Strategy(
        lambda space, seed, n: PriorSampler(space, seed=seed, n_trials=n),
        "the checklist's impact tiers as a soft prior: defaults first, every knob searched, "
        "low tiers held at the incumbent more often, the study's evidence re-ranks (default)",
    ),
    "tiers": _Strategy(
        lambda space, seed, n: ImpactSampler(space, seed=seed, n_trials=n),
        "the hard tier schedule: high-impact knobs first, then medium, then low",
    ),
    "tpe": _Strategy(
        lambda space, seed, n: optuna.samplers.TPESampler(seed=seed),
        "Optuna's default TPESampler over every knob at once",
    ),
    "random": _Strategy(
        lambda space, seed, n: optuna.samplers.RandomSampler(seed=seed), "uniform random search"
    ),
    "gp": _Strategy(
        lambda space, seed, n: optuna.samplers.GPSampler(seed=seed),
        "Optuna's Gaussian-process sampler",
    ),
    "cmaes": _Strategy(
        lambda space, seed, n: optuna.samplers.CmaEsSampler(
            seed=seed, warn_independent_sampling=False
        ),
        "Optuna's CMA-ES sampler; categorical and conditional knobs fall back to random sampling",
    ),
}

#: Strategy names a study spec may give, with what each is.
STRATEGIES: dict[str, str] = {name: entry.summary for name, entry in _TABLE.items()}


def make_sampler(
    strategy: str, space: SearchSpace, *, seed: int | None = None, n_trials: int | None = None
) -> optuna.samplers.BaseSampler:
    """The sampler for ``strategy`` over ``space``; ``n_trials`` is the study's trial budget."""
    if strategy not in _TABLE:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(_TABLE)}")
    return _TABLE[strategy].build(space, seed, n_trials)
