"""Pruning a trade-off: asynchronous successive halving over several objectives (as MOASHA).

Optuna's pruners judge one intermediate value and refuse studies of several objectives. This one
judges a trial at its rungs (epochs ``min_resource * reduction_factor**k``) by the vector of its
objectives at that epoch: its validation metrics then, and the costs known before training
(``params``, ``size_mb``, ``latency_ms``). Among the trials that reached the rung, it sorts by
non-dominated rank, then by crowding distance (the emptier neighbourhood first), and keeps the
top ``1 / reduction_factor``; a trial outside them is pruned. Before ``reduction_factor`` trials
reached a rung, every trial continues there.

The worker writes each trial's vectors at its rungs into the trial's ``rungs`` attribute and
calls :meth:`ParetoRungPruner.prune` itself (``Trial.should_prune`` refuses several objectives).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.study._multi_objective import _fast_non_domination_rank
from optuna.trial import FrozenTrial, TrialState

__all__ = ["RUNGS_ATTR", "ParetoRungPruner", "keeps"]

#: A trial's objective vectors at its rungs: ``{"epoch": [value, ...]}`` (JSON keys are text).
RUNGS_ATTR = "rungs"


def _crowding(points: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance of each point among ``points`` (infinite at the edges)."""
    n, m = points.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, math.inf)
    for j in range(m):
        order = np.argsort(points[:, j], kind="stable")
        span = points[order[-1], j] - points[order[0], j]
        if span <= 0:
            continue  # every point at one place on this axis: none is its edge
        distance[order[0]] = distance[order[-1]] = math.inf
        gaps = (points[order[2:], j] - points[order[:-2], j]) / span
        distance[order[1:-1]] += gaps
    return distance


def keeps(
    mine: Sequence[float], others: Sequence[Sequence[float]], *, reduction_factor: int
) -> bool:
    """Whether the vector ``mine`` (every objective minimized) is in the top
    ``1 / reduction_factor`` of ``[mine, *others]`` by non-dominated rank, then crowding
    distance; True while fewer than ``reduction_factor`` vectors are there."""
    points = np.array([list(mine), *[list(o) for o in others]], dtype=float)
    n = len(points)
    if n < reduction_factor:
        return True
    # A NaN or infinite value (a diverged metric) is worse than every finite one.
    finite = np.nan_to_num(points, nan=1e300, posinf=1e300, neginf=-1e300)
    ranks = _fast_non_domination_rank(finite)
    crowd = np.zeros(n)
    for rank in np.unique(ranks):
        members = np.flatnonzero(ranks == rank)
        crowd[members] = _crowding(finite[members])
    # A copy of another trial's point adds nothing: it is no edge of its own, and among equals
    # (the same rank and crowding) the newcomer goes last.
    copies = [i for i in range(1, n) if np.array_equal(finite[i], finite[0])]
    if copies:
        crowd[0] = min(crowd[i] for i in [0, *copies])
    order = sorted(range(n), key=lambda i: (ranks[i], -crowd[i], i == 0))
    kept = math.ceil(n / reduction_factor)
    return 0 in order[:kept]


class ParetoRungPruner(optuna.pruners.BasePruner):
    """Successive halving for several objectives: see the module's text.

    Args:
        min_resource: the first rung's epoch.
        reduction_factor: keep the top ``1 / reduction_factor`` at each rung (>= 2).
    """

    def __init__(self, *, min_resource: int = 1, reduction_factor: int = 3) -> None:
        if int(min_resource) < 1:
            raise ValueError(f"`min_resource` must be >= 1, got {min_resource!r}")
        if int(reduction_factor) < 2:
            raise ValueError(f"`reduction_factor` must be >= 2, got {reduction_factor!r}")
        self.min_resource = int(min_resource)
        self.reduction_factor = int(reduction_factor)

    def is_rung(self, epoch: int) -> bool:
        """Whether ``epoch`` is a rung: ``min_resource * reduction_factor**k``."""
        if epoch < self.min_resource or epoch % self.min_resource:
            return False
        ratio = epoch // self.min_resource
        while ratio % self.reduction_factor == 0:
            ratio //= self.reduction_factor
        return ratio == 1

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """Whether ``trial`` stops at its latest rung (its ``rungs`` attribute)."""
        rungs = trial.user_attrs.get(RUNGS_ATTR) or {}
        if not rungs:
            return False
        epoch = max(rungs, key=int)
        return self.stops(study, trial.number, int(epoch), rungs[epoch])

    def stops(self, study: optuna.Study, number: int, epoch: int, values: Sequence[float]) -> bool:
        """Whether trial ``number``, with objective ``values`` at rung ``epoch``, stops there:
        one read of the study's trials."""
        signs = [-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in study.directions]
        mine = [s * float(v) for s, v in zip(signs, values, strict=True)]
        others = []
        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        for other in study.get_trials(deepcopy=False, states=states):
            seen = (other.user_attrs.get(RUNGS_ATTR) or {}).get(str(epoch))
            if other.number != number and seen is not None and len(seen) == len(signs):
                others.append([s * float(v) for s, v in zip(signs, seen, strict=True)])
        return not keeps(mine, others, reduction_factor=self.reduction_factor)
