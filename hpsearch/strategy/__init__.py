"""Samplers and pruners built from a study spec; the checklist-prior and tiered samplers."""

from __future__ import annotations

from hpsearch.strategy.impact import ImpactSampler
from hpsearch.strategy.prior import Misfit, PriorSampler, prior_misfit
from hpsearch.strategy.pruners import PRUNERS, make_pruner
from hpsearch.strategy.samplers import STRATEGIES, make_sampler

__all__ = [
    "PRUNERS",
    "STRATEGIES",
    "ImpactSampler",
    "Misfit",
    "PriorSampler",
    "make_pruner",
    "make_sampler",
    "prior_misfit",
]
