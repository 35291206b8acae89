"""Small SQL reads on Optuna's tables that its storage API does not offer cheaply.

Optuna's RDB storage answers "how many trials are in each state?" by loading every trial; these
read the same answer in one query each, without building a trial. Every count of trials by
state in hpsearch goes through :func:`trial_counts_by_state` (one study, every study, a prefix
of names, the studies with an attribute), and every count of retries through
:func:`retry_counts`. They read Optuna's private tables (``trials``, ``studies``,
``trial_system_attributes``, ...), whose schema :func:`hpsearch.db.storage.open_storage`
checks is the one the installed Optuna expects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import optuna
import sqlalchemy
from optuna.trial import TrialState

from hpsearch.db.storage import RETRY_OF_ATTR

__all__ = [
    "best_trial_id",
    "count_retries",
    "count_trials_by_state",
    "count_trials_by_study",
    "duration_sql",
    "page_trial_ids",
    "retry_counts",
    "studies_with_user_attr",
    "trial_counts_by_state",
    "with_states",
]

_DURATION_SQL = {
    "sqlite": "(julianday(t.datetime_complete) - julianday(t.datetime_start)) * 86400.0",
    "postgresql": "EXTRACT(EPOCH FROM (t.datetime_complete - t.datetime_start))",
}


def duration_sql(dialect: str) -> str | None:
    """SQL for a trial's duration in seconds (``t`` the trials table) in ``dialect``, or None
    for a database hpsearch does not support."""
    return _DURATION_SQL.get(dialect)


def with_states(
    sql: str, states: tuple[TrialState, ...] | None, params: dict[str, Any]
) -> tuple[sqlalchemy.TextClause, dict[str, Any]]:
    """The query ``sql`` over ``trials`` and its parameters, with ``{states}`` in ``sql``
    replaced by `` AND state IN (...)`` when ``states`` is given (by nothing otherwise)."""
    if not states:
        return sqlalchemy.text(sql.replace("{states}", "")), params
    query = sqlalchemy.text(sql.replace("{states}", " AND state IN :states"))
    query = query.bindparams(sqlalchemy.bindparam("states", expanding=True))
    return query, {**params, "states": [s.name for s in states]}


def _where(study_id: int | None, studies_where: str | None) -> str:
    clauses = ["t.study_id = :study_id"] if study_id is not None else []
    if studies_where:
        clauses.append(f"({studies_where})")
    return " AND ".join(clauses) or "1 = 1"


def trial_counts_by_state(
    conn: sqlalchemy.Connection,
    *,
    study_id: int | None = None,
    studies_where: str | None = None,
    params: Mapping[str, Any] | None = None,
    key: Literal["study_id", "study_name"] = "study_id",
) -> dict[Any, dict[TrialState, int]]:
    """Trial counts by state of each study, by study id (or name), in one query.

    ``study_id`` narrows it to one study; ``studies_where`` is a condition on the study row
    (``studies s``), with its ``params``. Every state of a study that has trials is present
    (zeros included); a study without trials is absent.
    """
    joins = studies_where is not None or key == "study_name"
    column = "s.study_name" if key == "study_name" else "t.study_id"
    query = sqlalchemy.text(
        f"SELECT {column}, t.state, COUNT(*) FROM trials t "
        + ("JOIN studies s ON s.study_id = t.study_id " if joins else "")
        + f"WHERE {_where(study_id, studies_where)} GROUP BY {column}, t.state"
    )
    counts: dict[Any, dict[TrialState, int]] = {}
    for study, state, n in conn.execute(query, {**(params or {}), "study_id": study_id}):
        counts.setdefault(study, dict.fromkeys(TrialState, 0))[TrialState[state]] = n
    return counts


def count_trials_by_state(
    storage: optuna.storages.RDBStorage, study_id: int
) -> dict[TrialState, int]:
    """How many trials of the study are in each state, in one SQL query (no trial is loaded)."""
    with storage.engine.connect() as conn:
        counts = trial_counts_by_state(conn, study_id=study_id)
    return counts.get(study_id, dict.fromkeys(TrialState, 0))


def count_trials_by_study(storage: optuna.storages.RDBStorage) -> dict[int, dict[TrialState, int]]:
    """Trial counts by state of every study in the database, in one SQL query."""
    with storage.engine.connect() as conn:
        return trial_counts_by_state(conn)


def retry_counts(
    conn: sqlalchemy.Connection,
    *,
    study_id: int | None = None,
    studies_where: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> dict[int, int]:
    """How many trials of each study are retries of a failed one, by study id, in one query.

    Narrowed as :func:`trial_counts_by_state` narrows; a study without retries is absent.
    """
    joins = "JOIN studies s ON s.study_id = t.study_id " if studies_where is not None else ""
    query = sqlalchemy.text(
        "SELECT t.study_id, COUNT(*) FROM trial_system_attributes a "
        f"JOIN trials t ON t.trial_id = a.trial_id {joins}"
        f"WHERE {_where(study_id, studies_where)} AND a.key = :retry_key GROUP BY t.study_id"
    )
    bound = {**(params or {}), "study_id": study_id, "retry_key": RETRY_OF_ATTR}
    return {row[0]: row[1] for row in conn.execute(query, bound)}


def count_retries(storage: optuna.storages.RDBStorage, study_id: int) -> int:
    """How many of the study's trials are retries of a failed one (one SQL query).

    Each retry stands for one failed trial that was run again, so ``FAIL - retries`` is the
    number of failures that cost the study a trial.
    """
    with storage.engine.connect() as conn:
        return retry_counts(conn, study_id=study_id).get(study_id, 0)


def studies_with_user_attr(storage: optuna.storages.RDBStorage, key: str) -> list[tuple[int, str]]:
    """``(study_id, name)`` of the studies that have the user attribute ``key``, oldest first."""
    query = sqlalchemy.text(
        "SELECT s.study_id, s.study_name FROM studies s JOIN study_user_attributes a"
        " ON a.study_id = s.study_id WHERE a.key = :key ORDER BY s.study_id"
    )
    with storage.engine.connect() as conn:
        return [(row[0], row[1]) for row in conn.execute(query, {"key": key})]


def page_trial_ids(
    storage: optuna.storages.RDBStorage,
    study_id: int,
    *,
    offset: int,
    limit: int,
    states: tuple[TrialState, ...] | None = None,
) -> tuple[list[int], int]:
    """The ids of one page of a study's trials (by trial number) and how many match in all."""
    params = {"study_id": study_id, "limit": limit, "offset": offset}
    page, params = with_states(
        "SELECT trial_id FROM trials WHERE study_id = :study_id{states} "
        "ORDER BY number LIMIT :limit OFFSET :offset",
        states,
        params,
    )
    count, _ = with_states(
        "SELECT COUNT(*) FROM trials WHERE study_id = :study_id{states}", states, params
    )
    with storage.engine.connect() as conn:
        ids = [row[0] for row in conn.execute(page, params)]
        total = conn.execute(count, params).scalar_one()
    return ids, total


_BEST_SQL = """
SELECT t.trial_id FROM trials t JOIN trial_values v ON v.trial_id = t.trial_id
WHERE t.study_id = :study_id AND t.state = 'COMPLETE' AND v.objective = 0
ORDER BY CASE v.value_type WHEN :first THEN 0 WHEN 'FINITE' THEN 1 ELSE 2 END,
         {order}, t.number
LIMIT 1
"""


def best_trial_id(
    storage: optuna.storages.RDBStorage, study_id: int, direction: optuna.study.StudyDirection
) -> int | None:
    """The id of the study's best COMPLETE trial by its first value (``direction``), ties to
    the lowest number as Optuna's ``best_trial`` breaks them, or None: one query, no trial
    built."""
    maximize = direction == optuna.study.StudyDirection.MAXIMIZE
    sql = _BEST_SQL.replace("{order}", "v.value DESC" if maximize else "v.value ASC")
    with storage.engine.connect() as conn:
        row = conn.execute(
            sqlalchemy.text(sql),
            {"study_id": study_id, "first": "INF_POS" if maximize else "INF_NEG"},
        ).first()
    return None if row is None else int(row[0])
