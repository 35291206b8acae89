"""Build the Optuna sampler a study spec names."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import optuna

from hpsearch.spaces import SearchSpace
from hpsearch.strategy.grid import MAX_KNOB_VALUES, SpaceGridSampler
from hpsearch.strategy.impact import ImpactSampler
from hpsearch.strategy.prior import PriorSampler

__all__ = ["STRATEGIES", "make_sampler"]


class _Strategy(NamedTuple):
    # (space, seed, trial budget, the study's fixed knobs) -> the sampler
    build: Callable[
        [SearchSpace, int | None, int | None, Mapping[str, Any]], optuna.samplers.BaseSampler
    ]
    summary: str


_TABLE: dict[str, _Strategy] = {
    "impact": _Strategy(
        lambda space, seed, n, fixed: PriorSampler(space, seed=seed, n_trials=n),
        "the checklist's impact tiers as a soft prior: defaults first, every knob searched, "
        "low tiers held at the incumbent more often, the study's evidence re-ranks (default)",
    ),
    "tiers": _Strategy(
        lambda space, seed, n, fixed: ImpactSampler(space, seed=seed, n_trials=n),
        "the hard tier schedule: high-impact knobs first, then medium, then low",
    ),
    "tpe": _Strategy(
        lambda space, seed, n, fixed: optuna.samplers.TPESampler(seed=seed),
        "Optuna's default TPESampler over every knob at once (MO-TPE for several objectives)",
    ),
    "nsga2": _Strategy(
        lambda space, seed, n, fixed: optuna.samplers.NSGAIISampler(seed=seed),
        "Optuna's NSGA-II genetic algorithm, for several objectives",
    ),
    "random": _Strategy(
        lambda space, seed, n, fixed: optuna.samplers.RandomSampler(seed=seed),
        "uniform random search",
    ),
    "gp": _Strategy(
        lambda space, seed, n, fixed: optuna.samplers.GPSampler(seed=seed),
        "Optuna's Gaussian-process sampler",
    ),
    "cmaes": _Strategy(
        lambda space, seed, n, fixed: optuna.samplers.CmaEsSampler(
            seed=seed, warn_independent_sampling=False
        ),
        "Optuna's CMA-ES sampler; categorical and conditional knobs fall back to random sampling",
    ),
    "grid": _Strategy(
        lambda space, seed, n, fixed: SpaceGridSampler(space, fixed=fixed, seed=seed),
        "every combination of the categorical and stepped values, each run once (Optuna's "
        f"GridSampler); a float without `step` and a knob of more than {MAX_KNOB_VALUES} "
        "values are held at their default; the study ends when the grid is spent",
    ),
}

#: Strategy names a study spec may give, with what each is.
STRATEGIES: dict[str, str] = {name: entry.summary for name, entry in _TABLE.items()}


def make_sampler(
    strategy: str,
    space: SearchSpace,
    *,
    seed: int | None = None,
    n_trials: int | None = None,
    fixed: Mapping[str, Any] | None = None,
) -> optuna.samplers.BaseSampler:
    """The sampler for ``strategy`` over ``space``; ``n_trials`` is the study's trial budget,
    ``fixed`` the knobs the study pins (the grid leaves them out).

    A study with constraints needs nothing more: the worker sets each trial's constraint
    values (``Trial.set_constraint``), which Optuna's TPE, NSGA-II and GP samplers read."""
    if strategy not in _TABLE:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(_TABLE)}")
    return _TABLE[strategy].build(space, seed, n_trials, fixed or {})
