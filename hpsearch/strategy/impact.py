"""The impact-tiered sampler: search what the checklist says matters most, first."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.search_space import IntersectionSearchSpace
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hpsearch.spaces import SearchSpace

__all__ = ["ImpactSampler"]

_TIERS = ("high", "medium", "low")


class ImpactSampler(optuna.samplers.BaseSampler):
    """Sample a :class:`SearchSpace` tier by tier, from the checklist's impact column.

    Trial 0 is the space's defaults. Then the high-impact parameters are searched while the
    others stay at their defaults, and the next tier joins the search when either comes first:

    - the budget says so: medium-impact parameters join after ``widen_at[0]`` of ``n_trials``,
      low-impact ones after ``widen_at[1]``;
    - the study's own evidence says so: the tiers searched so far have not improved the best
      value for ``patience`` finished trials in a row, so a wrong prior (the knob that matters
      sits in a low tier) costs a few stalled trials, not half the budget.

    The searched parameters are sampled jointly by an inner sampler (multivariate TPE by
    default) that sees every finished trial, so it concentrates on the values that did well;
    conditional parameters are sampled one by one by the same sampler. Parameters that are not
    in the space are left to the inner sampler, so it works on any objective; so is a held
    parameter whose default lies outside the range the objective suggests.

    The decision is a function of the study's trials, not of the sampler's memory, so several
    workers (each with its own sampler over one storage) agree; trials that are still running
    or were pruned do not count towards a stall (the inner TPE still learns from pruned ones).

    Args:
        space: the search space whose tiers and defaults guide the search.
        seed: seed of the inner sampler.
        n_trials: the study's trial budget; without one, tiers widen as if it were 50.
        widen_at: fractions of the budget at which medium, then low tiers are searched at the
            latest.
        patience: finished trials without a new best after which the next tier joins; by
            default a fifth of the budget, at least 5. ``0`` turns the evidence rule off.
        inner: the sampler for searched parameters; Optuna's multivariate TPE by default.
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        seed: int | None = None,
        n_trials: int | None = None,
        widen_at: tuple[float, float] = (0.25, 0.5),
        patience: int | None = None,
        inner: optuna.samplers.BaseSampler | None = None,
    ) -> None:
        if len(widen_at) != 2 or not 0.0 <= widen_at[0] <= widen_at[1] <= 1.0:
            raise ValueError(f"`widen_at` must be two fractions in order, got {widen_at=}")
        if n_trials is not None and n_trials < 1:
            raise ValueError(f"`n_trials` must be a positive budget or None, got {n_trials=}")
        if patience is not None and patience < 0:
            raise ValueError(f"`patience` must be >= 0 (0 turns it off), got {patience=}")
        self._space = space
        self._n_trials = n_trials or 50
        self._widen_at = widen_at
        self._patience = max(5, self._n_trials // 5) if patience is None else patience
        self._inner = inner or optuna.samplers.TPESampler(seed=seed, multivariate=True)
        self._intersection = IntersectionSearchSpace(include_pruned=True)
        self._present = [t for t in _TIERS if any(p.impact == t for p in space.params.values())]
        self._searched: dict[int, tuple[str, ...]] = {}  # trial number -> its searched tiers

    def searched_tiers(self, trial_number: int, study: Study | None = None) -> tuple[str, ...]:
        """The impact tiers searched at this trial number (none for trial 0: the defaults).

        Without ``study``, only the budget rule applies; with it, tiers that stalled in the
        study's finished trials before ``trial_number`` also make the next tier join.
        """
        if trial_number == 0:
            return ()
        progress = trial_number / self._n_trials
        by_budget = 1 + (progress >= self._widen_at[0]) + (progress >= self._widen_at[1])
        searched = set(_TIERS[:by_budget])
        if study is not None and self._patience > 0:
            stalls = self._stalls(study, trial_number)
            searched.update(self._present[: 1 + stalls])
        return tuple(t for t in _TIERS if t in searched)

    def _stalls(self, study: Study, before: int) -> int:
        """How many times the search stalled for `patience` finished trials, before `before`."""
        if study._is_multi_objective():
            return 0
        sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        values = sorted(
            (t.number, sign * t.value)
            for t in finished
            if t.number < before and t.value is not None  # a complete trial has one
        )
        best, since, stalls = math.inf, 0, 0
        for number, value in values:
            if value < best:
                best, since = value, 0
            elif number > 0:  # trial 0 (the defaults) starts the first tier's count
                since += 1
                if since >= self._patience:
                    stalls, since = stalls + 1, 0
        return stalls

    def _is_searched(self, trial: FrozenTrial, param_name: str) -> bool:
        param = self._space.params.get(param_name)
        if param is None:
            return True
        tiers = self._searched.get(trial.number)
        if tiers is None:  # before_trial did not run for this trial (e.g. another worker's)
            tiers = self.searched_tiers(trial.number)
        return param.impact in tiers

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._searched[trial.number] = self.searched_tiers(trial.number, study)
        self._inner.before_trial(study, trial)

    # The searched parameters that every trial so far has are sampled jointly by the inner
    # sampler; the held ones and conditional ones go through sample_independent.
    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        if trial.number == 0:
            return {}
        return {
            name: dist
            for name, dist in self._intersection.calculate(study).items()
            if not dist.single() and self._is_searched(trial, name)
        }

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        param = self._space.params.get(param_name)
        if (
            param is not None
            and (trial.number == 0 or not self._is_searched(trial, param_name))
            and _holds(param_distribution, param.default)
        ):
            return param.default
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._searched.pop(trial.number, None)
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()


def _holds(distribution: BaseDistribution, value: Any) -> bool:
    """Whether ``value`` is a value of ``distribution`` (a default can lie outside a range that
    the objective suggests on its own)."""
    try:
        return bool(distribution._contains(distribution.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False
