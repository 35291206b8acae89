"""Where studies stand: one study's status, and the listings read in bulk.

A study's state (open, stopped, done, failed) is derived, never stored: from its spec's budget,
its trial counts, its stop mark and its failure (:mod:`hpsearch.studies.history`).
:func:`done_reason` is the one place that decides whether a study takes more trials; the
workers ask it too. Listings read every matching study's spec, counts and flags in four
queries (:func:`study_states`, :func:`page_studies`); a status adds the trial statistics of
:mod:`hpsearch.db.stats`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any, Literal

import optuna
import sqlalchemy
from optuna.trial import TrialState
from pydantic import BaseModel, Field, ValidationError

from hpsearch.analysis.misfit import PriorMisfit, spec_prior_check
from hpsearch.db.fleet import live_workers
from hpsearch.db.queries import retry_counts, trial_counts_by_state
from hpsearch.db.stats import TrialStats, trial_stats
from hpsearch.db.timestamps import UtcDatetime
from hpsearch.errors import SpaceError, SpecError
from hpsearch.studies._lookup import find_study
from hpsearch.studies.attrs import (
    FAILED_ATTR,
    HISTORY_ATTR,
    SPEC_ATTR,
    STOPPED_ATTR,
    WARM_START_ATTR,
)
from hpsearch.studies.history import (
    StudyChange,
    StudyFailure,
    parse_failure,
    parse_history,
)
from hpsearch.strategy import grid_size
from hpsearch.studies.spec import StudySpec
from hpsearch.studies.warm_start import WarmStartReport

__all__ = [
    "ParetoSummary",
    "PruningSummary",
    "StudyState",
    "StudyStatus",
    "done_reason",
    "failed_reason",
    "list_studies",
    "page_studies",
    "parse_stopped_at",
    "study_states",
    "study_status",
    "trials_spent",
]

log = logging.getLogger("hpsearch.studies")

#: ``failed``: a worker met an error that recurs on every trial (see :mod:`hpsearch.studies.history`).
StudyState = Literal["open", "stopped", "done", "failed"]


class PruningSummary(BaseModel):
    """What pruning saved: trials cut short, and the epochs they did not train."""

    pruned: int = 0
    epochs_saved: int = Field(
        default=0,
        description="Sum over pruned trials of task.epochs minus the last reported epoch.",
    )


class ParetoSummary(BaseModel):
    """A study of several objectives: its objectives, how many trials are on its front, and the
    hypervolume they dominate up to ``reference_point`` (each objective's worst value so far)."""

    objectives: list[str]
    size: int
    hypervolume: float | None
    reference_point: list[float] | None


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
    elapsed_seconds: float = Field(
        description="Seconds since the study was created; it stops once the study takes no "
        "trials: at the last trial's end when done or failed, when it was stopped (or its "
        "running trials ended) when stopped."
    )
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
    grid_points: int | None = Field(
        default=None,
        description="For strategy grid: how many points the grid has (budget_trials is this "
        "at most: the study ends when every point has run); null for other strategies.",
    )
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
    pareto: ParetoSummary | None = Field(
        default=None,
        description="For several objectives: the front's size and hypervolume (see "
        "GET /studies/{name}/pareto); null for one objective and in listings. best_value "
        "and best_trial are then the front's best in the first objective.",
    )


def _elapsed(spec: StudySpec) -> float:
    # Wall time since the study was created: what a time budget counts.
    if not spec.created_at:
        return 0.0
    return (dt.datetime.now(dt.UTC) - spec.created_at).total_seconds()


def _elapsed_until_end(row: _StudyRow, stats: TrialStats) -> float:
    """The study's elapsed time as its status shows it: it stops when the study takes no more
    trials (done, failed: at its last trial's end; stopped: when it was stopped, or when a
    trial running then ended), so two reads of a finished study agree."""
    spec = row.spec
    if not spec.created_at:
        return 0.0
    now = dt.datetime.now(dt.UTC)
    state = row.state
    end = now
    last = stats.last_finished_at
    if state in ("done", "failed"):
        fallbacks = [last, row.failure.at if row.failure else None]
        if spec.budget.seconds is not None and row.budget_reason is not None:
            if row.budget_reason.startswith("time budget"):  # spent at created + seconds
                fallbacks.append(spec.created_at + dt.timedelta(seconds=spec.budget.seconds))
        known = [m for m in fallbacks if m is not None]
        end = max(known) if known else now
    elif state == "stopped" and row.stopped_at is not None:
        end = max(m for m in (row.stopped_at, last) if m is not None)
    return max(0.0, (min(end, now) - spec.created_at).total_seconds())


def trials_spent(spec: StudySpec, counts: dict[TrialState, int], *, retries: int = 0) -> int:
    """The trials that count against ``budget.trials``: the complete and pruned ones.

    A grid study (strategy ``grid``) counts the points whose trial failed and is not retried
    too: a grid point runs once (``retries``: as in :func:`done_reason`).
    """
    spent = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
    if spec.strategy == "grid":
        spent += max(0, counts[TrialState.FAIL] - retries)
    return spent


# A grid's size, per study: its space and fixed values never change (see PATCHABLE).
_grid_sizes: dict[tuple[str | None, dt.datetime | None], int] = {}


def _grid_points(spec: StudySpec) -> int | None:
    """How many points a grid study's grid has; ``None`` for other strategies."""
    if spec.strategy != "grid":
        return None
    key = (spec.name, spec.created_at)
    if key not in _grid_sizes:
        try:
            size = grid_size(spec.search_space, spec.fixed)
        except SpaceError:  # refused at submit; a spec stored by another version
            return None
        if len(_grid_sizes) >= 1024:
            _grid_sizes.clear()
        _grid_sizes[key] = size
    return _grid_sizes[key]


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
    finished = trials_spent(spec, counts, retries=retries)
    if spec.budget.trials is not None and finished >= spec.budget.trials:
        points = _grid_points(spec)
        if points is not None and spec.budget.trials >= points:
            return f"every point of the grid ran ({points})"
        if points is not None:
            return (
                f"{finished} of the grid's {points} points ran "
                f"(budget.trials={spec.budget.trials})"
            )
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
    if failure.reason.startswith("DataOutsideRoots"):
        # A worker's own data roots (a study failed so by an older worker): the task is fine.
        return (
            f"failed{at}: {failure.reason}{seen} -- restart that worker with --data-root DIR "
            f"naming the dataset's folder, then `hpsearch resume {name}`"
        )
    return (
        f"failed{at}: {failure.reason}{seen} -- fix it and continue with `hpsearch extend {name} "
        f"--dataset ... --target ...` (PATCH /studies/{name}), or `hpsearch resume {name}` "
        "once the data is in place"
    )


def parse_stopped_at(system_attrs: dict[str, Any]) -> dt.datetime | None:
    """When a user stopped the study, from its system attributes; ``None`` while not stopped."""
    stamp = system_attrs.get(STOPPED_ATTR)
    return dt.datetime.fromisoformat(stamp) if stamp else None


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
        return parse_stopped_at(self.system_attrs)

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
        direction=spec.direction or "minimize",  # a stored spec is resolved: never None
        metric=spec.metric,
        strategy=spec.strategy,
        pruner=spec.pruner.name,
        counts={state.name.lower(): n for state, n in row.counts.items()},
        finished=row.counts[TrialState.COMPLETE] + row.counts[TrialState.PRUNED],
        budget_trials=spec.budget.trials,
        budget_seconds=spec.budget.seconds,
        elapsed_seconds=round(_elapsed_until_end(row, stats), 3),
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
        grid_points=_grid_points(spec),
        warm_start=WarmStartReport.model_validate(warm) if warm else None,
        failure=row.failure,
        history=row.history,
    )


def study_status(storage: optuna.storages.RDBStorage, name: str) -> StudyStatus:
    """One study's status: a few small queries once the process has read the study before
    (:mod:`hpsearch.db.stats` reads only the trials that changed since)."""
    found = find_study(storage, name)
    study_id, spec = found.study_id, StudySpec.model_validate(found.spec_json)
    stats = trial_stats(storage, study_id, epochs=spec.task.epochs)
    # find_study read the user attributes already: the failure and history are among them.
    failure = parse_failure(found.user_attrs.get(FAILED_ATTR))
    history = parse_history(found.user_attrs.get(HISTORY_ATTR))
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
    check = spec_prior_check(
        storage, study_id, spec, finished=status.finished, system_attrs=row.system_attrs
    )
    status.prior_misfit = check.misfit if check is not None else None
    if spec.multi_objective:
        from hpsearch.studies.pareto import pareto_front  # it reads the status's trial record

        front = pareto_front(storage, name, found=found)  # the lookup already made
        status.pareto = ParetoSummary(
            objectives=[o.metric for o in spec.objectives],
            size=len(front.trials),
            hypervolume=front.hypervolume,
            reference_point=front.reference_point,
        )
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
    attrs_q = sqlalchemy.text(
        "SELECT a.study_id, a.key, a.value_json FROM study_system_attributes a "
        f"JOIN studies s ON s.study_id = a.study_id WHERE {where} "
        "AND a.key IN (:stopped_key, :warm_key)"
    )
    keys = {"spec_key": SPEC_ATTR, "stopped_key": STOPPED_ATTR, "warm_key": WARM_START_ATTR}
    events = {"failed_key": FAILED_ATTR, "history_key": HISTORY_ATTR}
    with storage.engine.connect() as conn:
        specs = conn.execute(specs_q, {**params, **keys, **events}).all()
        counts = trial_counts_by_state(conn, studies_where=where, params=params)
        attrs_rows = conn.execute(attrs_q, {**params, **keys}).all()
        retries = retry_counts(conn, studies_where=where, params=params)
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
