"""A study's trial statistics for its status, kept per process and updated from what changed.

A study's status needs its counts by state, how many trials are retries, the best trial, the
mean duration of finished trials, what pruning saved and when the last trial ended. Computed from scratch that is a scan of
every trial (about 130 ms at 100,000 trials on SQLite); but a finished trial never changes in
Optuna, so this module folds each finished trial into running totals once and afterwards reads
only the trials that may have changed since the last read, as the study's
:class:`~hpsearch.db.incremental.StudyCursor` finds them, in one query plus a probe. When the
trials up to the largest id seen no longer add up to the totals (a trial committed out of id
order by another process, trials deleted), or the study id names another study now, or the
totals missed edits the edit marker no longer lists, the totals are computed again from
scratch. A trial hpsearch edited after it finished (the edit marker) is read again; of what is
folded only whether it is a retry comes from rows an edit may touch, so that is kept per trial.
A read that starts after a write committed sees it, whichever process wrote it. The totals are
a cache of the study database, never a second source of truth: nothing is written back.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import weakref
from collections import Counter
from dataclasses import dataclass, field

import optuna
from optuna.trial import TrialState

from hpsearch.db.incremental import UNFINISHED, Changes, StudyCursor, rank_key
from hpsearch.db.queries import duration_sql
from hpsearch.db.storage import RETRY_OF_ATTR
from hpsearch.db.timestamps import as_utc

__all__ = ["TrialStats", "trial_stats"]


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
    #: When the last finished (complete, pruned or failed) trial ended, aware UTC; None before.
    last_finished_at: dt.datetime | None = None


@dataclass
class _Totals:
    """Running totals over the study's finished trials that ``cursor`` has seen."""

    cursor: StudyCursor
    folded: int = 0
    counts: dict[TrialState, int] = field(default_factory=lambda: dict.fromkeys(TrialState, 0))
    retry_ids: set[int] = field(default_factory=set)  # finished trials that are retries
    best: tuple[tuple[float, int], float | None] | None = None  # (rank_key, value)
    seconds_sum: float = 0.0
    seconds_n: int = 0
    pruned_at: Counter[int | None] = field(default_factory=Counter)  # last step of pruned
    last_finished_at: dt.datetime | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fold(self, row: _Row) -> None:
        self.folded += 1
        self.counts[row.state] += 1
        if row.is_retry:
            self.retry_ids.add(row.trial_id)
        if row.seconds is not None and row.state in (TrialState.COMPLETE, TrialState.PRUNED):
            self.seconds_sum += row.seconds
            self.seconds_n += 1
        if row.state == TrialState.PRUNED:
            self.pruned_at[row.last_step] += 1
        if row.completed_at is not None and (
            self.last_finished_at is None or row.completed_at > self.last_finished_at
        ):
            self.last_finished_at = row.completed_at
        if row.state == TrialState.COMPLETE and row.value is not None:
            key = rank_key(row.value, row.number, self.cursor.direction)
            if self.best is None or key < self.best[0]:
                self.best = (key, row.value if math.isfinite(row.value) else None)

    def refold_edited(self, row: _Row) -> None:
        # Optuna's own columns of a finished trial (state, values, times, steps) never change;
        # an edit touches its attribute rows, of which only the retry marker is folded here.
        if row.is_retry:
            self.retry_ids.add(row.trial_id)
        else:
            self.retry_ids.discard(row.trial_id)


@dataclass(frozen=True)
class _Row:
    trial_id: int
    number: int
    state: TrialState
    seconds: float | None
    value: float | None  # +-inf for Optuna's INF_POS / INF_NEG
    last_step: int | None
    is_retry: bool
    completed_at: dt.datetime | None = None  # aware UTC


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
    if totals is not None:
        with totals.lock:
            read = _changed_rows(storage, totals)
            if read is not None:
                return _apply(totals, *read, epochs=epochs)
    # The first read, or the totals no longer add up: start again from scratch.
    fresh = _Totals(cursor=StudyCursor(study_id=study_id))
    with fresh.lock:
        read = _changed_rows(storage, fresh)
        assert read is not None  # a first read never has to start over
        stats = _apply(fresh, *read, epochs=epochs)
    with _registry_lock:
        studies[study_id] = fresh
    return stats


def _changed_rows(
    storage: optuna.storages.RDBStorage, totals: _Totals
) -> tuple[Changes, list[_Row]] | None:
    """The trials that may have changed since ``totals`` was last brought up to date, or None
    when the totals must start over."""
    seconds = duration_sql(storage.engine.dialect.name) or "NULL"
    select = (
        "SELECT t.trial_id, t.number, t.state, "
        f"CASE WHEN t.state IN ('COMPLETE', 'PRUNED') THEN {seconds} END, "
        "v.value, v.value_type, "
        "CASE WHEN t.state = 'PRUNED' THEN (SELECT MAX(iv.step) FROM trial_intermediate_values iv "
        "WHERE iv.trial_id = t.trial_id) END, "
        "EXISTS (SELECT 1 FROM trial_system_attributes a "
        "WHERE a.trial_id = t.trial_id AND a.key = :retry_key), "
        "t.datetime_complete "
        "FROM trials t LEFT JOIN trial_values v ON v.trial_id = t.trial_id AND v.objective = 0"
    )
    with storage.engine.connect() as conn:
        changes = totals.cursor.read(
            conn,
            select=select,
            held=totals.folded + len(totals.cursor.unfinished),
            params={"retry_key": RETRY_OF_ATTR},
        )
    if changes is None:
        return None
    rows = []
    for (
        trial_id,
        number,
        state,
        seconds,
        value,
        value_type,
        last_step,
        is_retry,
        completed,
    ) in changes.rows:
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
                completed_at=_moment(completed),
            )
        )
    return changes, rows


def _moment(value: object) -> dt.datetime | None:
    # Optuna's naive local time; SQLite hands a raw text query the stored text.
    if value is None:
        return None
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return as_utc(moment) if isinstance(moment, dt.datetime) else None


def _apply(totals: _Totals, changes: Changes, rows: list[_Row], *, epochs: int) -> TrialStats:
    """Fold the rows that finished into ``totals``; count the unfinished ones on top."""
    counts = dict.fromkeys(TrialState, 0)
    retries = 0
    for row in rows:
        if row.trial_id in changes.edited:
            totals.refold_edited(row)
        elif row.state in UNFINISHED:
            counts[row.state] += 1
            retries += row.is_retry
        else:
            totals.fold(row)
        totals.cursor.saw(row.trial_id, row.state)
    for state, n in totals.counts.items():
        counts[state] += n
    best = totals.best
    return TrialStats(
        counts=counts,
        retries=len(totals.retry_ids) + retries,
        best_number=None if best is None else best[0][1],
        best_value=None if best is None else best[1],
        mean_seconds=totals.seconds_sum / totals.seconds_n if totals.seconds_n else None,
        pruned=totals.counts[TrialState.PRUNED],
        # Epochs count from 1 in reports: a trial pruned after step k skipped epochs - k.
        epochs_saved=sum(
            n * (epochs if step is None else max(0, epochs - step))
            for step, n in totals.pruned_at.items()
        ),
        last_finished_at=totals.last_finished_at,
    )
