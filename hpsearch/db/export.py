"""A study's trials as CSV, streamed page by page, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import TrialState

from hpsearch.studies import load_spec, trial_record, trial_states
from hpsearch.db.queries import with_states
from hpsearch.db.reads import load_trials

__all__ = ["CSV_COLUMNS", "defuse", "trials_csv"]

#: The fixed columns, before one ``params_<name>`` column per parameter.
CSV_COLUMNS = (
    "number",
    "state",
    "value",
    "duration_seconds",
    "datetime_start",
    "datetime_complete",
    "worker",
    "fail_reason",
    "prune_reason",
)

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def defuse(cell: Any) -> Any:
    """A string cell a spreadsheet would run as a formula, with a quote in front; others as is."""
    if isinstance(cell, str) and cell.startswith(_FORMULA_STARTS):
        return "'" + cell
    return cell


def _param_names(storage: optuna.storages.RDBStorage, study_id: int, order: list[str]) -> list[str]:
    query = sqlalchemy.text(
        "SELECT DISTINCT p.param_name FROM trial_params p "
        "JOIN trials t ON t.trial_id = p.trial_id WHERE t.study_id = :study_id"
    )
    with storage.engine.connect() as conn:
        names = {row[0] for row in conn.execute(query, {"study_id": study_id})}
    rank = {name: i for i, name in enumerate(order)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def _page_ids(
    storage: optuna.storages.RDBStorage,
    study_id: int,
    *,
    after: int,
    limit: int,
    states: tuple[TrialState, ...] | None,
) -> list[tuple[int, int]]:
    # Keyset paging on the trial number: trials added while the export runs shift nothing.
    query, params = with_states(
        "SELECT trial_id, number FROM trials WHERE study_id = :study_id AND number > :after"
        "{states} ORDER BY number LIMIT :limit",
        states,
        {"study_id": study_id, "after": after, "limit": limit},
    )
    with storage.engine.connect() as conn:
        return [(row[0], row[1]) for row in conn.execute(query, params)]


def _line(row: list[Any]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow([defuse(cell) for cell in row])
    return out.getvalue()


def trials_csv(
    storage: optuna.storages.RDBStorage,
    name: str,
    *,
    state: str | None = None,
    page_size: int = 500,
) -> Iterator[str]:
    """The study's trials (optionally of one state) as CSV lines, header first.

    Columns: :data:`CSV_COLUMNS`, then (several objectives) ``value_<metric>`` for each
    objective, then ``params_<name>`` for each parameter any trial has, in the space's order. Trials are read ``page_size`` at a time, so a large study is never in
    memory at once. String cells that a spreadsheet would take for a formula are prefixed with
    a quote. The study and the state filter are checked now (raising StudyNotFound or
    SpecError), before the first line is produced.
    """
    spec = load_spec(storage, name)
    study_id = storage.get_study_id_from_name(name)
    states = trial_states(state)
    param_names = _param_names(storage, study_id, spec.search_space.ordered_names())
    # Several objectives: one `value_<metric>` column each after the fixed ones.
    objectives = [o.metric for o in spec.objectives]
    header = [
        *CSV_COLUMNS,
        *(f"value_{m}" for m in objectives),
        *(f"params_{p}" for p in param_names),
    ]

    def lines() -> Iterator[str]:
        yield _line(header)
        after = -1
        while True:
            page = _page_ids(storage, study_id, after=after, limit=page_size, states=states)
            if not page:
                return
            for trial in load_trials(storage, [trial_id for trial_id, _ in page]):
                record = trial_record(trial)
                row = [getattr(record, column) for column in CSV_COLUMNS]
                row[4:6] = [d.isoformat() if d else None for d in row[4:6]]
                values = (record.values or [None] * len(objectives)) if objectives else []
                yield _line(row + values + [record.params.get(p) for p in param_names])
            after = page[-1][1]

    return lines()
