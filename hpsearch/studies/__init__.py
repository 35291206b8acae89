"""Study specs and the operations on studies that the service, the workers and the CLI share.

A study is an Optuna study in the study database plus its resolved :class:`StudySpec`, stored
as a study user attribute, so that any process holding only the database URL can rebuild the
objective, the sampler and the pruner. Nothing about a study lives anywhere else.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import re
import secrets
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import optuna
import sqlalchemy
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

from hpsearch.data_roots import bundled_for, check_spec_paths
from hpsearch.errors import (
    HpsearchError,
    SpaceError,
    SpecError,
    StudyExists,
    StudyNotFound,
    TrialNotFound,
    TrialNotRunning,
)
from hpsearch.db.fleet import live_workers
from hpsearch.studies.limits import (
    MAX_BUDGET_SECONDS,
    MAX_BUDGET_TRIALS,
    MAX_FAILURES,
    MAX_SEED,
    check_space_knobs,
)
from hpsearch.analysis.misfit import PriorMisfit, spec_prior_check
from hpsearch.spaces import SearchSpace, load_space
from hpsearch.spaces.loading import describe_space_error
from hpsearch.db.storage import (
    RETRY_OF_ATTR,
    count_trials_by_state,
    page_trial_ids,
    study_lock,
)
from hpsearch.strategy import PRUNERS, STRATEGIES, make_pruner, make_sampler
from hpsearch.studies.history import (
    FAILED_ATTR,
    HISTORY_ATTR,
    StudyChange,
    StudyFailure,
    append_change,
    clear_failure,
    fail_study,
    failure_and_history,
    parse_failure,
    parse_history,
    study_failure,
)
from hpsearch.studies.checks import check_bundled_task, did_you_mean
from hpsearch.families import (
    FAMILY_METRICS,
    METRICS,
    TASK_FAMILIES,
    USER_OBJECTIVE_FAMILY,
    TaskSpec,
    default_metric,
)
from hpsearch.db.timestamps import UtcDatetime
from hpsearch.db.reads import load_trials
from hpsearch.db.stats import TrialStats, trial_stats
from hpsearch.spaces.messages import plain_errors
from hpsearch.studies.warm_start import (
    WarmStart,
    WarmStartReport,
    check_configs,
    enqueue_params,
    warm_start_params,
)

__all__ = [
    "FAILED_ATTR",
    "HISTORY_ATTR",
    "PATCHABLE",
    "SPEC_ATTR",
    "STOPPED_ATTR",
    "Budget",
    "PrunerSpec",
    "PruningSummary",
    "StudyBusy",
    "StudyChange",
    "StudyFailure",
    "StudySpec",
    "StudyState",
    "StudyStatus",
    "TrialRecord",
    "best_trial",
    "best_trial_id",
    "create_study",
    "delete_study",
    "done_reason",
    "enqueue_configs",
    "fail_study",
    "failed_reason",
    "get_trial",
    "is_stopped",
    "list_studies",
    "list_trials",
    "load_spec",
    "open_study",
    "page_studies",
    "patch_study",
    "request_prune",
    "resolve_spec",
    "resume_study",
    "set_pruner",
    "stop_study",
    "study_failure",
    "study_states",
    "study_status",
    "trial_record",
]

#: The study user attribute that holds the resolved spec.
SPEC_ATTR = "hpsearch:spec"
#: The study system attribute set (to an ISO timestamp) while the study is stopped.
STOPPED_ATTR = "hpsearch:stopped"
#: The study system attribute holding what the spec's warm start enqueued (a WarmStartReport).
WARM_START_ATTR = "hpsearch:warm_start"
#: Trial user attributes hpsearch writes.
CONFIG_ATTR = "config"
FAIL_REASON_ATTR = "fail_reason"
#: A user objective's traceback when it raised (at most MAX_TRACEBACK_CHARS, its end kept).
FAIL_TRACEBACK_ATTR = "fail_traceback"
PRUNE_REASON_ATTR = "prune_reason"
SEED_ATTR = "seed"
PRUNE_REQUEST_ATTR = "prune_requested"
WORKER_ATTR = "worker"

log = logging.getLogger("hpsearch.studies")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_METRIC_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_./-]{0,63}$")

#: ``failed``: a worker met an error that recurs on every trial (see :mod:`hpsearch.studies.history`).
StudyState = Literal["open", "stopped", "done", "failed"]


class StudyBusy(HpsearchError):
    """The study has running trials, so it cannot be deleted without ``force``."""


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


def _validation_message(e: ValidationError) -> str:
    # One problem a line, the path as the user wrote it (no pydantic union labels).
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
    warm: tuple[list[dict[str, Any]], list[str]] | None = None
    if spec.warm_start is not None:  # read and check the source before anything is written
        if spec.warm_start.study == spec.name:
            raise SpecError(f"warm_start.study {spec.name!r} is the study itself; name another")
        warm = warm_start_params(storage, spec.warm_start, spec.search_space, spec.fixed)
    try:
        study = optuna.create_study(storage=storage, study_name=spec.name, direction=spec.direction)
    except optuna.exceptions.DuplicatedStudyError as e:
        raise StudyExists(f"a study named {spec.name!r} already exists; pick another name") from e
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([spec.metric])  # the dashboard labels its axes with it
    if warm is not None:  # waiting trials first: a worker that sees the spec finds them queued
        assert spec.warm_start is not None
        params_list, notes = warm
        enqueued = enqueue_params(storage, study, study._study_id, params_list)
        for note in notes:
            log.warning("study %s: warm start skipped %s", spec.name, note)
        report = WarmStartReport(source=spec.warm_start.study, enqueued=enqueued, skipped=notes)
        storage.set_study_system_attr(study._study_id, WARM_START_ATTR, report.model_dump())
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


class PruningSummary(BaseModel):
    """What pruning saved: trials cut short, and the epochs they did not train."""

    pruned: int = 0
    epochs_saved: int = Field(
        default=0,
        description="Sum over pruned trials of task.epochs minus the last reported epoch.",
    )


class StudyStatus(BaseModel):
    """Where a study stands: trial counts, budget used, best value, whether it takes trials.

    ``state`` is ``failed`` once a worker met an error that recurs on every trial (``failure``
    says which; change the study with :func:`patch_study` to continue it), else ``done`` once
    the budget is spent (or too many trials failed), else ``stopped`` while a user has stopped
    it, else ``open``; ``done`` is true in the first three cases (the study takes no new
    trials) and ``done_reason`` says why. ``history`` lists the changes made to the study.

    ``eta_seconds`` = max(0, budget.trials - finished) x mean duration of the finished
    (complete or pruned) trials / max(1, running trials), capped by the time budget left; 0 once
    done, ``None`` while stopped, without a trial budget, or before any trial finished.
    ``pruning.epochs_saved`` = sum over pruned trials of max(0, task.epochs - last reported
    epoch). ``workers`` counts live workers running one of its trials now.
    """

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
    created_at: UtcDatetime | None
    done: bool
    done_reason: str | None
    state: StudyState = "open"
    stopped_at: UtcDatetime | None = None
    eta_seconds: float | None = Field(
        default=None,
        description="Remaining trials x mean duration of finished trials / max(1, running); "
        "None without a trial budget or before a trial finished.",
    )
    pruning: PruningSummary = Field(default_factory=PruningSummary)
    workers: int = Field(default=0, description="Live workers running a trial of this study.")
    warm_start: WarmStartReport | None = None
    failure: StudyFailure | None = Field(
        default=None, description="Why the study failed (state `failed`), else null."
    )
    history: list[StudyChange] = Field(
        default_factory=list, description="The changes made to the study, oldest first."
    )
    prior_misfit: PriorMisfit | None = Field(
        default=None,
        description="Where the study's finished trials disagree with the checklist's impact "
        "tiers (PED-ANOVA importance, checked at 15, 25, 35, ... finished trials, on the latest "
        "300 at most), with the numbers; null while they agree, before 15 trials finished, for "
        "strategies that do not use the checklist, and in listings (only the status of one "
        "study has it).",
    )


def _elapsed(spec: StudySpec) -> float:
    if not spec.created_at:
        return 0.0
    return (dt.datetime.now(dt.UTC) - spec.created_at).total_seconds()


def done_reason(
    spec: StudySpec,
    counts: dict[TrialState, int],
    *,
    stopped: bool = False,
    retries: int = 0,
    failure: StudyFailure | None = None,
) -> str | None:
    """Why the study takes no more trials, or ``None`` while it has budget left.

    A ``failure`` (see :func:`study_failure`) comes first: nothing else reopens the study.

    ``stopped`` (see :func:`is_stopped`) makes a study with budget left take none; a spent
    budget is given as the reason first, since resuming would not reopen it. ``retries``: how
    many trials are retries of failed ones (a killed or stopped worker's trial, run again):
    those failures cost no trial, so they do not count towards ``budget.max_failures``.
    """
    if failure is not None:
        return failed_reason(spec.name or "NAME", failure)
    finished = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
    if spec.budget.trials is not None and finished >= spec.budget.trials:
        return f"{finished} of {spec.budget.trials} trials finished"
    if spec.budget.seconds is not None and _elapsed(spec) >= spec.budget.seconds:
        return f"time budget of {spec.budget.seconds:g} s spent"
    failures = counts[TrialState.FAIL] - retries
    if failures > spec.budget.max_failures:
        return (
            f"{failures} trials failed (more than budget.max_failures="
            f"{spec.budget.max_failures}); see their fail_reason"
        )
    if stopped:
        return f"stopped by a user; resume it with `hpsearch resume {spec.name}`"
    return None


def failed_reason(name: str, failure: StudyFailure) -> str:
    """The one line that says why a failed study takes no trials, and how to continue it."""
    at = f" at trial {failure.trial}" if failure.trial is not None else ""
    # One worker's setup (its data roots, its mounts) may be the cause: say which worker.
    seen = f" (on worker {failure.worker})" if failure.worker else ""
    if failure.reason.startswith(("ModuleNotFoundError", "ImportError")):
        # The user's own function could not import what it needs: no task change fixes it.
        return (
            f"failed{at}: {failure.reason}{seen} -- fix your function's imports, then "
            f"`hpsearch resume {name}`"
        )
    return (
        f"failed{at}: {failure.reason}{seen} -- fix it and continue with `hpsearch extend {name} "
        f"--dataset ... --target ...` (PATCH /studies/{name}), or `hpsearch resume {name}` "
        "once the data is in place"
    )


def _stopped_at(system_attrs: dict[str, Any]) -> dt.datetime | None:
    stamp = system_attrs.get(STOPPED_ATTR)
    return dt.datetime.fromisoformat(stamp) if stamp else None


def is_stopped(storage: optuna.storages.BaseStorage, study_id: int) -> bool:
    """Whether a user stopped the study (it takes no new trials until resumed); one query."""
    return _stopped_at(storage.get_study_system_attrs(study_id)) is not None


@dataclass
class _StudyRow:
    """What a study's state needs, read in bulk: its spec, trial counts and system attributes."""

    study_id: int
    name: str
    spec: StudySpec
    counts: dict[TrialState, int]
    system_attrs: dict[str, Any]
    retries: int  # trials that retry a failed one (storage.count_retries)
    failure: StudyFailure | None = None  # hpsearch.studies.history
    history: list[StudyChange] = dataclasses.field(default_factory=list)

    @property
    def stopped_at(self) -> dt.datetime | None:
        return _stopped_at(self.system_attrs)

    @property
    def budget_reason(self) -> str | None:
        return done_reason(self.spec, self.counts, retries=self.retries)

    @property
    def state(self) -> StudyState:
        if self.failure is not None:
            return "failed"
        if self.budget_reason is not None:
            return "done"
        return "stopped" if self.stopped_at is not None else "open"


def _eta_seconds(row: _StudyRow, mean: float | None) -> float | None:
    if row.state in ("done", "failed"):
        return 0.0
    if row.state == "stopped" or mean is None or row.spec.budget.trials is None:
        return None
    finished = row.counts[TrialState.COMPLETE] + row.counts[TrialState.PRUNED]
    remaining = max(0, row.spec.budget.trials - finished)
    eta = remaining * mean / max(1, row.counts[TrialState.RUNNING])
    if row.spec.budget.seconds is not None:  # the time budget ends the study first
        eta = min(eta, max(0.0, row.spec.budget.seconds - _elapsed(row.spec)))
    return round(eta, 3)


def _stats(storage: optuna.storages.RDBStorage, row: _StudyRow) -> TrialStats:
    return trial_stats(storage, row.study_id, epochs=row.spec.task.epochs)


def _status(
    storage: optuna.storages.RDBStorage, row: _StudyRow, *, workers: int, stats: TrialStats
) -> StudyStatus:
    """A study's full status from its row and its trial statistics (:mod:`hpsearch.db.stats`)."""
    spec = row.spec
    stopped_at = row.stopped_at
    reason = done_reason(
        spec,
        row.counts,
        stopped=stopped_at is not None,
        retries=row.retries,
        failure=row.failure,
    )
    warm = row.system_attrs.get(WARM_START_ATTR)
    return StudyStatus(
        name=row.name,
        space=spec.search_space.name,
        direction=spec.direction,
        metric=spec.metric,
        strategy=spec.strategy,
        pruner=spec.pruner.name,
        counts={state.name.lower(): n for state, n in row.counts.items()},
        finished=row.counts[TrialState.COMPLETE] + row.counts[TrialState.PRUNED],
        budget_trials=spec.budget.trials,
        budget_seconds=spec.budget.seconds,
        elapsed_seconds=round(_elapsed(spec), 3),
        best_value=stats.best_value,
        best_trial=stats.best_number,
        created_at=spec.created_at,
        done=reason is not None,
        done_reason=reason,
        state=row.state,
        stopped_at=stopped_at,
        eta_seconds=_eta_seconds(row, stats.mean_seconds),
        pruning=PruningSummary(pruned=stats.pruned, epochs_saved=stats.epochs_saved),
        workers=workers,
        warm_start=WarmStartReport.model_validate(warm) if warm else None,
        failure=row.failure,
        history=row.history,
    )


def study_status(storage: optuna.storages.RDBStorage, name: str) -> StudyStatus:
    """One study's status: a few small queries once the process has read the study before
    (:mod:`hpsearch.db.stats` reads only the trials that changed since)."""
    study_id, spec, stats = _spec_stats(storage, name)
    failure, history = failure_and_history(storage, study_id)
    row = _StudyRow(
        study_id=study_id,
        name=name,
        spec=spec,
        counts=stats.counts,
        system_attrs=storage.get_study_system_attrs(study_id),
        retries=stats.retries,
        failure=failure,
        history=history,
    )
    status = _status(storage, row, workers=len(live_workers(storage, study=name)), stats=stats)
    check = spec_prior_check(storage, study_id, spec, finished=status.finished)
    status.prior_misfit = check.misfit if check is not None else None
    return status


def _prefix_filter(prefix: str | None) -> tuple[str, dict[str, Any]]:
    # LIKE narrows with the wildcards escaped; substr makes it exact (SQLite's LIKE ignores case).
    if not prefix:
        return "1 = 1", {}
    like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    clause = (
        "s.study_name LIKE :like ESCAPE '\\' AND substr(s.study_name, 1, :prefix_len) = :prefix"
    )
    return clause, {"like": like, "prefix": prefix, "prefix_len": len(prefix)}


def _study_rows(storage: optuna.storages.RDBStorage, *, prefix: str | None) -> list[_StudyRow]:
    """Every hpsearch study whose name starts with ``prefix``, oldest first, in four queries."""
    where, params = _prefix_filter(prefix)
    specs_q = sqlalchemy.text(
        "SELECT s.study_id, s.study_name, a.value_json, f.value_json, h.value_json FROM studies s "
        "JOIN study_user_attributes a ON a.study_id = s.study_id AND a.key = :spec_key "
        "LEFT JOIN study_user_attributes f ON f.study_id = s.study_id AND f.key = :failed_key "
        "LEFT JOIN study_user_attributes h ON h.study_id = s.study_id AND h.key = :history_key "
        f"WHERE {where} ORDER BY s.study_id"
    )
    counts_q = sqlalchemy.text(
        "SELECT t.study_id, t.state, COUNT(*) FROM trials t "
        f"JOIN studies s ON s.study_id = t.study_id WHERE {where} GROUP BY t.study_id, t.state"
    )
    attrs_q = sqlalchemy.text(
        "SELECT a.study_id, a.key, a.value_json FROM study_system_attributes a "
        f"JOIN studies s ON s.study_id = a.study_id WHERE {where} "
        "AND a.key IN (:stopped_key, :warm_key)"
    )
    retries_q = sqlalchemy.text(
        "SELECT t.study_id, COUNT(*) FROM trial_system_attributes a "
        "JOIN trials t ON t.trial_id = a.trial_id JOIN studies s ON s.study_id = t.study_id "
        f"WHERE {where} AND a.key = :retry_key GROUP BY t.study_id"
    )
    keys = {"spec_key": SPEC_ATTR, "stopped_key": STOPPED_ATTR, "warm_key": WARM_START_ATTR}
    events = {"failed_key": FAILED_ATTR, "history_key": HISTORY_ATTR}
    with storage.engine.connect() as conn:
        specs = conn.execute(specs_q, {**params, **keys, **events}).all()
        counts_rows = conn.execute(counts_q, params).all()
        attrs_rows = conn.execute(attrs_q, {**params, **keys}).all()
        retries = dict(conn.execute(retries_q, {**params, "retry_key": RETRY_OF_ATTR}).all())
    counts: dict[int, dict[TrialState, int]] = {}
    for study_id, state, n in counts_rows:
        counts.setdefault(study_id, {s: 0 for s in TrialState})[TrialState[state]] = n
    attrs: dict[int, dict[str, Any]] = {}
    for study_id, key, value_json in attrs_rows:
        attrs.setdefault(study_id, {})[key] = json.loads(value_json)
    rows = []
    for study_id, name, spec_json, failed_json, history_json in specs:
        try:
            spec = StudySpec.model_validate(json.loads(spec_json))
        except ValidationError as e:  # a spec that this version cannot read: skip, say so
            log.warning("study %r has an unreadable spec, skipped: %s", name, e)
            continue
        rows.append(
            _StudyRow(
                study_id=study_id,
                name=name,
                spec=spec,
                counts=counts.get(study_id, {s: 0 for s in TrialState}),
                system_attrs=attrs.get(study_id, {}),
                retries=retries.get(study_id, 0),
                failure=parse_failure(json.loads(failed_json) if failed_json else None),
                history=parse_history(json.loads(history_json) if history_json else None),
            )
        )
    return rows


def study_states(storage: optuna.storages.RDBStorage) -> dict[str, StudyState]:
    """The state (open, stopped, done, failed) of every hpsearch study, in four queries."""
    return {row.name: row.state for row in _study_rows(storage, prefix=None)}


def page_studies(
    storage: optuna.storages.RDBStorage,
    *,
    offset: int = 0,
    limit: int = 100,
    state: StudyState | None = None,
    prefix: str | None = None,
) -> tuple[list[StudyStatus], int]:
    """A page of hpsearch studies, oldest first, and how many match in all.

    Filters by name ``prefix`` in SQL, then by ``state``, then takes the page. Three queries
    read every matching study's spec, counts and flags; each study of the page then costs
    two small ones (its trial statistics, :mod:`hpsearch.db.stats`), and the live workers
    one for the page.
    """
    if state is not None and state not in ("open", "stopped", "done", "failed"):
        raise SpecError(f"unknown study state {state!r}; use open, stopped, done or failed")
    rows = _study_rows(storage, prefix=prefix)
    if state is not None:
        rows = [r for r in rows if r.state == state]
    page = rows[offset : offset + limit]
    per_study: dict[str | None, int] = {}
    if page:
        for worker in live_workers(storage):
            per_study[worker.study] = per_study.get(worker.study, 0) + 1
    return [
        _status(storage, r, workers=per_study.get(r.name, 0), stats=_stats(storage, r))
        for r in page
    ], len(rows)


def list_studies(
    storage: optuna.storages.RDBStorage,
    *,
    state: StudyState | None = None,
    prefix: str | None = None,
) -> list[StudyStatus]:
    """Every hpsearch study in the database (of ``state``, named ``prefix``...), oldest first."""
    statuses, _ = page_studies(storage, offset=0, limit=2**31, state=state, prefix=prefix)
    return statuses


def stop_study(storage: optuna.storages.RDBStorage, name: str) -> StudyStatus:
    """Stop the study: it takes no new trials until resumed; running trials finish normally.

    Stopping a stopped study keeps its first stop time.
    """
    study_id = _hpsearch_study_id(storage, name)
    if not is_stopped(storage, study_id):
        now = dt.datetime.now(dt.UTC).isoformat()
        storage.set_study_system_attr(study_id, STOPPED_ATTR, now)
    return study_status(storage, name)


def resume_study(
    storage: optuna.storages.RDBStorage, name: str, *, by: str | None = None
) -> StudyStatus:
    """Let a stopped or failed study take trials again (a no-op on an open one).

    Resuming a failed study unchanged suits a fix made on the workers' side (the data put in
    place, a worker given a --data-root); the failure it clears goes into the study's history.
    To change the study as well, see :func:`patch_study`.
    """
    study_id = _hpsearch_study_id(storage, name)
    if is_stopped(storage, study_id):
        storage.set_study_system_attr(study_id, STOPPED_ATTR, None)
    with study_lock(storage, study_id):
        failure = study_failure(storage, study_id)
        if failure is not None:
            now = dt.datetime.now(dt.UTC)
            append_change(
                storage, study_id, StudyChange(at=now, by=by, cleared_failure=failure.reason)
            )
            clear_failure(storage, study_id)
    return study_status(storage, name)


def delete_study(storage: optuna.storages.RDBStorage, name: str, *, force: bool = False) -> None:
    """Delete the study with its trials from the study database.

    Raises :class:`StudyBusy` while trials run, unless ``force``: their workers then fail to
    record their results. Held under the study lock, so no worker claims a trial meanwhile.
    """
    study_id = _hpsearch_study_id(storage, name)
    with study_lock(storage, study_id):
        running = count_trials_by_state(storage, study_id)[TrialState.RUNNING]
        if running and not force:
            raise StudyBusy(
                f"study {name!r} has {running} running trial(s): stop it and delete it once "
                f"they finish, or delete with force=true (`hpsearch delete {name} --force`)"
            )
        try:
            storage.delete_study(study_id)
        except KeyError as e:
            raise StudyNotFound(f"no study named {name!r}") from e


def set_pruner(
    storage: optuna.storages.RDBStorage, name: str, pruner: PrunerSpec | dict[str, Any]
) -> StudySpec:
    """Replace the study's pruner in its stored spec; workers use it for their next trials.

    The pruner is built first: a bad name or argument raises :class:`SpecError` and changes
    nothing. Returns the updated spec.
    """
    study_id, spec_json = _spec_json(storage, name)
    if not isinstance(pruner, PrunerSpec):
        try:
            pruner = PrunerSpec.model_validate(pruner)
        except ValidationError as e:
            raise SpecError(f"invalid pruner: {_validation_message(e)}") from e
    epochs = StudySpec.model_validate(spec_json).task.epochs
    try:
        make_pruner(pruner.name, epochs=epochs, **pruner.args)
    except ValueError as e:
        raise SpecError(f"pruner: {e}") from e
    with study_lock(storage, study_id):  # read-modify-write of the spec, one writer at a time
        _, spec_json = _spec_json(storage, name)
        spec_json["pruner"] = pruner.model_dump(mode="json")
        storage.set_study_user_attr(study_id, SPEC_ATTR, spec_json)
    return StudySpec.model_validate(spec_json)


#: What a change to a study may set: its budget, and where its task's data is. Everything else
#: (the space, the metric, the epochs, the split...) decided how its trials were sampled and
#: scored, so changing it would mix incomparable trials: that is a new study.
PATCHABLE: dict[str, tuple[str, ...]] = {
    "budget": ("trials", "seconds", "max_failures"),
    "task": ("dataset", "target", "pretrained_weights"),
}


def _patchable_fields() -> str:
    return ", ".join(f"{key}.{field}" for key, fields in PATCHABLE.items() for field in fields)


def _new_study_hint(name: str) -> str:
    return (
        f"submit a new study instead (`warm_start: {{study: {name}}}` starts it from this "
        "one's best configs)"
    )


def _check_patch(name: str, changes: Any) -> None:
    """Refuse, in one line, a change that is not a mapping of what :data:`PATCHABLE` allows."""
    if not isinstance(changes, dict) or not changes:
        raise SpecError(
            f"give the study's changes as a mapping, e.g. {{budget: {{trials: 20}}}}; "
            f"a study's change may set {_patchable_fields()}"
        )
    for key, value in changes.items():
        if key == "pruner":
            raise SpecError(
                f"change the pruner with PUT /studies/{name}/pruner (`hpsearch pruner {name} "
                "NAME`); a study's change sets only its budget and task data"
            )
        if key not in PATCHABLE:
            if key in StudySpec.model_fields:
                raise SpecError(
                    f"`{key}` of study {name!r} cannot be changed: its trials were sampled and "
                    f"scored with it; {_new_study_hint(name)}"
                )
            raise SpecError(
                f"unknown field {key!r}{did_you_mean(str(key), list(PATCHABLE))}; a study's "
                f"change may set {_patchable_fields()}"
            )
        if not isinstance(value, dict) or not value:
            raise SpecError(
                f"`{key}` must be a mapping such as {{{PATCHABLE[key][0]}: ...}}, got {value!r}"
            )
        model = Budget if key == "budget" else TaskSpec
        for field in value:
            if field in PATCHABLE[key]:
                continue
            if field in model.model_fields:
                raise SpecError(
                    f"`{key}.{field}` of study {name!r} cannot be changed: its trials were "
                    f"trained and scored with it; {_new_study_hint(name)}"
                )
            raise SpecError(
                f"unknown field `{key}.{field}`"
                f"{did_you_mean(str(field), list(PATCHABLE[key]))}; a study's change may set "
                f"{_patchable_fields()}"
            )


def patch_study(
    storage: optuna.storages.RDBStorage,
    name: str,
    changes: dict[str, Any],
    *,
    by: str | None = None,
) -> StudyStatus:
    """Change a study's budget or task data, and let it continue: ``PATCH /studies/{name}``.

    ``changes`` sets any of :data:`PATCHABLE`, e.g. ``{"budget": {"trials": 40,
    "max_failures": 20}, "task": {"target": "label"}}`` (``target: null`` goes back to the
    default label column). The changed spec is validated as a new one is
    (:func:`resolve_spec`), so a bad value raises :class:`SpecError` and changes nothing;
    changing anything else (the space, the metric) is refused with a line saying to submit a
    new study. Values are totals: ``budget.trials`` counts the trials already finished.

    A failed study becomes runnable again (its failure is cleared); a study done by its budget
    runs again once the new budget has room. A stopped study stays stopped until resumed.
    Every change is recorded in the study's history (:class:`StudyChange`, with ``by``, the
    API token's name when known), and workers pick the new spec up before their next trial.
    """
    _check_patch(name, changes)
    study_id = _hpsearch_study_id(storage, name)
    with study_lock(storage, study_id):  # read-modify-write of the spec, one writer at a time
        _, spec_json = _spec_json(storage, name)
        before = StudySpec.model_validate(spec_json)
        merged = before.model_dump(mode="json")
        for key, value in changes.items():
            merged[key] = {**merged[key], **value}
        merged["created_at"] = None  # set by hpsearch; kept below (the time budget runs from it)
        after = resolve_spec(merged).model_copy(update={"created_at": before.created_at})
        old, new = before.model_dump(mode="json"), after.model_dump(mode="json")
        changed = {
            f"{key}.{field}": [old[key].get(field), new[key].get(field)]
            for key, fields in PATCHABLE.items()
            for field in fields
            if old[key].get(field) != new[key].get(field)
        }
        failure = study_failure(storage, study_id)
        if changed or failure is not None:
            if changed:
                storage.set_study_user_attr(study_id, SPEC_ATTR, after.model_dump(mode="json"))
            change = StudyChange(
                at=dt.datetime.now(dt.UTC),
                by=by,
                changes=changed,
                cleared_failure=failure.reason if failure is not None else None,
            )
            append_change(storage, study_id, change)
            if failure is not None:
                clear_failure(storage, study_id)
    if changed:
        log.info("study %s changed: %s", name, changed)
    return study_status(storage, name)


def enqueue_configs(
    storage: optuna.storages.RDBStorage, name: str, configs: Sequence[dict[str, Any]]
) -> int:
    """Enqueue configs (``{param: value}``) for the study's workers to run before sampling.

    Every config is checked against the study's space first (see
    :func:`hpsearch.studies.warm_start.check_config`); a bad one raises :class:`SpecError` naming its
    index and parameter, and nothing is enqueued. A config equal to an existing trial's params
    is skipped. Returns how many were enqueued; they count against the budget when they run.
    """
    if not configs:
        raise SpecError("configs is empty; give at least one {param: value} mapping")
    study_id, spec_json = _spec_json(storage, name)
    spec = StudySpec.model_validate(spec_json)
    params_list = check_configs(spec.search_space, spec.fixed, configs)
    study = optuna.load_study(study_name=name, storage=storage)
    return enqueue_params(storage, study, study_id, params_list)


class TrialRecord(BaseModel):
    """One trial as users see it: its resolved config, value and learning curve."""

    number: int
    state: str
    value: float | None
    config: dict[str, Any]
    params: dict[str, Any]
    intermediate_values: dict[int, float]
    datetime_start: UtcDatetime | None
    datetime_complete: UtcDatetime | None
    duration_seconds: float | None
    fail_reason: str | None
    fail_traceback: str | None = None  # your objective's traceback, when it raised
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
        fail_traceback=trial.user_attrs.get(FAIL_TRACEBACK_ATTR),
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
    """A page of a study's trials by number, optionally of one state, and the total count.

    A bounded number of queries whatever the page size: the page's ids and the count, then one
    query per trial table (see :func:`load_trials`).
    """
    study_id = _hpsearch_study_id(storage, name)
    states = trial_states(state)
    trial_ids, total = page_trial_ids(storage, study_id, offset=offset, limit=limit, states=states)
    return [trial_record(t) for t in load_trials(storage, trial_ids)], total


def trial_states(state: str | None) -> tuple[TrialState, ...] | None:
    """The trial states a ``state`` filter names (``None``: every state); raises SpecError."""
    if state is None:
        return None
    try:
        return (TrialState[state.upper()],)
    except KeyError as e:
        raise SpecError(
            f"unknown trial state {state!r}; use one of "
            f"{', '.join(s.name.lower() for s in TrialState)}"
        ) from e


def _spec_stats(
    storage: optuna.storages.RDBStorage, name: str
) -> tuple[int, StudySpec, TrialStats]:
    study_id, spec_json = _spec_json(storage, name)
    spec = StudySpec.model_validate(spec_json)
    stats = trial_stats(storage, study_id, epochs=spec.task.epochs)
    return study_id, spec, stats


def best_trial_id(storage: optuna.storages.RDBStorage, name: str) -> tuple[int, int]:
    """The id and number of the best complete trial of study ``name`` (any Optuna study).

    The best is Optuna's (an infinite value in the good direction beats every finite one),
    ties to the lowest number, from the study's trial statistics. Raises
    :class:`StudyNotFound`, and :class:`TrialNotFound` when no trial is complete yet.
    """
    return _best_trial_id(storage, _study_id(storage, name), name)


def _best_trial_id(
    storage: optuna.storages.RDBStorage, study_id: int, name: str
) -> tuple[int, int]:
    stats = trial_stats(storage, study_id, epochs=0)  # the best needs no epochs
    if stats.best_number is None:
        raise TrialNotFound(f"study {name!r} has no complete trial yet")
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, stats.best_number)
    return trial_id, stats.best_number


def best_trial(storage: optuna.storages.RDBStorage, name: str) -> TrialRecord:
    """The best complete trial of the hpsearch study ``name`` (:func:`best_trial_id`), with
    its full resolved config."""
    trial_id, _ = _best_trial_id(storage, _hpsearch_study_id(storage, name), name)
    return trial_record(storage.get_trial(trial_id))


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
