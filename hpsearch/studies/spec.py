"""The study spec: what a user submits, its models, and the validation that resolves it.

:func:`resolve_spec` turns a spec as submitted (a bundled space's name or an inline space, the
defaults left out) into the self-contained spec stored with the study: the space inline, the
task family, the metric, the direction and the name filled in, every field checked against the
space, the task family's trainer and the input caps (:mod:`hpsearch.studies.limits`).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from hpsearch.data_roots import bundled_for, check_spec_paths
from hpsearch.errors import SpaceError, SpecError
from hpsearch.families import (
    FAMILY_METRICS,
    METRICS,
    TASK_FAMILIES,
    USER_OBJECTIVE_FAMILY,
    TaskSpec,
    default_metric,
)
from hpsearch.spaces import SearchSpace, load_space
from hpsearch.spaces.loading import describe_space_error
from hpsearch.spaces.messages import plain_errors
from hpsearch.strategy import PRUNERS, STRATEGIES, grid_size, make_pruner
from hpsearch.studies.checks import check_bundled_task
from hpsearch.studies.objectives import Bound, Objective
from hpsearch.studies.limits import (
    MAX_BUDGET_SECONDS,
    MAX_BUDGET_TRIALS,
    MAX_FAILURES,
    MAX_SEED,
    check_space_knobs,
)
from hpsearch.studies.warm_start import WarmStart

__all__ = ["Budget", "PrunerSpec", "StudySpec", "resolve_spec", "validation_message"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_METRIC_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_./-]{0,63}$")


class Budget(BaseModel):
    """How much a study may spend: finished trials and/or wall-clock seconds."""

    model_config = ConfigDict(extra="forbid")

    trials: int | None = Field(default=None, ge=1, le=MAX_BUDGET_TRIALS)
    seconds: float | None = Field(
        default=None,
        gt=0,
        le=MAX_BUDGET_SECONDS,
        allow_inf_nan=False,
        description="Wall-clock seconds; finite, at most 30 days (2592000).",
    )
    max_failures: int = Field(
        default=10,
        ge=0,
        le=MAX_FAILURES,
        description="Failed trials tolerated before the study stops.",
    )

    @model_validator(mode="after")
    def _some_limit(self) -> Budget:
        if self.trials is None and self.seconds is None:
            raise ValueError("give `trials`, `seconds` or both")
        return self


class PrunerSpec(BaseModel):
    """A pruner by name, with keyword arguments for its Optuna class."""

    model_config = ConfigDict(extra="forbid")

    name: str = "median"
    args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"name": data}
        if isinstance(data, dict):  # {name: asha, reduction_factor: 2} reads better than args
            known = {"name", "args"}
            extra = {k: v for k, v in data.items() if k not in known}
            if extra:
                return {
                    "name": data.get("name", "median"),
                    "args": {**data.get("args", {}), **extra},
                }
        return data

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in PRUNERS:
            raise ValueError(f"unknown pruner {name!r}; choose one of {', '.join(PRUNERS)}")
        return name


class StudySpec(BaseModel):
    """What `hpsearch submit` and `POST /studies` take: see DESIGN.md's contract.

    ``space`` is a bundled space name or an inline space; once resolved it is always inline.
    """

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    space: str | SearchSpace = "demo"
    task: TaskSpec = Field(default_factory=TaskSpec)
    metric: str = Field(
        default="",
        max_length=64,
        description="The metric to optimize; when empty, the task family's default "
        "(val_accuracy for classification, val_rmse for regression). A study of your own "
        "function (task family `custom`) names its metric freely, with its `direction`.",
    )
    direction: Literal["maximize", "minimize"] | None = None
    objectives: list[Objective] = Field(
        default_factory=list,
        max_length=8,
        description="Several metrics to optimize at once, each with its direction: a list of "
        "{metric, direction} or {val_accuracy: maximize, latency_ms: minimize}. The first is "
        "also `metric`. Empty: the one `metric`.",
    )
    constraints: dict[str, Bound] = Field(
        default_factory=dict,
        max_length=16,
        description="Bounds on metrics, e.g. {params: {max: 2.0e6}, latency_ms: {max: 5}}; a "
        "trial that breaks one ends pruned as infeasible (before its first epoch when the "
        "metric is known before training).",
    )
    budget: Budget = Field(default_factory=lambda: Budget(trials=50))
    strategy: str = "impact"
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    fixed: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = Field(
        default=None,
        ge=0,
        le=MAX_SEED,
        description="Seeds the sampler; trial n trains with seed + n. 0 to 2**32 - 1.",
    )
    warm_start: WarmStart | None = Field(
        default=None,
        description="Run the best complete trials of another study first (their params that "
        "this space has); configs that do not fit this space are skipped.",
    )
    created_at: AwareDatetime | None = Field(
        default=None, description="Set by hpsearch when the study is created; not an input."
    )

    @model_validator(mode="before")
    @classmethod
    def _inline_space(cls, data: Any) -> Any:
        # An inline space for your own function needs neither `name` nor `task` (it takes the
        # spec's task.family, else `custom`); its problems are said per parameter and field.
        if not isinstance(data, dict) or not isinstance(data.get("space"), dict):
            return data
        space = dict(data["space"])
        task = data.get("task")
        family = task.get("family") if isinstance(task, dict) else getattr(task, "family", None)
        if "task" not in space:
            space["task"] = family if isinstance(family, str) and family else USER_OBJECTIVE_FAMILY
        if "name" not in space:
            name = data.get("name")
            space["name"] = name if isinstance(name, str) and name else "inline"
        try:
            return {**data, "space": SearchSpace.model_validate(space)}
        except ValidationError as e:
            raise ValueError(describe_space_error(e, "space")) from None

    @field_validator("objectives", mode="before")
    @classmethod
    def _objectives_shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict):  # {val_accuracy: maximize, latency_ms: minimize}
            return [{"metric": k, "direction": v} for k, v in data.items()]
        if isinstance(data, list):  # [val_accuracy, {metric: latency_ms}]
            return [{"metric": o} if isinstance(o, str) else o for o in data]
        return data

    @field_validator("objectives")
    @classmethod
    def _objective_names(cls, objectives: list[Objective]) -> list[Objective]:
        names = [o.metric for o in objectives]
        for name in names:
            _metric_name(name)
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"objective {twice[0]!r} is named twice; name each metric once")
        return objectives

    @field_validator("constraints")
    @classmethod
    def _constraint_names(cls, constraints: dict[str, Bound]) -> dict[str, Bound]:
        for name in constraints:
            _metric_name(name)
        return constraints

    @property
    def multi_objective(self) -> bool:
        """Whether the study optimizes several metrics (a Pareto front, not one best)."""
        return len(self.objectives) > 1

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str | None) -> str | None:
        if name is not None and not _NAME_RE.match(name):
            raise ValueError(
                f"study name {name!r} must start with a letter or digit and use only letters, "
                "digits, '.', '_' and '-' (at most 128 characters)"
            )
        return name

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, strategy: str) -> str:
        if strategy not in STRATEGIES:
            raise ValueError(
                f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}"
            )
        return strategy

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        return _metric_name(metric) if metric else metric

    @property
    def search_space(self) -> SearchSpace:
        """The inline space (only on a resolved spec)."""
        assert isinstance(self.space, SearchSpace), "resolve the spec first"
        return self.space


#: Strategies whose sampler cannot optimize several objectives at once.
_SINGLE_OBJECTIVE_STRATEGIES = ("tiers", "cmaes")
#: Pruners that can judge a trade-off of several objectives.
_MULTI_OBJECTIVE_PRUNERS = ("none", "pareto")


def _direction(family: str, metric: str, given: str | None) -> Literal["maximize", "minimize"]:
    """The direction of ``metric`` for ``family``: the known one (``given`` must agree), or
    ``given`` for a metric of the user's own function; raises :class:`SpecError`."""
    reported = FAMILY_METRICS.get(family, tuple(METRICS))
    if family == USER_OBJECTIVE_FAMILY and metric not in METRICS:
        # Your own function's metric: only you know which way is better.
        if given is None:
            raise SpecError(
                f"metric {metric!r} is your function's own: say which way is better with "
                "`direction: maximize` or `direction: minimize`"
            )
        return "maximize" if given == "maximize" else "minimize"
    known = METRICS.get(metric, "minimize")
    if metric not in reported:
        raise SpecError(
            f"metric {metric!r} is not reported for {family}: use metric "
            f"{' or '.join(reported)} for {family}"
        )
    if given is not None and given != known:
        raise SpecError(
            f"direction {given!r} contradicts metric {metric!r}, which is better when "
            f"{'higher' if known == 'maximize' else 'lower'}: "
            f"use direction {known!r} or leave it out"
        )
    return known


def _metric_name(metric: str) -> str:
    # Any name for your own function (checked against the family in resolve_spec): it
    # labels the dashboard's axis and the CLI's columns, so it is a plain word.
    if not _METRIC_RE.match(metric):
        raise ValueError(
            f"metric {metric!r} must start with a letter and use only letters, digits, "
            "'_', '.', '-' and '/' (at most 64 characters), e.g. val_f1"
        )
    return metric


def validation_message(e: ValidationError) -> str:
    """A pydantic error as one problem a line, the path as the user wrote it (no union labels)."""
    return "\n".join(plain_errors(e.errors()))


def resolve_spec(spec: StudySpec | dict[str, Any], *, allow_space_paths: bool = True) -> StudySpec:
    """Validate a spec against its space and fill every default; raises :class:`SpecError`.

    The result is self-contained (the space inline, the task family, the direction, the name),
    which is what is stored with the study. ``allow_space_paths=False`` refuses a space given
    as a file path (the service must not read files named by its clients).
    """
    if not isinstance(spec, StudySpec):
        try:
            spec = StudySpec.model_validate(spec)
        except ValidationError as e:
            raise SpecError(f"invalid study spec: {validation_message(e)}") from e
    if spec.created_at is not None:
        raise SpecError("created_at is set by hpsearch when the study is created; leave it out")
    try:
        if isinstance(spec.space, SearchSpace):
            space = spec.space
        else:
            space = load_space(spec.space, allow_paths=allow_space_paths)
        fixed = space.check_fixed(spec.fixed)
    except SpaceError as e:
        raise SpecError(str(e)) from e
    family = spec.task.family or space.task
    if family != space.task:
        raise SpecError(
            f"task.family {family!r} does not match space {space.name!r}, "
            f"which is for {space.task!r}"
        )
    task = spec.task
    if "dataset" not in task.model_fields_set and family in TASK_FAMILIES:
        task = task.model_copy(update={"dataset": bundled_for(family)[0]})  # tones for audio
    check_spec_paths(task)  # the workers check their data roots again
    check_bundled_task(task, family)  # a bundled name's typo, a target it cannot have
    if family == USER_OBJECTIVE_FAMILY:
        pass  # the workers' own function (--objective) takes whatever parameters it names
    elif family not in TASK_FAMILIES:
        known = ", ".join([*TASK_FAMILIES, USER_OBJECTIVE_FAMILY])
        raise SpecError(f"unknown task family {family!r}; known: {known}")
    elif not TASK_FAMILIES[family]:
        raise SpecError(
            f"space {space.name!r} is for {family!r}, which this version's trainer cannot train "
            f"yet; trainable families: {', '.join(f for f, ok in TASK_FAMILIES.items() if ok)}"
        )
    else:
        check_space_knobs(space, family, fixed)  # the knobs its trainer realizes, within caps
    if (
        "transfer.pretrained" in space.params
        and spec.task.pretrained_weights is None
        and fixed.get("transfer.pretrained", True) is not False
    ):
        raise SpecError(
            f"space {space.name!r} searches transfer.pretrained, which needs "
            "task.pretrained_weights (a weights file on the workers' machines, or 'hub'); "
            "give it, or add `fixed: {transfer.pretrained: false}`"
        )
    if spec.strategy == "grid":  # each point runs once: the grid's size caps the trial budget
        spec = spec.model_copy(update={"budget": _grid_budget(spec, space, fixed)})
    metric, direction, objectives, pruner = _objectives_and_pruner(spec, family)
    try:
        make_pruner(pruner.name, epochs=spec.task.epochs, **pruner.args)
    except ValueError as e:
        raise SpecError(f"pruner: {e}") from e
    now = dt.datetime.now(dt.UTC)
    name = spec.name or f"{space.name}-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    return spec.model_copy(
        update={
            "name": name,
            "space": space,
            "task": task.model_copy(update={"family": family}),
            "metric": metric,
            "direction": direction,
            "objectives": objectives,
            "pruner": pruner,
            "fixed": fixed,
            "created_at": now,
        }
    )


def _objectives_and_pruner(
    spec: StudySpec, family: str
) -> tuple[str, Literal["maximize", "minimize"], list[Objective], PrunerSpec]:
    """The spec's metric and direction (the first objective's), its objectives (empty for
    one) and its pruner (a trade-off's default: ``pareto``), each checked against ``family``;
    its constraints checked too. Raises :class:`SpecError`."""
    if spec.objectives:
        first = spec.objectives[0]
        if spec.metric and spec.metric != first.metric:
            raise SpecError(
                f"metric {spec.metric!r} is not the first objective ({first.metric!r}): "
                "leave `metric` out when you give `objectives`"
            )
        objectives = [
            Objective(
                metric=o.metric,
                direction=_direction(
                    family, o.metric, o.direction or (spec.direction if i == 0 else None)
                ),
            )
            for i, o in enumerate(spec.objectives)
        ]
    else:
        metric = spec.metric or default_metric(family)
        objectives = [
            Objective(metric=metric, direction=_direction(family, metric, spec.direction))
        ]
    metric, direction = objectives[0].metric, objectives[0].direction or "minimize"
    if len(objectives) == 1:
        objectives = []  # one objective is the plain `metric` spec
    if family != USER_OBJECTIVE_FAMILY:
        reported = FAMILY_METRICS.get(family, tuple(METRICS))
        for name in spec.constraints:
            if name not in reported:
                raise SpecError(
                    f"constraint on {name!r}: {family} does not report it; constrain one of "
                    f"{', '.join(reported)}"
                )
    pruner = spec.pruner
    if len(objectives) > 1:
        if spec.strategy in _SINGLE_OBJECTIVE_STRATEGIES:
            several = [s for s in STRATEGIES if s not in _SINGLE_OBJECTIVE_STRATEGIES]
            raise SpecError(
                f"strategy {spec.strategy!r} optimizes one metric; for {len(objectives)} "
                f"objectives use one of {', '.join(several)}"
            )
        if "pruner" not in spec.model_fields_set:  # the trainer's metrics make the vectors
            pruner = PrunerSpec(name="none" if family == USER_OBJECTIVE_FAMILY else "pareto")
        elif pruner.name not in _MULTI_OBJECTIVE_PRUNERS:
            raise SpecError(
                f"pruner {pruner.name!r} judges one metric and cannot prune a trade-off of "
                f"{len(objectives)} objectives; use pruner: "
                f"{' or '.join(_MULTI_OBJECTIVE_PRUNERS)}"
            )
    if len(objectives) <= 1 and pruner.name == "pareto":
        raise SpecError(
            "pruner 'pareto' sorts several objectives; for one metric use pruner asha "
            "(the same successive halving) or median"
        )
    return metric, direction, objectives, pruner


def _grid_budget(spec: StudySpec, space: SearchSpace, fixed: dict[str, Any]) -> Budget:
    """The trial budget of a grid study: the grid's size at most, and the whole grid when the
    spec gives no trial budget (the study ends when every point has run). Refuses a space with
    nothing to grid, and a warm start."""
    try:
        points = grid_size(space, fixed)
    except SpaceError as e:
        raise SpecError(str(e)) from e
    if spec.warm_start is not None:
        raise SpecError(
            "warm_start does not combine with strategy grid, which runs each of its "
            f"{points} points once; remove warm_start, or pick another strategy"
        )
    if "budget" not in spec.model_fields_set or spec.budget.trials is None:
        return spec.budget.model_copy(update={"trials": points})  # the whole grid
    return spec.budget.model_copy(update={"trials": min(spec.budget.trials, points)})
