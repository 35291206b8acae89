"""The answer of a study of several objectives: its Pareto front, its hypervolume, one pick.

The front is Optuna's (``Study.best_trials``: the complete, feasible trials no other trial
dominates). Its hypervolume is measured against the *nadir* of the study's complete feasible
trials (each objective's worst value so far), the reference point the response gives, so the
figure grows as the front moves out and is comparable between studies only with one fixed
reference. When one config is wanted, :func:`pick` takes the front's best point in the first
objective that meets ``limits`` (for example the most accurate under a latency bound).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.study._multi_objective import _get_pareto_front_trials_by_trials
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, Field

from hpsearch.errors import SpecError
from hpsearch.studies._lookup import FoundStudy, find_study
from hpsearch.studies.objectives import Bound, Objective
from hpsearch.studies.spec import StudySpec
from hpsearch.studies.trials import TrialRecord, trial_record

__all__ = ["ParetoFront", "front_trials", "hypervolume", "pareto_front", "pick"]


class ParetoFront(BaseModel):
    """A study's Pareto front: its trials (by the first objective, best first), the
    hypervolume they dominate and the reference point it is measured against."""

    name: str
    objectives: list[Objective]
    trials: list[TrialRecord]
    hypervolume: float | None = Field(
        description="The volume the front dominates up to `reference_point` (null with fewer "
        "than two complete feasible trials)."
    )
    reference_point: list[float] | None = Field(
        description="Each objective's worst value among the complete feasible trials."
    )
    complete: int = Field(description="Complete feasible trials the front was chosen from.")


def _feasible(trial: FrozenTrial) -> bool:
    return all(v <= 0 for v in trial.constraints.values())


def front_trials(
    complete: Sequence[FrozenTrial], directions: Sequence[StudyDirection]
) -> list[FrozenTrial]:
    """The non-dominated trials of ``complete`` (complete, feasible trials; one objective: the
    best), ordered by the first objective, best first, ties to the earlier trial."""
    sign = -1.0 if directions[0] == StudyDirection.MAXIMIZE else 1.0
    ranked = sorted(complete, key=lambda t: (sign * t.values[0], t.number))
    if len(directions) == 1:
        return ranked[:1]
    front = {t.number for t in _get_pareto_front_trials_by_trials(ranked, directions)}
    return [t for t in ranked if t.number in front]


def hypervolume(
    front: Sequence[FrozenTrial],
    complete: Sequence[FrozenTrial],
    directions: Sequence[StudyDirection],
) -> tuple[float | None, list[float] | None]:
    """The hypervolume of ``front`` against the nadir of ``complete`` (both as values in each
    objective's own direction), and that reference point; ``(None, None)`` with fewer than two
    complete trials."""
    finite = [t for t in complete if all(math.isfinite(v) for v in t.values)]
    numbers = {t.number for t in finite}
    points = [t for t in front if t.number in numbers]
    if len(finite) < 2 or not points:
        return None, None
    signs = np.array([-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in directions])
    nadir = (np.array([t.values for t in finite], dtype=float) * signs).max(axis=0)
    losses = np.array([t.values for t in points], dtype=float) * signs
    volume = optuna._hypervolume.compute_hypervolume(losses, nadir, assume_pareto=True)
    return float(volume), [float(v) for v in nadir * signs]


def pareto_front(
    storage: optuna.storages.BaseStorage, name: str, *, found: FoundStudy | None = None
) -> ParetoFront:
    """The Pareto front of hpsearch study ``name`` (a single-objective study: its best), from
    one read of its complete trials; ``found`` saves the lookup when the caller has it."""
    found = found or find_study(storage, name)
    spec = StudySpec.model_validate(found.spec_json)
    directions = storage.get_study_directions(found.study_id)
    done = storage.get_all_trials(found.study_id, deepcopy=False, states=(TrialState.COMPLETE,))
    complete = [t for t in done if _feasible(t)]
    front = front_trials(complete, directions)
    objectives = spec.objectives or [Objective(metric=spec.metric, direction=spec.direction)]
    volume, reference = (None, None)
    if len(directions) > 1:
        volume, reference = hypervolume(front, complete, directions)
    return ParetoFront(
        name=name,
        objectives=objectives,
        trials=[trial_record(t) for t in front],
        hypervolume=volume,
        reference_point=reference,
        complete=len(complete),
    )


def pick(front: ParetoFront, limits: Mapping[str, Bound] | None = None) -> TrialRecord:
    """The front's trial best in the first objective among those whose objective values (and
    recorded metrics) meet ``limits``; raises :class:`SpecError` when none does."""
    names = [o.metric for o in front.objectives]
    for record in front.trials:  # best in the first objective first
        own = record.values if record.values is not None else [record.value]
        values: dict[str, Any] = dict(zip(names, own, strict=False))
        values = {**(record.metrics or {}), **values}
        if all(
            values.get(name) is not None and bound.violation(float(values[name])) <= 0
            for name, bound in (limits or {}).items()
        ):
            return record
    said = ", ".join(f"{k} {b.describe()}" for k, b in (limits or {}).items())
    raise SpecError(
        f"no trial of the front of {front.name!r} has {said or 'a value'}; loosen the limits"
    )
