"""TPE whose acquisition is weighted by the checklist's prior, with a weight that decays as in
piBO (Hvarfner et al., 2022; SMAC3's ``PriorAcquisitionFunction``).

TPE picks, among candidates drawn from its density of good configs ``l(x)``, the one with the
largest ``log l(x) - log g(x)``. piBO multiplies the acquisition by the prior ``pi(x)`` raised
to ``beta / n``: after ``n`` finished trials the score is
``log l(x) - log g(x) + (beta / n) * log pi(x)``, so the prior steers the first trials and the
evidence the later ones. Here ``pi`` is a product over knobs, each peaked at its default, as
wide as its (effective) impact tier says: a high-impact knob's default is a loose belief, a
low-impact knob's a tight one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

__all__ = ["PriorWeightedTPE", "log_prior"]

#: Width of the prior of each tier: the standard deviation over the knob's range (in log space
#: for a log knob), and the probability of the default for a categorical knob.
WIDTH: dict[str, float] = {"high": 0.5, "medium": 0.25, "low": 0.12}
CATEGORICAL_MASS: dict[str, float] = {"high": 0.3, "medium": 0.55, "low": 0.8}


def log_prior(
    samples: Mapping[str, np.ndarray],
    space: Mapping[str, BaseDistribution],
    defaults: Mapping[str, Any],
    tiers: Mapping[str, str],
) -> np.ndarray:
    """The prior's log-density (up to a constant) of candidates in Optuna's internal form."""
    total = np.zeros(len(next(iter(samples.values()))) if samples else 0)
    for name, x in samples.items():
        dist, default, tier = space.get(name), defaults.get(name), tiers.get(name, "medium")
        if dist is None or default is None:
            continue
        if isinstance(dist, CategoricalDistribution):
            if default not in dist.choices or len(dist.choices) < 2:
                continue
            mass = CATEGORICAL_MASS[tier]
            at = dist.choices.index(default)
            other = (1.0 - mass) / (len(dist.choices) - 1)
            total += np.where(np.asarray(x).astype(int) == at, math.log(mass), math.log(other))
        elif isinstance(dist, (FloatDistribution, IntDistribution)):
            if not dist.low <= default <= dist.high or dist.high <= dist.low:
                continue
            if dist.log:
                lo, hi = math.log(dist.low), math.log(dist.high)
                u = (np.log(np.asarray(x, dtype=float)) - lo) / (hi - lo)
                u0 = (math.log(default) - lo) / (hi - lo)
            else:
                u = (np.asarray(x, dtype=float) - dist.low) / (dist.high - dist.low)
                u0 = (float(default) - dist.low) / (dist.high - dist.low)
            total += -0.5 * ((u - u0) / WIDTH[tier]) ** 2
    return total


class PriorWeightedTPE(optuna.samplers.TPESampler):
    """Multivariate TPE (constant liar) whose acquisition adds ``(beta / n) * log pi(x)``.

    Args:
        defaults: the prior's mode, a value per knob.
        tiers: a function of the study giving each knob's effective tier (the checklist's, or
            the evidence's once it overrules it).
        beta: the prior's weight after one finished trial; ``beta / n`` after ``n``.
        seed: the TPE's seed.
    """

    def __init__(
        self,
        defaults: Mapping[str, Any],
        tiers: Callable[[Study], Mapping[str, str]],
        *,
        beta: float = 10.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(seed=seed, multivariate=True, constant_liar=True)
        self._defaults = dict(defaults)
        self._tiers_of = tiers
        self._beta = float(beta)
        self._weighting: tuple[float, dict[str, BaseDistribution], Mapping[str, str]] | None = None

    def _sample(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        n = len(study._get_trials(deepcopy=False, states=(TrialState.COMPLETE,), use_cache=True))
        self._weighting = (self._beta / max(n, 1), search_space, self._tiers_of(study))
        try:
            return super()._sample(study, trial, search_space)
        finally:
            self._weighting = None

    def _compute_acquisition_func(
        self,
        samples: dict[str, np.ndarray],
        mpe_below: _ParzenEstimator,
        mpe_above: _ParzenEstimator,
    ) -> np.ndarray:
        acq = super()._compute_acquisition_func(samples, mpe_below, mpe_above)
        if self._weighting is None or self._beta == 0:
            return acq
        weight, space, tiers = self._weighting
        return acq + weight * log_prior(samples, space, self._defaults, tiers)
