"""The fleet of workers, as they record themselves in the study database.

Each worker process writes one row of ``hpsearch_workers`` when it starts (host, pid, device,
GPU name, hpsearch version), refreshes ``last_seen`` with every heartbeat, says which trial it
is running, and marks itself stopped when it exits cleanly. A worker whose ``last_seen`` is
older than the storage's grace period is dead (killed, or its machine lost); it is not live.
Times are the database server's clock, as for Optuna's trial heartbeats, so machines with
skewed clocks agree.
"""

from __future__ import annotations

import datetime as dt
import os
import socket

import optuna
import sqlalchemy
from pydantic import BaseModel

import hpsearch
from hpsearch.db.storage import grace_seconds
from hpsearch.db.tables import workers
from hpsearch.db.timestamps import DbUtcDatetime, utc_now

__all__ = [
    "WorkerRecord",
    "beat",
    "list_workers",
    "live_workers",
    "new_worker_id",
    "register_worker",
    "retire_worker",
    "worker_beat",
]


class WorkerRecord(BaseModel):
    """One worker process as the fleet table has it."""

    worker_id: str
    host: str
    pid: int
    device: str
    gpu_name: str | None
    gpu: str | None = None
    """The GPU it is pinned to (its CUDA_VISIBLE_DEVICES), ``None`` on CPU; with ``--per-gpu N``
    N live workers share each."""
    version: str
    started_at: DbUtcDatetime
    last_seen: DbUtcDatetime
    seconds_since_seen: float
    study: str | None
    trial_number: int | None
    trials_run: int
    live: bool


def new_worker_id(device: str | None) -> str:
    """``host:pid[:device]``: unique among live workers, readable in logs and trial attributes."""
    return f"{socket.gethostname()}:{os.getpid()}" + (f":{device}" if device else "")


def _now(conn: sqlalchemy.Connection) -> dt.datetime:
    return conn.execute(sqlalchemy.select(utc_now())).scalar_one().replace(tzinfo=None)


def register_worker(
    storage: optuna.storages.RDBStorage,
    worker_id: str,
    *,
    device: str,
    gpu_name: str | None = None,
    gpu: str | None = None,
) -> None:
    """Record a worker that starts (or restarts with the same id) as live and idle.

    ``gpu`` is the GPU it is pinned to, as CUDA_VISIBLE_DEVICES names it (``None`` on CPU).
    """
    with storage.engine.begin() as conn:
        now = _now(conn)
        conn.execute(workers.delete().where(workers.c.worker_id == worker_id))
        conn.execute(
            workers.insert().values(
                worker_id=worker_id,
                host=socket.gethostname(),
                pid=os.getpid(),
                device=device,
                gpu_name=gpu_name,
                gpu=gpu,
                version=hpsearch.__version__,
                started_at=now,
                last_seen=now,
                trials_run=0,
            )
        )


def worker_beat(
    storage: optuna.storages.RDBStorage,
    worker_id: str,
    *,
    study: str | None = None,
    trial_number: int | None = None,
    trials_run: int | None = None,
    finished_trial: bool = False,
) -> None:
    """Refresh the worker's ``last_seen`` and say what it runs now (``None``: idle), in a
    transaction of its own: see :func:`beat`."""
    with storage.engine.begin() as conn:
        beat(
            conn,
            worker_id,
            study=study,
            trial_number=trial_number,
            trials_run=trials_run,
            finished_trial=finished_trial,
        )


def beat(
    conn: sqlalchemy.Connection,
    worker_id: str,
    *,
    study: str | None = None,
    trial_number: int | None = None,
    trials_run: int | None = None,
    finished_trial: bool = False,
) -> None:
    """Refresh the worker's ``last_seen`` and say what it runs now, in ``conn``'s transaction
    (a worker's claim of a trial writes its fleet row with it). ``trials_run`` is how many
    trials it has run to an end; ``finished_trial`` counts one more instead."""
    values: dict = {
        "last_seen": utc_now(),
        "study": study,
        "trial_number": trial_number,
    }
    if trials_run is not None:
        values["trials_run"] = trials_run
    elif finished_trial:
        values["trials_run"] = workers.c.trials_run + 1
    conn.execute(workers.update().where(workers.c.worker_id == worker_id).values(**values))


def retire_worker(
    storage: optuna.storages.RDBStorage, worker_id: str, *, trials_run: int | None = None
) -> None:
    """Mark the worker stopped: it exited cleanly and is no longer live. ``trials_run``: how
    many trials it ran to an end."""
    values: dict = {"stopped_at": utc_now(), "study": None, "trial_number": None}
    if trials_run is not None:
        values["trials_run"] = trials_run
    with storage.engine.begin() as conn:
        conn.execute(workers.update().where(workers.c.worker_id == worker_id).values(**values))


def list_workers(
    storage: optuna.storages.RDBStorage,
    *,
    live_only: bool = True,
    study: str | None = None,
) -> list[WorkerRecord]:
    """Workers by last heartbeat, newest first: live ones only unless ``live_only=False``.

    With ``study``, only those running one of that study's trials now.
    """
    grace = grace_seconds(storage)
    query = sqlalchemy.select(workers).order_by(workers.c.last_seen.desc())
    if study is not None:
        query = query.where(workers.c.study == study)
    with storage.engine.connect() as conn:
        now = _now(conn)
        if live_only:
            cutoff = now - dt.timedelta(seconds=grace)
            query = query.where(workers.c.stopped_at.is_(None), workers.c.last_seen >= cutoff)
        rows = conn.execute(query).mappings().all()
    records = []
    for row in rows:
        since = max(0.0, (now - row["last_seen"]).total_seconds())
        records.append(
            WorkerRecord(
                **{k: row[k] for k in WorkerRecord.model_fields if k in row},
                seconds_since_seen=round(since, 3),
                live=row["stopped_at"] is None and since <= grace,
            )
        )
    return records


def live_workers(
    storage: optuna.storages.RDBStorage, *, study: str | None = None
) -> list[WorkerRecord]:
    """The workers that are live now (heartbeat within the grace period, not stopped)."""
    return list_workers(storage, live_only=True, study=study)
