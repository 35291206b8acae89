"""The two tables hpsearch keeps beside Optuna's in the study database: workers and API tokens.

Optuna's tables hold everything about studies and trials. What is not about a study lives
here, in the same database, so that the database stays the one source of truth: the live
workers (who they are, what they run, their last heartbeat) and the service's API tokens
(hashed). Both are created on first use by :func:`hpsearch.db.storage.open_storage`.
"""

from __future__ import annotations

import sqlalchemy
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table

__all__ = ["api_tokens", "create_tables", "metadata", "workers"]

metadata = MetaData()

#: One row per worker process that ever joined; ``last_seen`` is its heartbeat (database time).
workers = Table(
    "hpsearch_workers",
    metadata,
    Column("worker_id", String(255), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("device", String(64), nullable=False),  # "cpu", "cuda"
    Column("gpu_name", String(255)),  # e.g. "NVIDIA H100 80GB HBM3"; None on CPU
    Column("version", String(64), nullable=False),  # hpsearch's version
    Column("started_at", DateTime, nullable=False),
    Column("last_seen", DateTime, nullable=False),
    Column("study", String(512)),  # the study of the trial it runs now, if any
    Column("trial_number", Integer),  # the trial it runs now, if any
    Column("trials_run", Integer, nullable=False, default=0),
    Column("stopped_at", DateTime),  # set when it exits cleanly
    # The GPU it is pinned to, as its launcher's CUDA_VISIBLE_DEVICES names it ("0", "3", a
    # GPU-/MIG- UUID); None on CPU. Several workers share one with --per-gpu. Databases made
    # before it lack it: create_tables adds it.
    Column("gpu", String(64)),
)

#: API tokens of the service: only a hash of each secret is stored.
api_tokens = Table(
    "hpsearch_api_tokens",
    metadata,
    Column("token_id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("scopes", String(64), nullable=False),  # "read" or "read,write"
    Column("token_hash", String(128), nullable=False, unique=True),  # sha256 hex of the secret
    Column("created_at", DateTime, nullable=False),
    Column("last_used_at", DateTime),
    Column("revoked_at", DateTime),
    # The study-name prefix (project) the token is limited to; NULL: every study. Databases
    # made by 0.1.0 lack it: create_tables adds it.
    Column("project", String(128)),
)

#: Columns added to hpsearch's tables after their first release, as ``(table, column)``:
#: :func:`create_tables` adds each to a database made before it (all are nullable).
_ADDED_COLUMNS = ((api_tokens, api_tokens.c.project), (workers, workers.c.gpu))


def create_tables(engine: sqlalchemy.Engine) -> None:
    """Create hpsearch's own tables in the study database if they are missing.

    Also upgrades the tables of a database made by an earlier release: each column added
    since (:data:`_ADDED_COLUMNS`) is added when missing. Idempotent, and safe when several
    processes open the same database at once.
    """
    metadata.create_all(engine, checkfirst=True)
    for table, column in _ADDED_COLUMNS:
        _add_column(engine, table, column)


def _has_column(engine: sqlalchemy.Engine, table: Table, column: Column) -> bool:
    names = {c["name"] for c in sqlalchemy.inspect(engine).get_columns(table.name)}
    return column.name in names


def _add_column(engine: sqlalchemy.Engine, table: Table, column: Column) -> None:
    if _has_column(engine, table, column):
        return
    preparer = engine.dialect.identifier_preparer
    kind = column.type.compile(dialect=engine.dialect)
    guard = "IF NOT EXISTS " if engine.dialect.name == "postgresql" else ""
    statement = (
        f"ALTER TABLE {preparer.format_table(table)} "
        f"ADD COLUMN {guard}{preparer.format_column(column)} {kind}"
    )
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(statement)
    except sqlalchemy.exc.OperationalError:
        # SQLite has no IF NOT EXISTS here: another process may have added it just now.
        if not _has_column(engine, table, column):
            raise
