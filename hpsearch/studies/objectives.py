"""Several objectives and constraints: what a spec's ``objectives`` and ``constraints`` mean.

A spec names one metric (``metric``, ``direction``) or several (``objectives``: a list of
``{metric, direction}``, or the shorthand ``{val_accuracy: maximize, latency_ms: minimize}``).
The first objective is also the spec's ``metric``: single-objective readers keep working.

``constraints`` bound metrics: ``{params: {max: 2.0e6}, latency_ms: {max: 5}}``. A trial that
breaks one ends **pruned** with the reason in its ``infeasible`` attribute: a constraint on a
cost the trainer knows before training (``params``, ``size_mb``, ``latency_ms``) ends the trial
before its first epoch, the others at the report that breaks them. The samplers learn from it: the
worker sets each constraint's value on the trial (``Trial.set_constraint``, > 0 when broken,
scaled by the bound), which Optuna's samplers read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import optuna
from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from hpsearch.studies.spec import StudySpec

__all__ = [
    "INFEASIBLE_ATTR",
    "METRICS_ATTR",
    "Bound",
    "Infeasible",
    "Objective",
    "constraint_values",
    "objective_values",
    "spec_directions",
    "violations",
]

#: A trial's final metrics (every one its trainer or function reported), for constraints.
METRICS_ATTR = "metrics"
#: Why a trial broke a constraint (it ended pruned).
INFEASIBLE_ATTR = "infeasible"

Direction = Literal["maximize", "minimize"]


class Objective(BaseModel):
    """One metric to optimize, with the direction that improves it (known metrics infer it)."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(min_length=1, max_length=64)
    direction: Direction | None = None


class Bound(BaseModel):
    """A metric's feasible range: ``min``, ``max`` or both (inclusive)."""

    model_config = ConfigDict(extra="forbid")

    min: float | None = Field(default=None, allow_inf_nan=False)
    max: float | None = Field(default=None, allow_inf_nan=False)

    @model_validator(mode="after")
    def _some_bound(self) -> Bound:
        if self.min is None and self.max is None:
            raise ValueError("give `min`, `max` or both, e.g. {max: 5}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self

    def violation(self, value: float) -> float:
        """How far ``value`` is outside the bound, relative to it (0 inside, > 0 outside)."""
        if not math.isfinite(value):
            return math.inf
        out = 0.0
        if self.max is not None and value > self.max:
            out = (value - self.max) / max(abs(self.max), 1e-12)
        if self.min is not None and value < self.min:
            out = max(out, (self.min - value) / max(abs(self.min), 1e-12))
        return out

    def describe(self) -> str:
        if self.min is not None and self.max is not None:
            return f"in [{self.min:g}, {self.max:g}]"
        return f"<= {self.max:g}" if self.max is not None else f">= {self.min:g}"


class Infeasible(optuna.TrialPruned):
    """A trial broke a constraint: it ends pruned, with the reason kept."""


def violations(constraints: Mapping[str, Bound], metrics: Mapping[str, float]) -> list[str]:
    """The constraints ``metrics`` break (those it has), one phrase each."""
    out = []
    for name, bound in constraints.items():
        if name in metrics and bound.violation(float(metrics[name])) > 0:
            out.append(f"{name} {float(metrics[name]):.4g} is not {bound.describe()}")
    return out


def constraint_values(
    constraints: Mapping[str, Bound], metrics: Mapping[str, float]
) -> dict[str, float]:
    """Optuna's constraint values for ``metrics``, by metric: > 0 when broken (relative to
    the bound, at most 1e12); a metric the trial never reported counts as kept (0)."""
    return {
        name: min(bound.violation(float(metrics[name])), 1e12) if name in metrics else 0.0
        for name, bound in constraints.items()
    }


def spec_directions(spec: StudySpec) -> list[Direction]:
    """The study's directions, one per objective (a resolved spec)."""
    given = [o.direction for o in spec.objectives] or [spec.direction]
    return [d or "minimize" for d in given]


def objective_values(spec: StudySpec, result: float | Mapping[str, Any]) -> list[float]:
    """The values to tell Optuna: one per objective, from what the trial returned (a number
    for a single objective, else a mapping of metric names)."""
    names = [o.metric for o in spec.objectives] or [spec.metric]
    if not isinstance(result, Mapping):
        if len(names) > 1:
            raise TypeError(
                f"the study has {len(names)} objectives ({', '.join(names)}): the function must "
                "return a dict of them, e.g. {" + ", ".join(f"'{n}': ..." for n in names) + "}"
            )
        return [float(result)]
    missing = [n for n in names if n not in result]
    if missing:
        raise KeyError(
            f"the trial returned {sorted(result)} but the study's objectives need "
            f"{', '.join(missing)}"
        )
    return [float(result[n]) for n in names]
