"""A study's trial statistics for its status, kept per process and updated from what changed.

A study's status needs its counts by state, how many trials are retries, the best trial, the
mean duration of finished trials and what pruning saved. Computed from scratch that is a scan of
every trial (about 130 ms at 100,000 trials on SQLite); but a finished trial never changes in
Optuna, so this module folds each finished trial into running totals once and afterwards reads
only the trials that may have changed since the last read:

- trials with an id above the largest folded or seen,
- trials that were RUNNING or WAITING at the last read,

in one query, plus a count of the trials up to the largest id seen. When that count disagrees
with the totals (a trial committed out of id order by another process, trials deleted, or the
study id reused for a new study) the totals are computed again from scratch. A read that starts
after a write committed sees it, whichever process wrote it. The totals are a cache of the study
database, never a second source of truth: nothing is written back.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections import Counter
from dataclasses import dataclass, field

import optuna
import sqlalchemy
from optuna.trial import TrialState

from hpsearch.db.storage import RETRY_OF_ATTR

__all__ = ["TrialStats", "trial_stats"]

_UNFINISHED = (TrialState.RUNNING, TrialState.WAITING)


@dataclass(frozen=True)
class TrialStats:
    """One study's trial statistics at the time of the read."""

    counts: dict[TrialState, int]
    retries: int  # trials that retry a failed one (Optuna's retry callback marks them)
    best_number: int | None  # the best COMPLETE trial, ties to the lowest number
    best_value: float | None  # None when there is no best or its value is infinite
    mean_seconds: float | None  # mean duration of COMPLETE and PRUNED trials
    pruned: int
    epochs_saved: int  # epochs pruned trials did not train, of ``epochs`` each


@dataclass
class _Totals:
    """Running totals over the study's finished trials with ids up to ``max_id``."""

    name: str
    direction: str
    max_id: int = -1
    unfinished: set[int] = field(default_factory=set)
    folded: int = 0
    counts: dict[TrialState, int] = field(default_factory=lambda: dict.fromkeys(TrialState, 0))
    retries: int = 0
    best: tuple[float, int, float | None] | None = None  # (sort key, number, value)
    seconds_sum: float = 0.0
    seconds_n: int = 0
    pruned_at: Counter[int | None] = field(default_factory=Counter)  # last step of pruned
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fold(self, number: int, state: TrialState, row: _Row) -> None:
        self.folded += 1
        self.counts[state] += 1
        self.retries += row.is_retry
        if row.seconds is not None and state in (TrialState.COMPLETE, TrialState.PRUNED):
            self.seconds_sum += row.seconds
            self.seconds_n += 1
        if state == TrialState.PRUNED:
            self.pruned_at[row.last_step] += 1
        if state == TrialState.COMPLETE and row.value is not None:
            key = -row.value if self.direction == "maximize" else row.value
            candidate = (key, number, row.value if math.isfinite(row.value) else None)
            if self.best is None or candidate[:2] < self.best[:2]:
                self.best = candidate


@dataclass(frozen=True)
class _Row:
    trial_id: int
    number: int
    state: TrialState
    seconds: float | None
    value: float | None  # +-inf for Optuna's INF_POS / INF_NEG
    last_step: int | None
    is_retry: bool


_registry: weakref.WeakKeyDictionary[optuna.storages.RDBStorage, dict[int, _Totals]] = (
    weakref.WeakKeyDictionary()
)
_registry_lock = threading.Lock()


def trial_stats(storage: optuna.storages.RDBStorage, study_id: int, *, epochs: int) -> TrialStats:
    """The study's :class:`TrialStats`, reading only the trials that changed since the last call.

    The best trial follows the study's direction; ``epochs`` (the task's) is what a pruned
    trial would have trained. Raises ``KeyError`` for an unknown study id, as Optuna does.
    """
    with _registry_lock:
        studies = _registry.setdefault(storage, {})
        totals = studies.get(study_id)
    name, direction = _study_identity(storage, study_id)
    if totals is None or (totals.name, totals.direction) != (name, direction):
        totals = _Totals(name=name, direction=direction)
        with _registry_lock:
            studies[study_id] = totals
    with totals.lock:
        rows = _changed_rows(storage, study_id, totals)
        if rows is None:  # the totals no longer add up: start again from scratch
            fresh = _Totals(name=name, direction=direction)
            with fresh.lock:
                rows = _changed_rows(storage, study_id, fresh) or []
                stats = _apply(fresh, rows, epochs=epochs)
            with _registry_lock:
                studies[study_id] = fresh
            return stats
        return _apply(totals, rows, epochs=epochs)


def _study_identity(storage: optuna.storages.RDBStorage, study_id: int) -> tuple[str, str]:
    """The study's name and direction (``maximize``/``minimize``, of its first objective):
    a study id reused for another study (SQLite reuses ids) shows as a change of these."""
    query = sqlalchemy.text(
        "SELECT s.study_name, d.direction FROM studies s LEFT JOIN study_directions d "
        "ON d.study_id = s.study_id AND d.objective = 0 WHERE s.study_id = :study_id"
    )
    with storage.engine.connect() as conn:
        row = conn.execute(query, {"study_id": study_id}).first()
    if row is None:
        raise KeyError(f"no study with id {study_id}")
    return row[0], "maximize" if row[1] == "MAXIMIZE" else "minimize"


def _seconds_sql(dialect: str) -> str:
    if dialect == "postgresql":
        return "EXTRACT(EPOCH FROM (t.datetime_complete - t.datetime_start))"
    return "(julianday(t.datetime_complete) - julianday(t.datetime_start)) * 86400.0"


def _changed_rows(
    storage: optuna.storages.RDBStorage, study_id: int, totals: _Totals
) -> list[_Row] | None:
    """The trials that may have changed since ``totals`` was last brought up to date, or None
    when the trials up to its largest id are not those it holds."""
    count = sqlalchemy.text(
        "SELECT COUNT(*) FROM trials WHERE study_id = :study_id AND trial_id <= :max_id"
    )
    # Two parts (new ids; the unfinished ones by primary key): an OR would scan the study.
    columns = (
        "SELECT t.trial_id, t.number, t.state, "
        "CASE WHEN t.state IN ('COMPLETE', 'PRUNED') "
        f"THEN {_seconds_sql(storage.engine.dialect.name)} END, "
        "v.value, v.value_type, "
        "CASE WHEN t.state = 'PRUNED' THEN (SELECT MAX(iv.step) FROM trial_intermediate_values iv "
        "WHERE iv.trial_id = t.trial_id) END, "
        "EXISTS (SELECT 1 FROM trial_system_attributes a "
        "WHERE a.trial_id = t.trial_id AND a.key = :retry_key) "
        "FROM trials t LEFT JOIN trial_values v ON v.trial_id = t.trial_id AND v.objective = 0 "
    )
    changed = sqlalchemy.text(
        f"{columns} WHERE t.study_id = :study_id AND t.trial_id > :max_id UNION ALL "
        f"{columns} WHERE t.trial_id IN :unfinished AND t.trial_id <= :max_id"
    ).bindparams(sqlalchemy.bindparam("unfinished", expanding=True))
    params = {
        "study_id": study_id,
        "max_id": totals.max_id,
        "unfinished": sorted(totals.unfinished),
        "retry_key": RETRY_OF_ATTR,
    }
    with storage.engine.connect() as conn:
        if totals.max_id >= 0:
            known = conn.execute(count, params).scalar_one()
            if known != totals.folded + len(totals.unfinished):
                return None
        result = conn.execute(changed, params).all()
    rows = []
    for trial_id, number, state, seconds, value, value_type, last_step, is_retry in result:
        if value_type == "INF_POS":
            value = math.inf
        elif value_type == "INF_NEG":
            value = -math.inf
        rows.append(
            _Row(
                trial_id=trial_id,
                number=number,
                state=TrialState[state],
                seconds=None if seconds is None else float(seconds),
                value=value,
                last_step=last_step,
                is_retry=bool(is_retry),
            )
        )
    return rows


def _apply(totals: _Totals, rows: list[_Row], *, epochs: int) -> TrialStats:
    """Fold the rows that finished into ``totals``; count the unfinished ones on top."""
    counts = dict.fromkeys(TrialState, 0)
    retries = 0
    for row in rows:
        if row.state in _UNFINISHED:
            totals.unfinished.add(row.trial_id)
            counts[row.state] += 1
            retries += row.is_retry
        else:
            totals.unfinished.discard(row.trial_id)
            totals.fold(row.number, row.state, row)
        totals.max_id = max(totals.max_id, row.trial_id)
    for state, n in totals.counts.items():
        counts[state] += n
    best = totals.best
    return TrialStats(
        counts=counts,
        retries=totals.retries + retries,
        best_number=None if best is None else best[1],
        best_value=None if best is None else best[2],
        mean_seconds=totals.seconds_sum / totals.seconds_n if totals.seconds_n else None,
        pruned=totals.counts[TrialState.PRUNED],
        # Epochs count from 1 in reports: a trial pruned after step k skipped epochs - k.
        epochs_saved=sum(
            n * (epochs if step is None else max(0, epochs - step))
            for step, n in totals.pruned_at.items()
        ),
    )
