"""The impact-tiered sampler: search what the checklist says matters most, first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from hpsearch.spaces import SearchSpace

__all__ = ["ImpactSampler"]

_TIERS = ("high", "medium", "low")


class ImpactSampler(optuna.samplers.BaseSampler):
    """Sample a :class:`SearchSpace` tier by tier, from the checklist's impact column.

    Trial 0 is the space's defaults. Then the high-impact parameters are searched while the
    others stay at their defaults; medium-impact parameters join after ``widen_at[0]`` of the
    budget, low-impact ones after ``widen_at[1]``. The parameters being searched are sampled by
    an inner sampler (TPE by default), which sees every finished trial. Parameters that are not
    in the space are left to the inner sampler, so it works on any objective.

    Args:
        space: the search space whose tiers and defaults guide the search.
        seed: seed of the inner sampler.
        n_trials: the study's trial budget; without one, tiers widen as if it were 50.
        widen_at: fractions of the budget at which medium, then low tiers are searched.
        inner: the sampler for searched parameters; Optuna's TPE by default.
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        seed: int | None = None,
        n_trials: int | None = None,
        widen_at: tuple[float, float] = (0.25, 0.5),
        inner: optuna.samplers.BaseSampler | None = None,
    ) -> None:
        if not 0.0 <= widen_at[0] <= widen_at[1] <= 1.0:
            raise ValueError(f"`widen_at` must be two fractions in order, got {widen_at=}")
        self._space = space
        self._n_trials = n_trials or 50
        self._widen_at = widen_at
        self._inner = inner or optuna.samplers.TPESampler(seed=seed)

    def searched_tiers(self, trial_number: int) -> tuple[str, ...]:
        """The impact tiers searched at this trial number (none for trial 0: the defaults)."""
        if trial_number == 0:
            return ()
        progress = trial_number / self._n_trials
        n_tiers = 1 + (progress >= self._widen_at[0]) + (progress >= self._widen_at[1])
        return _TIERS[:n_tiers]

    # Every parameter goes through sample_independent, where the tier decides: a relative
    # (joint) sample from the inner sampler would bypass the tiers.
    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        param = self._space.params.get(param_name)
        if param is not None and param.impact not in self.searched_tiers(trial.number):
            return param.default
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._inner.before_trial(study, trial)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()
