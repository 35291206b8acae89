"""Grid search over a space: every combination of its listable values, each run once.

:func:`build_grid` lists a space's grid: a categorical knob (booleans included) takes each of
its choices; an int knob every value from ``low`` to ``high`` by its ``step`` (1 when absent,
a log int too); a float knob with a ``step`` every step. A knob with more than
:data:`MAX_KNOB_VALUES` such values, and a float without a ``step`` (continuous: it has no
values to list), is *held* at its default; a knob the study fixes is not gridded at all.
Conditions are followed as :func:`hpsearch.spaces.suggest_config` follows them: a knob
exists only in the points where its ``when`` holds, so two points never differ only in a knob
that is not used. :class:`SpaceGridSampler` is Optuna's ``GridSampler`` over those points.

Used by the strategy ``grid`` (:func:`hpsearch.strategy.make_sampler`); a study's spec is
refused at submit when its space has nothing to grid (see :func:`grid_size`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optuna.samplers import GridSampler
from optuna.trial import TrialState

from hpsearch.errors import SpaceError
from hpsearch.spaces import Param, SearchSpace
from hpsearch.strategy.locks import sampler_lock

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.study import Study
    from optuna.trial import FrozenTrial

__all__ = [
    "MAX_GRID_POINTS",
    "MAX_KNOB_VALUES",
    "Grid",
    "SpaceGridSampler",
    "build_grid",
    "grid_size",
]

log = logging.getLogger("hpsearch.strategy")

#: A stepped int or float knob with more values than this is held at its default, not gridded
#: (a categorical knob's choices are listed by hand: every one is gridded).
MAX_KNOB_VALUES = 32
#: The most points a grid may have: Optuna's ``GridSampler`` holds every point in memory, and
#: at a trial a minute this is already more than two months of one GPU.
MAX_GRID_POINTS = 100_000

# Optuna's GridSampler keys, stored on each trial: the grid's values, and the point it runs.
_GRID_ID = "grid_id"
_SEARCH_SPACE = "search_space"
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def knob_values(param: Param) -> list[Any] | str:
    """The values a grid gives ``param``, or why it has none (it is then held at its default)."""
    if param.type == "categorical":
        assert param.choices is not None
        return list(param.choices)
    assert param.low is not None and param.high is not None
    if param.type == "float" and param.step is None:
        return "continuous: no `step`"
    step = param.step if param.step is not None else 1
    count = round((param.high - param.low) / step) + 1
    if count > MAX_KNOB_VALUES:
        return (
            f"{count} values from {param.low:g} to {param.high:g} by {step:g}, more than "
            f"{MAX_KNOB_VALUES}"
        )
    if param.type == "int":
        return list(range(int(param.low), int(param.high) + 1, int(step)))
    values = [float(f"{param.low + k * step:.15g}") for k in range(count - 1)]
    return [*values, float(param.high)]


@dataclass(frozen=True)
class Grid:
    """The points of a grid search over a space, in a fixed order (the same on every worker).

    ``names`` are the knobs a trial suggests (every knob the study does not fix, in
    suggestion order); ``values`` the values of each (a knob in ``held``: its default only);
    ``held`` the knobs held at their default, with why. A point gives every name a value, in
    ``names`` order; a knob whose condition does not hold in the point has a placeholder
    there, which is never suggested.
    """

    space: str
    names: tuple[str, ...]
    values: dict[str, list[Any]]
    held: dict[str, str]
    points: list[tuple[Any, ...]]

    def __len__(self) -> int:
        return len(self.points)

    def configs(self) -> Iterator[dict[str, Any]]:
        """Each point as the config a trial of it runs (the knobs in use, the fixed ones not)."""
        for point in self.points:
            yield {name: point[i] for i, name in enumerate(self.names) if point[i] is not _UNUSED}

    def summary(self) -> str:
        """One line: the grid's size, the gridded knobs with their value counts, the held ones."""
        gridded = ", ".join(
            f"{name} ({len(v)})" for name, v in self.values.items() if name not in self.held
        )
        line = f"{len(self.points)} grid points over {gridded or 'no knob'}"
        if self.held:
            line += "; held at their defaults: " + ", ".join(
                f"{name} ({why})" for name, why in self.held.items()
            )
        return line


class _Unused:
    """The value of a knob in a point where its condition does not hold."""

    def __repr__(self) -> str:
        return "<unused>"


_UNUSED = _Unused()


def build_grid(space: SearchSpace, fixed: Mapping[str, Any] | None = None) -> Grid:
    """The grid of ``space`` with ``fixed`` knobs pinned (and not gridded): see the module.

    Raises :class:`SpaceError` (one line naming the space and saying what to do) when no knob
    can be gridded, or when the grid would have more than :data:`MAX_GRID_POINTS` points.
    """
    pinned = space.check_fixed(fixed or {})
    order = space.ordered_names()
    names = tuple(name for name in order if name not in pinned)
    values: dict[str, list[Any]] = {}
    held: dict[str, str] = {}
    for name in names:
        listed = knob_values(space.params[name])
        if isinstance(listed, str):
            held[name] = listed
            listed = [space.params[name].default]
        values[name] = listed
    if len(held) == len(names):
        raise SpaceError(_nothing_to_grid(space, pinned, held))
    # Follow the conditions knob by knob: a partial point is the config decided so far.
    partial: list[dict[str, Any]] = [dict(pinned)]
    for name in order:
        if name in pinned:
            continue
        grown: list[dict[str, Any]] = []
        for config in partial:
            if space.is_active(name, config):
                grown.extend({**config, name: value} for value in values[name])
            else:
                grown.append(config)
        if len(grown) > MAX_GRID_POINTS:
            raise SpaceError(_too_large(space, values))
        partial = grown
    points = [tuple(config.get(name, _UNUSED) for name in names) for config in partial]
    return Grid(space=space.name, names=names, values=values, held=held, points=points)


def grid_size(space: SearchSpace, fixed: Mapping[str, Any] | None = None) -> int:
    """How many points the grid of ``space`` has; raises :class:`SpaceError` as :func:`build_grid`."""
    return len(build_grid(space, fixed))


def _nothing_to_grid(space: SearchSpace, pinned: Mapping[str, Any], held: Mapping[str, str]) -> str:
    if not held:
        return (
            f"strategy grid: every parameter of space {space.name!r} is fixed, so there is "
            "nothing to grid; unfix some, or pick another strategy"
        )
    shown = ", ".join(f"{name} ({why})" for name, why in list(held.items())[:4])
    more = f" and {len(held) - 4} more" if len(held) > 4 else ""
    return (
        f"strategy grid: space {space.name!r} has nothing to grid: {shown}{more}; give knobs a "
        f"`step` (at most {MAX_KNOB_VALUES} values each) or `choices`, or pick another strategy "
        "(impact, tpe, random)"
    )


def _too_large(space: SearchSpace, values: Mapping[str, Sequence[Any]]) -> str:
    largest = sorted(values.items(), key=lambda item: -len(item[1]))[:4]
    shown = ", ".join(f"{name} ({len(v)} values)" for name, v in largest)
    bound = math.prod(len(v) for v in values.values())
    return (
        f"strategy grid: space {space.name!r} has more than {MAX_GRID_POINTS} grid points "
        f"(up to {bound:.3g}; the largest knobs: {shown}); fix knobs with `fixed:`, give them "
        "fewer values (a larger `step`, fewer `choices`), or pick another strategy"
    )


class SpaceGridSampler(GridSampler):
    """Optuna's ``GridSampler`` over the points of :func:`build_grid`: each point runs once.

    Differences from Optuna's, for workers that share a study through ask and tell:

    - the points are the grid's distinct configs, in the grid's fixed order (Optuna shuffles
      its grid by the seed, so two workers of different seeds would number points apart);
      ``seed`` only draws which free point a trial takes;
    - a trial takes a point that no finished or running trial holds, chosen under the study's
      lock (:func:`hpsearch.db.storage.study_lock`) so that two workers never take the same
      one; a retried trial keeps its point, and a point whose trial failed is not run again;
    - it never calls ``Study.stop`` outside ``Study.optimize``: an hpsearch study ends when its
      trial budget (the grid's size at most, see :func:`hpsearch.studies.resolve_spec`) is spent.

    Knobs without listable values are held at their default; see :class:`Grid`.
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        fixed: Mapping[str, Any] | None = None,
        seed: int | None = None,
    ) -> None:
        self.grid = build_grid(space, fixed)
        super().__init__({}, seed=seed)  # an empty grid: the points are set below
        self._search_space = {name: self.grid.values[name] for name in sorted(self.grid.names)}
        self._param_names = sorted(self.grid.names)
        index = [self.grid.names.index(name) for name in self._param_names]
        self._all_grids = [tuple(point[i] for i in index) for point in self.grid.points]
        self._n_min_trials = len(self._all_grids)
        self._taken: dict[int, int] = {}  # trial id -> the point this sampler gave it

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        if _GRID_ID in trial.system_attrs or "fixed_params" in trial.system_attrs:
            return  # a retry runs its original's point; an enqueued config is given in full
        with sampler_lock(study):
            free = self._free_points(study)
            grid_id = int(self._rng.rng.choice(free))
            study._storage.set_trial_system_attr(trial._trial_id, _SEARCH_SPACE, self._search_space)
            study._storage.set_trial_system_attr(trial._trial_id, _GRID_ID, grid_id)
        if len(self._taken) >= 4096:
            self._taken.clear()
        self._taken[trial._trial_id] = grid_id

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        if param_name not in self._search_space:
            raise SpaceError(
                f"strategy grid: parameter {param_name!r} is not in the grid of space "
                f"{self.grid.space!r}; a grid study suggests only its space's parameters"
            )
        grid_id = self._taken.get(trial._trial_id)
        if grid_id is None:  # a retry: its point is among its system attributes
            return super().sample_independent(study, trial, param_name, param_distribution)
        # Optuna's reads the trial's system attributes again for each parameter: one query each.
        return self._all_grids[grid_id][self._param_names.index(param_name)]

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        # Optuna's stops Study.optimize once the grid is spent; Study.stop raises outside it.
        if getattr(study._thread_local, "in_optimize_loop", False):
            super().after_trial(study, trial, state, values)

    def _free_points(self, study: Study) -> list[int]:
        """The points no finished or running trial holds (when none: those not finished)."""
        finished: set[int] = set()
        running: set[int] = set()
        for t in study._storage.get_all_trials(study._study_id, deepcopy=False):
            grid_id = t.system_attrs.get(_GRID_ID)
            if grid_id is None or not self._same_search_space(t.system_attrs[_SEARCH_SPACE]):
                continue
            if t.state in _FINISHED:
                finished.add(grid_id)
            elif t.state == TrialState.RUNNING:
                running.add(grid_id)
        points = range(self._n_min_trials)
        free = [i for i in points if i not in finished and i not in running]
        if not free:
            # Only outside hpsearch's budget (plain Optuna with n_jobs, or a study run again).
            log.warning("strategy grid: every point of the grid has run; running one again")
            free = [i for i in points if i not in finished] or list(points)
        return free
