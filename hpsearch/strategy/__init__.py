"""Samplers and pruners built from a study spec, and the impact-tiered sampler."""

from __future__ import annotations

from hpsearch.strategy.impact import ImpactSampler
from hpsearch.strategy.pruners import PRUNERS, make_pruner
from hpsearch.strategy.samplers import STRATEGIES, make_sampler

__all__ = ["ImpactSampler", "make_sampler", "make_pruner", "STRATEGIES", "PRUNERS"]
