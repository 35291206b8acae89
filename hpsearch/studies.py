"""Study specs and the operations on studies that the service, the workers and the CLI share.

A study is an Optuna study in the study database plus its resolved :class:`StudySpec`, stored
as a study user attribute, so that any process holding only the database URL can rebuild the
objective, the sampler and the pruner. Nothing about a study lives anywhere else.
"""

from __future__ import annotations

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

from hpsearch.data_roots import check_spec_paths
from hpsearch.errors import (
    HpsearchError,
    SpaceError,
    SpecError,
    StudyExists,
    StudyNotFound,
    TrialNotFound,
    TrialNotRunning,
)
from hpsearch.fleet import live_workers
from hpsearch.limits import (
    MAX_BUDGET_SECONDS,
    MAX_BUDGET_TRIALS,
    MAX_FAILURES,
    MAX_SEED,
    check_space_knobs,
)
from hpsearch.spaces import SearchSpace, load_space
from hpsearch.storage import (
    RETRY_OF_ATTR,
    count_trials_by_state,
    page_trial_ids,
    study_lock,
)
from hpsearch.strategy import PRUNERS, STRATEGIES, make_pruner, make_sampler
from hpsearch.tasks import (
    FAMILY_METRICS,
    METRICS,
    TASK_FAMILIES,
    USER_OBJECTIVE_FAMILY,
    TaskSpec,
    default_metric,
)
from hpsearch.timestamps import UtcDatetime
from hpsearch.trial_reads import load_trials
from hpsearch.trial_stats import TrialStats, trial_stats
from hpsearch.warm_start import (
    WarmStart,
    WarmStartReport,
    check_configs,
    enqueue_params,
    warm_start_params,
)

__all__ = [
    "SPEC_ATTR",
    "STOPPED_ATTR",
    "Budget",
    "PrunerSpec",
    "PruningSummary",
    "StudyBusy",
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
    "get_trial",
    "is_stopped",
    "list_studies",
    "list_trials",
    "load_spec",
    "open_study",
    "page_studies",
    "request_prune",
    "resolve_spec",
    "resume_study",
    "set_pruner",
    "stop_study",
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
PRUNE_REASON_ATTR = "prune_reason"
SEED_ATTR = "seed"
PRUNE_REQUEST_ATTR = "prune_requested"
WORKER_ATTR = "worker"

log = logging.getLogger("hpsearch.studies")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

StudyState = Literal["open", "stopped", "done"]


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
        description="The metric to optimize; when empty, the task family's default "
        "(val_accuracy for classification, val_rmse for regression).",
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
        value = err.get("input")
        got = f", got {value!r}" if isinstance(value, int | float | str) else ""
        parts.append(f"{where}: {err['msg']}{got[:200]}")
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
    check_spec_paths(spec.task)  # the workers check their data roots again
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
    now = dt.datetime.now(dt.UTC)
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

    ``state`` is ``done`` once the budget is spent (or too many trials failed), else
    ``stopped`` while a user has stopped it, else ``open``; ``done`` is true in both of the
    first two cases (the study takes no new trials) and ``done_reason`` says why.

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
) -> str | None:
    """Why the study takes no more trials, or ``None`` while it has budget left.

    ``stopped`` (see :func:`is_stopped`) makes a study with budget left take none; a spent
    budget is given as the reason first, since resuming would not reopen it. ``retries``: how
    many trials are retries of failed ones (a killed or stopped worker's trial, run again):
    those failures cost no trial, so they do not count towards ``budget.max_failures``.
    """
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

    @property
    def stopped_at(self) -> dt.datetime | None:
        return _stopped_at(self.system_attrs)

    @property
    def budget_reason(self) -> str | None:
        return done_reason(self.spec, self.counts, retries=self.retries)

    @property
    def state(self) -> StudyState:
        if self.budget_reason is not None:
            return "done"
        return "stopped" if self.stopped_at is not None else "open"


def _eta_seconds(row: _StudyRow, mean: float | None) -> float | None:
    if row.state == "done":
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
    """A study's full status from its row and its trial statistics (:mod:`hpsearch.trial_stats`)."""
    spec = row.spec
    stopped_at = row.stopped_at
    reason = done_reason(spec, row.counts, stopped=stopped_at is not None, retries=row.retries)
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
    )


def study_status(storage: optuna.storages.RDBStorage, name: str) -> StudyStatus:
    """One study's status: a few small queries once the process has read the study before
    (:mod:`hpsearch.trial_stats` reads only the trials that changed since)."""
    study_id, spec, stats = _spec_stats(storage, name)
    row = _StudyRow(
        study_id=study_id,
        name=name,
        spec=spec,
        counts=stats.counts,
        system_attrs=storage.get_study_system_attrs(study_id),
        retries=stats.retries,
    )
    return _status(storage, row, workers=len(live_workers(storage, study=name)), stats=stats)


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
        "SELECT s.study_id, s.study_name, a.value_json FROM studies s "
        "JOIN study_user_attributes a ON a.study_id = s.study_id AND a.key = :spec_key "
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
    with storage.engine.connect() as conn:
        specs = conn.execute(specs_q, {**params, **keys}).all()
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
    for study_id, name, spec_json in specs:
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
            )
        )
    return rows


def study_states(storage: optuna.storages.RDBStorage) -> dict[str, StudyState]:
    """The state (open, stopped, done) of every hpsearch study, in four queries."""
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
    two small ones (its trial statistics, :mod:`hpsearch.trial_stats`), and the live workers
    one for the page.
    """
    if state is not None and state not in ("open", "stopped", "done"):
        raise SpecError(f"unknown study state {state!r}; use open, stopped or done")
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


def resume_study(storage: optuna.storages.RDBStorage, name: str) -> StudyStatus:
    """Let a stopped study take trials again (a no-op on a study that is not stopped)."""
    study_id = _hpsearch_study_id(storage, name)
    if is_stopped(storage, study_id):
        storage.set_study_system_attr(study_id, STOPPED_ATTR, None)
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


def enqueue_configs(
    storage: optuna.storages.RDBStorage, name: str, configs: Sequence[dict[str, Any]]
) -> int:
    """Enqueue configs (``{param: value}``) for the study's workers to run before sampling.

    Every config is checked against the study's space first (see
    :func:`hpsearch.warm_start.check_config`); a bad one raises :class:`SpecError` naming its
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
