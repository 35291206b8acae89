"""Study specs and the operations on studies that the service, the workers and the CLI share.

A study is an Optuna study in the study database plus its resolved :class:`StudySpec`, stored
as a study user attribute, so that any process holding only the database URL can rebuild the
objective, the sampler and the pruner. Nothing about a study lives anywhere else.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import secrets
import warnings
from typing import Any, Literal

import optuna
from optuna.trial import FrozenTrial, TrialState
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from hpsearch.errors import (
    SpaceError,
    SpecError,
    StudyExists,
    StudyNotFound,
    TrialNotFound,
    TrialNotRunning,
)
from hpsearch.spaces import SearchSpace, load_space
from hpsearch.storage import count_trials_by_state, page_trial_ids
from hpsearch.strategy import PRUNERS, STRATEGIES, make_pruner, make_sampler
from hpsearch.tasks import FAMILY_METRICS, METRICS, TASK_FAMILIES, TaskSpec, default_metric

__all__ = [
    "Budget",
    "PrunerSpec",
    "StudySpec",
    "StudyStatus",
    "TrialRecord",
    "SPEC_ATTR",
    "resolve_spec",
    "create_study",
    "load_spec",
    "open_study",
    "list_studies",
    "study_status",
    "list_trials",
    "best_trial",
    "get_trial",
    "request_prune",
    "trial_record",
]

#: The study user attribute that holds the resolved spec.
SPEC_ATTR = "hpsearch:spec"
#: Trial user attributes hpsearch writes.
CONFIG_ATTR = "config"
FAIL_REASON_ATTR = "fail_reason"
PRUNE_REASON_ATTR = "prune_reason"
SEED_ATTR = "seed"
PRUNE_REQUEST_ATTR = "prune_requested"
WORKER_ATTR = "worker"

log = logging.getLogger("hpsearch.studies")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class Budget(BaseModel):
    """How much a study may spend: finished trials and/or wall-clock seconds."""

    model_config = ConfigDict(extra="forbid")

    trials: int | None = Field(default=None, ge=1, le=1_000_000)
    seconds: float | None = Field(default=None, gt=0)
    max_failures: int = Field(
        default=10, ge=0, description="Failed trials tolerated before the study stops."
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
        description="The metric to optimize; when empty, the task family's default "
        "(val_accuracy for classification, val_rmse for regression).",
    )
    direction: Literal["maximize", "minimize"] | None = None
    budget: Budget = Field(default_factory=lambda: Budget(trials=50))
    strategy: str = "impact"
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    fixed: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None
    created_at: AwareDatetime | None = Field(
        default=None, description="Set by hpsearch when the study is created; not an input."
    )

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
        if metric and metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        return metric

    @property
    def search_space(self) -> SearchSpace:
        """The inline space (only on a resolved spec)."""
        assert isinstance(self.space, SearchSpace), "resolve the spec first"
        return self.space


def _validation_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        where = ".".join(str(x) for x in err["loc"]) or "spec"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


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
            raise SpecError(f"invalid study spec: {_validation_message(e)}") from e
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
    if family not in TASK_FAMILIES:
        raise SpecError(f"unknown task family {family!r}; known: {', '.join(TASK_FAMILIES)}")
    if not TASK_FAMILIES[family]:
        raise SpecError(
            f"space {space.name!r} is for {family!r}, which this version's trainer cannot train "
            f"yet; trainable families: {', '.join(f for f, ok in TASK_FAMILIES.items() if ok)}"
        )
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
    if metric not in reported:
        raise SpecError(
            f"metric {metric!r} is not reported for {family}: use metric "
            f"{' or '.join(reported)} for {family}"
        )
    direction = spec.direction or METRICS[metric]
    if direction != METRICS[metric]:
        raise SpecError(
            f"direction {direction!r} contradicts metric {metric!r}, which is better when "
            f"{'higher' if METRICS[metric] == 'maximize' else 'lower'}: "
            f"use direction {METRICS[metric]!r} or leave it out"
        )
    try:
        make_pruner(spec.pruner.name, epochs=spec.task.epochs, **spec.pruner.args)
    except ValueError as e:
        raise SpecError(f"pruner: {e}") from e
    now = dt.datetime.now(dt.timezone.utc)
    name = spec.name or f"{space.name}-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    return spec.model_copy(
        update={
            "name": name,
            "space": space,
            "task": spec.task.model_copy(update={"family": family}),
            "metric": metric,
            "direction": direction,
            "fixed": fixed,
            "created_at": now,
        }
    )


def _study_id(storage: optuna.storages.BaseStorage, name: str) -> int:
    try:
        return storage.get_study_id_from_name(name)
    except KeyError as e:
        raise StudyNotFound(f"no study named {name!r}") from e


def create_study(
    storage: optuna.storages.BaseStorage,
    spec: StudySpec | dict[str, Any],
    *,
    allow_space_paths: bool = True,
) -> StudySpec:
    """Validate ``spec`` and create its study, with the resolved spec stored alongside.

    Raises :class:`SpecError` before anything is written, :class:`StudyExists` on a name clash.
    """
    spec = resolve_spec(spec, allow_space_paths=allow_space_paths)
    try:
        study = optuna.create_study(storage=storage, study_name=spec.name, direction=spec.direction)
    except optuna.exceptions.DuplicatedStudyError as e:
        raise StudyExists(f"a study named {spec.name!r} already exists; pick another name") from e
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([spec.metric])  # the dashboard labels its axes with it
    study.set_user_attr(SPEC_ATTR, spec.model_dump(mode="json"))
    return spec


def _spec_json(storage: optuna.storages.BaseStorage, name: str) -> tuple[int, dict[str, Any]]:
    # The study's id and its stored spec, unvalidated: reads that only need to know the study
    # is an hpsearch study skip validating the whole inline space.
    study_id = _study_id(storage, name)
    attrs = storage.get_study_user_attrs(study_id)
    if SPEC_ATTR not in attrs:
        raise StudyNotFound(f"study {name!r} was not created by hpsearch (it has no spec)")
    return study_id, attrs[SPEC_ATTR]


def _hpsearch_study_id(storage: optuna.storages.BaseStorage, name: str) -> int:
    return _spec_json(storage, name)[0]


def load_spec(storage: optuna.storages.BaseStorage, name: str) -> StudySpec:
    """The resolved spec stored with study ``name``."""
    return StudySpec.model_validate(_spec_json(storage, name)[1])


def open_study(
    storage: optuna.storages.BaseStorage, name: str, *, seed_offset: int = 0
) -> tuple[optuna.Study, StudySpec]:
    """The Optuna study with the sampler and pruner its spec names, and the spec.

    Keep the study for as long as you sample from it: a new sampler restarts its random
    stream. Workers pass a ``seed_offset`` of their own, so that two workers of a seeded study
    do not draw the same configs.
    """
    spec = load_spec(storage, name)
    seed = None if spec.seed is None else (spec.seed + seed_offset) % 2**32
    sampler = make_sampler(spec.strategy, spec.search_space, seed=seed, n_trials=spec.budget.trials)
    pruner = make_pruner(spec.pruner.name, epochs=spec.task.epochs, **spec.pruner.args)
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    return study, spec


class StudyStatus(BaseModel):
    """Where a study stands: trial counts, budget used, best value, whether it is done."""

    name: str
    space: str
    direction: str
    metric: str
    strategy: str
    pruner: str
    counts: dict[str, int]
    finished: int
    budget_trials: int | None
    budget_seconds: float | None
    elapsed_seconds: float
    best_value: float | None
    best_trial: int | None
    created_at: dt.datetime | None
    done: bool
    done_reason: str | None


def _elapsed(spec: StudySpec) -> float:
    if not spec.created_at:
        return 0.0
    return (dt.datetime.now(dt.timezone.utc) - spec.created_at).total_seconds()


def done_reason(spec: StudySpec, counts: dict[TrialState, int]) -> str | None:
    """Why the study takes no more trials, or ``None`` while it has budget left."""
    finished = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
    if spec.budget.trials is not None and finished >= spec.budget.trials:
        return f"{finished} of {spec.budget.trials} trials finished"
    if spec.budget.seconds is not None and _elapsed(spec) >= spec.budget.seconds:
        return f"time budget of {spec.budget.seconds:g} s spent"
    if counts[TrialState.FAIL] > spec.budget.max_failures:
        return (
            f"{counts[TrialState.FAIL]} trials failed (more than budget.max_failures="
            f"{spec.budget.max_failures}); see their fail_reason"
        )
    return None


def _best(storage: optuna.storages.BaseStorage, study_id: int) -> FrozenTrial | None:
    try:
        return storage.get_best_trial(study_id)
    except ValueError:  # no complete trial yet
        return None


def study_status(storage: optuna.storages.RDBStorage, name: str) -> StudyStatus:
    """One study's status, from one counting query and one best-trial query."""
    study_id, spec_json = _spec_json(storage, name)
    spec = StudySpec.model_validate(spec_json)
    counts = count_trials_by_state(storage, study_id)
    best = _best(storage, study_id)
    reason = done_reason(spec, counts)
    return StudyStatus(
        name=name,
        space=spec.search_space.name,
        direction=spec.direction,
        metric=spec.metric,
        strategy=spec.strategy,
        pruner=spec.pruner.name,
        counts={state.name.lower(): n for state, n in counts.items()},
        finished=counts[TrialState.COMPLETE] + counts[TrialState.PRUNED],
        budget_trials=spec.budget.trials,
        budget_seconds=spec.budget.seconds,
        elapsed_seconds=round(_elapsed(spec), 3),
        best_value=best.value if best else None,
        best_trial=best.number if best else None,
        created_at=spec.created_at,
        done=reason is not None,
        done_reason=reason,
    )


def list_studies(storage: optuna.storages.RDBStorage) -> list[StudyStatus]:
    """Every hpsearch study in the database, oldest first."""
    names = [s.study_name for s in storage.get_all_studies()]
    statuses = []
    for name in names:
        try:
            statuses.append(study_status(storage, name))
        except StudyNotFound:  # a plain Optuna study sharing the database, or just deleted
            continue
        except ValidationError as e:  # a spec that this version cannot read: skip, say so
            log.warning("study %r has an unreadable spec, skipped: %s", name, e)
    return statuses


class TrialRecord(BaseModel):
    """One trial as users see it: its resolved config, value and learning curve."""

    number: int
    state: str
    value: float | None
    config: dict[str, Any]
    params: dict[str, Any]
    intermediate_values: dict[int, float]
    datetime_start: dt.datetime | None
    datetime_complete: dt.datetime | None
    duration_seconds: float | None
    fail_reason: str | None
    prune_reason: str | None
    worker: str | None
    seed: int | None


def trial_record(trial: FrozenTrial) -> TrialRecord:
    """The user-facing view of an Optuna trial."""
    duration = trial.duration.total_seconds() if trial.duration is not None else None
    value = trial.value if trial.values is not None and len(trial.values) == 1 else None
    if value is not None and not math.isfinite(value):
        value = None
    return TrialRecord(
        number=trial.number,
        state=trial.state.name.lower(),
        value=value,
        config=trial.user_attrs.get(CONFIG_ATTR, dict(trial.params)),
        params=dict(trial.params),
        intermediate_values={
            k: v for k, v in trial.intermediate_values.items() if math.isfinite(v)
        },
        datetime_start=trial.datetime_start,
        datetime_complete=trial.datetime_complete,
        duration_seconds=duration,
        fail_reason=trial.user_attrs.get(FAIL_REASON_ATTR),
        prune_reason=trial.user_attrs.get(PRUNE_REASON_ATTR),
        seed=trial.user_attrs.get(SEED_ATTR),
        worker=trial.user_attrs.get(WORKER_ATTR),
    )


def list_trials(
    storage: optuna.storages.RDBStorage,
    name: str,
    *,
    offset: int = 0,
    limit: int = 50,
    state: str | None = None,
) -> tuple[list[TrialRecord], int]:
    """A page of a study's trials by number, optionally of one state, and the total count."""
    study_id = _hpsearch_study_id(storage, name)
    states = None
    if state is not None:
        try:
            states = (TrialState[state.upper()],)
        except KeyError as e:
            raise SpecError(
                f"unknown trial state {state!r}; use one of "
                f"{', '.join(s.name.lower() for s in TrialState)}"
            ) from e
    trial_ids, total = page_trial_ids(storage, study_id, offset=offset, limit=limit, states=states)
    return [trial_record(storage.get_trial(trial_id)) for trial_id in trial_ids], total


def best_trial(storage: optuna.storages.RDBStorage, name: str) -> TrialRecord:
    """The best complete trial of the study, with its full resolved config."""
    study_id = _hpsearch_study_id(storage, name)
    best = _best(storage, study_id)
    if best is None:
        raise TrialNotFound(f"study {name!r} has no complete trial yet")
    return trial_record(best)


def get_trial(storage: optuna.storages.BaseStorage, name: str, number: int) -> TrialRecord:
    """One trial of the study by number."""
    return trial_record(storage.get_trial(_trial_id(storage, name, number)))


def _trial_id(storage: optuna.storages.BaseStorage, name: str, number: int) -> int:
    study_id = _hpsearch_study_id(storage, name)
    try:
        return storage.get_trial_id_from_study_id_trial_number(study_id, number)
    except KeyError as e:
        raise TrialNotFound(f"study {name!r} has no trial number {number}") from e


def request_prune(storage: optuna.storages.BaseStorage, name: str, number: int) -> TrialRecord:
    """Ask the worker running trial ``number`` to prune it at its next report.

    The worker checks after each epoch's report: a request that arrives during the last epoch
    comes too late, and the trial completes.
    """
    trial_id = _trial_id(storage, name, number)
    trial = storage.get_trial(trial_id)
    if trial.state != TrialState.RUNNING:
        raise TrialNotRunning(
            f"trial {number} of study {name!r} is {trial.state.name.lower()}, not running: "
            "only a running trial can be pruned"
        )
    try:
        storage.set_trial_user_attr(trial_id, PRUNE_REQUEST_ATTR, True)
    except RuntimeError as e:  # it finished between the read and the write
        raise TrialNotRunning(f"trial {number} of study {name!r} finished meanwhile") from e
    return trial_record(storage.get_trial(trial_id))


def prune_requested(storage: optuna.storages.BaseStorage, trial_id: int) -> bool:
    """Whether someone asked to prune this trial (the worker checks after each report)."""
    return bool(storage.get_trial_user_attrs(trial_id).get(PRUNE_REQUEST_ATTR))
