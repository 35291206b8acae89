"""The two tables hpsearch keeps beside Optuna's in the study database: workers and API tokens.

Optuna's tables hold everything about studies and trials. What is not about a study lives
here, in the same database, so that the database stays the one source of truth: the live
workers (who they are, what they run, their last heartbeat) and the service's API tokens
(hashed). Both are created on first use by :func:`hpsearch.storage.open_storage`.
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
)


def create_tables(engine: sqlalchemy.Engine) -> None:
    """Create hpsearch's own tables in the study database if they are missing."""
    metadata.create_all(engine, checkfirst=True)
