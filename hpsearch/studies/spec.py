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
from hpsearch.strategy import PRUNERS, STRATEGIES, make_pruner
from hpsearch.studies.checks import check_bundled_task
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
        # Any name for your own function (checked against the family in resolve_spec): it
        # labels the dashboard's axis and the CLI's columns, so it is a plain word.
        if metric and not _METRIC_RE.match(metric):
            raise ValueError(
                f"metric {metric!r} must start with a letter and use only letters, digits, "
                "'_', '.', '-' and '/' (at most 64 characters), e.g. val_f1"
            )
        return metric

    @property
    def search_space(self) -> SearchSpace:
        """The inline space (only on a resolved spec)."""
        assert isinstance(self.space, SearchSpace), "resolve the spec first"
        return self.space


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
    metric = spec.metric or default_metric(family)
    reported = FAMILY_METRICS.get(family, tuple(METRICS))
    if family == USER_OBJECTIVE_FAMILY and metric not in METRICS:
        # Your own function's metric: only you know which way is better.
        if spec.direction is None:
            raise SpecError(
                f"metric {metric!r} is your function's own: say which way is better with "
                "`direction: maximize` or `direction: minimize`"
            )
        reported = (metric,)
        known_direction = spec.direction
    else:
        known_direction = METRICS.get(metric, "minimize")
    if metric not in reported:
        raise SpecError(
            f"metric {metric!r} is not reported for {family}: use metric "
            f"{' or '.join(reported)} for {family}"
        )
    direction = spec.direction or known_direction
    if direction != known_direction:
        raise SpecError(
            f"direction {direction!r} contradicts metric {metric!r}, which is better when "
            f"{'higher' if known_direction == 'maximize' else 'lower'}: "
            f"use direction {known_direction!r} or leave it out"
        )
    try:
        make_pruner(spec.pruner.name, epochs=spec.task.epochs, **spec.pruner.args)
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
            "fixed": fixed,
            "created_at": now,
        }
    )
