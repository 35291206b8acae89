"""Samplers and pruners built from a study spec; the checklist-prior, tiered and grid samplers."""

from __future__ import annotations

from hpsearch.strategy.grid import Grid, SpaceGridSampler, build_grid, grid_size
from hpsearch.strategy.impact import ImpactSampler
from hpsearch.strategy.prior import Misfit, PriorSampler, prior_misfit
from hpsearch.strategy.pruners import PRUNERS, make_pruner
from hpsearch.strategy.samplers import STRATEGIES, make_sampler

__all__ = [
    "PRUNERS",
    "STRATEGIES",
    "Grid",
    "ImpactSampler",
    "Misfit",
    "PriorSampler",
    "SpaceGridSampler",
    "build_grid",
    "grid_size",
    "make_pruner",
    "make_sampler",
    "prior_misfit",
]
